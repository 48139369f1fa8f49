"""Retries handled once, answers within the deadline, late replies pushed, nothing lost."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from wechatbot import hookimpl
from wechatbot.metrics import sample
from wechatbot.jobs import Jobs, queue_for
from wechatbot.testing.simulator import event_xml, message_xml
from wechatbot.store import SQLiteStore, open_store
from wechatbot.testing import app_sections, make_app, simulated_wecom


class Slow:
    """Answers 'done: <text>' after ``seconds``; counts its runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.runs: list[str] = []
        self.lock = threading.Lock()

    @hookimpl
    def handle_message(self, message):
        with self.lock:
            self.runs.append(message.content)
        time.sleep(self.seconds)
        return f"done: {message.content}"

    @hookimpl
    def handle_event(self, event):
        with self.lock:
            self.runs.append(event.raw.get("Note", event.event))
        return None


def build(fake_wecom_api, plugin, **host):
    sections = app_sections(api_base=fake_wecom_api.url, wechatbot={"store": "memory://", **host})
    fake_wecom_api.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
    app = make_app(sections, {"slow": plugin})
    return app, simulated_wecom(app)


def test_retry_after_the_answer_gets_the_same_reply_without_running_plugins(fake_wecom_api) -> None:
    plugin = Slow(0)
    _, sim = build(fake_wecom_api, plugin)
    retries = sample("wechatbot_callbacks_total", app="wecom", kind="text", outcome="retry", reason="")
    xml = message_xml("text", content="hello", msg_id="42")
    first, again = sim.post_xml(xml), sim.post_xml(xml, nonce="another-nonce")
    assert first.content == again.content == "done: hello"
    assert first.body != again.body  # encrypted afresh for its own nonce
    assert plugin.runs == ["hello"]
    assert sample("wechatbot_callbacks_total", app="wecom", kind="text", outcome="retry", reason="") == retries + 1


def test_concurrent_retries_run_the_plugin_once(fake_wecom_api) -> None:
    plugin = Slow(0.5)
    app, sim = build(fake_wecom_api, plugin)
    xml = message_xml("text", content="once", msg_id="7")
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: sim.post_xml(xml), range(3)))
    assert plugin.runs == ["once"]
    assert [a.status for a in answers] == [200, 200, 200]
    assert [a.content for a in answers] == ["done: once"] * 3


def test_distinct_events_in_the_same_second_are_all_handled(fake_wecom_api) -> None:
    plugin = Slow(0)
    _, sim = build(fake_wecom_api, plugin)
    now = int(time.time())
    for note in ("a", "b"):
        sim.post_xml(event_xml("change_contact", from_user="sys", create_time=now, Note=note))
    sim.post_xml(event_xml("change_contact", from_user="sys", create_time=now, Note="a"))  # a retry
    assert plugin.runs == ["a", "b"]


def test_slow_plugin_answer_is_empty_in_time_and_reply_is_pushed(fake_wecom_api) -> None:
    plugin = Slow(1.0)
    _, sim = build(fake_wecom_api, plugin, reply_deadline="0.3")
    started = time.monotonic()
    received = sim.text("report", from_user="lisi")
    assert time.monotonic() - started < 0.8
    assert received.status == 200 and received.body == ""
    sent = fake_wecom_api.wait_for_sent(1, timeout=5)
    assert sent[0]["touser"] == "lisi" and sent[0]["text"]["content"] == "done: report"
    assert sent[0]["msgtype"] == "text"


def test_retry_while_deferred_does_not_run_again(fake_wecom_api) -> None:
    plugin = Slow(0.8)
    _, sim = build(fake_wecom_api, plugin, reply_deadline="0.2")
    xml = message_xml("text", content="slow", msg_id="99")
    assert sim.post_xml(xml).body == ""
    assert sim.post_xml(xml).body == ""  # WeCom's retry while the plugin still works
    fake_wecom_api.wait_for_sent(1, timeout=5)
    time.sleep(0.3)
    assert plugin.runs == ["slow"] and len(fake_wecom_api.sent) == 1


def test_full_pool_answers_empty_counts_and_still_delivers(fake_wecom_api) -> None:
    plugin = Slow(0.6)
    _, sim = build(fake_wecom_api, plugin, reply_deadline="0.2", deferred_workers="1", deferred_queue="0")
    refused = sample("wechatbot_pool_full_total", app="wecom")
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda text: sim.text(text, from_user=text), ["u1", "u2"]))
    assert [a.body for a in answers] == ["", ""]
    assert sample("wechatbot_pool_full_total", app="wecom") == refused + 1
    sent = fake_wecom_api.wait_for_sent(2, timeout=8)
    assert sorted(m["touser"] for m in sent) == ["u1", "u2"]


def test_long_text_is_pushed_in_parts_never_cut(fake_wecom_api) -> None:
    class Long:
        @hookimpl
        def handle_message(self):
            return "长" * 1500  # 4500 bytes: too long for a passive reply

    _, sim = build(fake_wecom_api, Long())
    assert sim.text("x", from_user="wangwu").body == ""
    sent = fake_wecom_api.wait_for_sent(3, timeout=5)
    assert "".join(m["text"]["content"] for m in sent) == "长" * 1500
    assert all(len(m["text"]["content"].encode()) <= 2048 and m["touser"] == "wangwu" for m in sent)


def slow_lookup(message, context, suffix):
    """A deferred job target (module level, so the queue can find it again)."""
    return f"{message.content} {suffix} via {context.plugin_name}"


def test_plugin_can_defer_on_purpose_and_answer_at_once(fake_wecom_api) -> None:
    class Deferring:
        @hookimpl
        def handle_message(self, message, context):
            context.defer(slow_lookup, message, "looked up")
            return "working on it…"

    _, sim = build(fake_wecom_api, Deferring())
    assert sim.text("order 12", from_user="zhaoliu").content == "working on it…"
    sent = fake_wecom_api.wait_for_sent(1, timeout=5)
    assert sent[0]["touser"] == "zhaoliu" and sent[0]["text"]["content"] == "order 12 looked up via slow"


def test_defer_refuses_a_function_the_queue_cannot_find_again(fake_wecom_api) -> None:
    class Bad:
        @hookimpl
        def handle_message(self, message, context):
            context.defer(lambda m, c: "x", message)

    _, sim = build(fake_wecom_api, Bad())
    assert sim.text("x").body == ""  # the plugin's error is isolated and logged


def test_job_abandoned_by_a_dead_worker_is_run_again(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    ran: list[dict] = []
    jobs = Jobs(store, queue_for(f"sqlite:///{tmp_path}/s.db"), ran.append, lease=1.0)
    # A worker took the job past the deadline, then died: its lease is not renewed.
    jobs.adopt({"app": "", "plaintext": "<xml/>", "kind": "dispatch"}, "cb:dead")
    jobs.held.clear()
    jobs.start()
    try:
        deadline = time.monotonic() + 6
        while not ran and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [r["key"] for r in ran] == ["cb:dead"] and ran[0]["attempts"] == 2
        time.sleep(1.5)  # the next guard finds it done
        assert len(ran) == 1
    finally:
        jobs.stop()


def test_job_held_by_a_live_worker_is_not_run_twice(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    ran: list[dict] = []
    jobs = Jobs(store, queue_for(f"sqlite:///{tmp_path}/s.db"), ran.append, lease=0.6)
    jobs.start()
    try:
        jobs.adopt({"app": "", "plaintext": "<xml/>", "kind": "dispatch"}, "cb:alive")
        time.sleep(2.5)  # several guards fire while the heartbeat keeps the lease
        assert ran == []
        jobs.finish("cb:alive")
        time.sleep(1.5)
        assert ran == []
    finally:
        jobs.stop()


class _SlowLeaseWrites(SQLiteStore):
    """The SQLite store with every lease write taking 10 ms, as a store across a network or under load does."""

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if key.startswith("lease:"):
            time.sleep(0.01)
        super().set(key, value, ttl)

    def set_many(self, items: dict[str, str], ttl: float | None = None) -> None:
        time.sleep(0.01)
        super().set_many(items, ttl)


def test_many_jobs_held_at_once_keep_their_leases(tmp_path) -> None:
    """200 late replies in one process: renewing their leases must not take longer than a lease lasts."""
    store = _SlowLeaseWrites(tmp_path / "s.db")
    ran: list[dict] = []
    jobs = Jobs(store, queue_for(f"sqlite:///{tmp_path}/s.db"), ran.append, lease=1.0)
    jobs.start()
    keys = [f"cb:held:{n}" for n in range(200)]
    try:
        for key in keys:
            jobs.adopt({"app": "", "plaintext": "<xml/>", "kind": "dispatch"}, key)
        time.sleep(3)  # guards fire every second; one by one, a pass over 200 leases takes 2 s
        assert ran == []
        for key in keys:
            jobs.finish(key)
    finally:
        jobs.stop()


def _wait_for(ran: list, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ran and time.monotonic() < deadline:
        time.sleep(0.1)


def test_guard_is_safe_once_adopt_returns_even_if_a_consumer_dies_at_once(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    queue = f"sqlite:///{tmp_path}/s.db"
    dying = Jobs(store, queue_for(queue), lambda record: None, lease=1.0)
    dying.adopt({"app": "", "plaintext": "<xml/>", "kind": "dispatch"}, "cb:killed")
    dying.held.clear()  # its process is SIGKILLed: the lease is not renewed
    # What that process's own consumer does in its last instant: take whatever
    # is waiting on the queue off it, and die before doing anything with it.
    queue_for(queue).storage.dequeue()
    ran: list[dict] = []
    survivor = Jobs(store, queue_for(queue), ran.append, lease=1.0)
    survivor.start()
    try:
        _wait_for(ran, 6)
        assert [r["key"] for r in ran] == ["cb:killed"] and ran[0]["attempts"] == 2
    finally:
        survivor.stop()


def _failing(calls: int, method):
    """``method``, raising a locked SQLite queue's error on its first ``calls`` calls."""
    import sqlite3

    left = [calls]

    def call(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        return method(*args, **kwargs)
    return call


def test_a_busy_queue_does_not_cost_a_late_reply_its_guard(tmp_path, monkeypatch) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    huey = queue_for(f"sqlite:///{tmp_path}/s.db")
    jobs = Jobs(store, huey, lambda record: None, lease=1.0)
    monkeypatch.setattr(huey.storage, "enqueue", _failing(1, huey.storage.enqueue))
    monkeypatch.setattr(huey.storage, "add_to_schedule", _failing(1, huey.storage.add_to_schedule))
    jobs.adopt({"app": "", "plaintext": "<xml/>", "kind": "dispatch"}, "cb:busy")  # busy once, tried again
    jobs.held.clear()
    ran: list[dict] = []
    survivor = Jobs(store, queue_for(f"sqlite:///{tmp_path}/s.db"), ran.append, lease=1.0)
    survivor.start()
    try:
        _wait_for(ran, 6)
        assert [r["key"] for r in ran] == ["cb:busy"]
    finally:
        survivor.stop()


def test_a_job_whose_next_guard_cannot_be_queued_still_runs(tmp_path, monkeypatch) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    huey = queue_for(f"sqlite:///{tmp_path}/s.db")
    ran: list[dict] = []
    jobs = Jobs(store, huey, ran.append, lease=1.0)
    jobs.submit({"app": "", "plaintext": "<xml/>", "kind": "dispatch"}, "job-unguarded")
    for name in ("enqueue", "add_to_schedule"):  # from now on the queue takes nothing
        monkeypatch.setattr(huey.storage, name, _failing(100, getattr(huey.storage, name)))
    jobs.start()
    try:
        _wait_for(ran, 6)
        assert [r["key"] for r in ran] == ["job-unguarded"]
    finally:
        jobs.stop()


class Kinds:
    """Answers a text naming a reply kind with a reply of that kind."""

    @hookimpl
    def handle_message(self, message):
        from wechatbot.wecom.replies import Article, ImageReply, MarkdownReply, NewsReply, VideoReply, VoiceReply

        time.sleep(0.4)
        return {
            "image": ImageReply("M_IMG"), "voice": VoiceReply("M_VOICE"), "video": VideoReply("M_VIDEO", "t", "d"),
            "news": NewsReply([Article("title", "desc", "https://example.com", "https://example.com/p.png")]),
            "markdown": MarkdownReply("**bold**"),
        }[message.content]

    @hookimpl
    def handle_event(self, event):
        return f"photo event {event.event}"


def test_late_replies_map_to_their_message_send_types(fake_wecom_api) -> None:
    _, sim = build(fake_wecom_api, Kinds(), reply_deadline="0.1")
    for kind in ("image", "voice", "video", "news", "markdown"):
        assert sim.text(kind, from_user="u_" + kind).body == ""
    sent = {m["touser"]: m for m in fake_wecom_api.wait_for_sent(5, timeout=10)}
    assert sent["u_image"]["msgtype"] == "image" and sent["u_image"]["image"] == {"media_id": "M_IMG"}
    assert sent["u_voice"]["voice"] == {"media_id": "M_VOICE"}
    assert sent["u_video"]["video"] == {"media_id": "M_VIDEO", "title": "t", "description": "d"}
    article = sent["u_news"]["news"]["articles"][0]
    assert article["title"] == "title" and article["url"] == "https://example.com" and article["picurl"] == "https://example.com/p.png"
    assert sent["u_markdown"]["markdown"] == {"content": "**bold**"}


def test_reply_to_an_event_without_passive_replies_is_pushed(fake_wecom_api) -> None:
    _, sim = build(fake_wecom_api, Kinds())
    assert sim.event("pic_sysphoto", from_user="camera_user", event_key="PHOTO").body == ""
    sent = fake_wecom_api.wait_for_sent(1, timeout=5)
    assert sent[0]["touser"] == "camera_user" and sent[0]["text"]["content"] == "photo event pic_sysphoto"
    assert sim.event("click", event_key="K").content == "photo event click"  # clicks take passive replies


def test_late_card_update_goes_to_the_update_api_with_the_events_response_code(fake_wecom_api) -> None:
    from wechatbot.wecom.replies import ButtonUpdateReply

    class Approver:
        @hookimpl
        def handle_event(self, event):
            time.sleep(0.4)
            return ButtonUpdateReply("已同意")

    _, sim = build(fake_wecom_api, Approver(), reply_deadline="0.1")
    assert sim.event("template_card_event", from_user="boss", event_key="yes", TaskId="t1",
                     CardType="button_interaction", ResponseCode="RC-1").body == ""
    deadline = time.monotonic() + 5
    while not fake_wecom_api.card_updates and time.monotonic() < deadline:
        time.sleep(0.05)
    update = fake_wecom_api.card_updates[0]
    assert update["response_code"] == "RC-1" and update["userids"] == ["boss"]
    assert update["button"] == {"replace_name": "已同意"} and update["agentid"] == 1000002


class Where:
    """Answers with the name of the thread it ran on; declares itself inline when asked."""

    def __init__(self, inline: bool, answer: bool = True, sleep: float = 0) -> None:
        self.wechatbot_inline = inline
        self.answer = answer
        self.sleep = sleep
        self.threads: list[str] = []

    @hookimpl
    def handle_message(self, message):
        self.threads.append(threading.current_thread().name)
        time.sleep(self.sleep)
        return f"on {threading.current_thread().name}" if self.answer else None


def test_inline_plugins_run_on_the_request_thread_the_rest_in_the_pool(fake_wecom_api) -> None:
    fast, slow = Where(inline=True, answer=False), Where(inline=False)
    sections = app_sections(api_base=fake_wecom_api.url, wechatbot={"store": "memory://", "plugins": "fast, slow"})
    app = make_app(sections, {"fast": fast, "slow": slow})
    reply = simulated_wecom(app).text("x")
    assert not fast.threads[0].startswith("wechatbot-plugin")
    assert slow.threads[0].startswith("wechatbot-plugin") and reply.content == f"on {slow.threads[0]}"


def test_inline_plugin_that_overruns_the_deadline_has_its_reply_pushed(fake_wecom_api) -> None:
    stuck = Where(inline=True, sleep=0.5)
    _, sim = build(fake_wecom_api, stuck, reply_deadline="0.2")
    assert sim.text("x", from_user="patient").body == ""
    sent = fake_wecom_api.wait_for_sent(1, timeout=5)
    assert sent[0]["touser"] == "patient" and sent[0]["text"]["content"].startswith("on ")


def test_a_bad_queue_url_is_a_start_up_error_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"\[wechatbot\] queue = 'kafka://x'"):
        make_app(app_sections(wechatbot={"store": "memory://", "queue": "kafka://x"}))


def failing_lookup(message, context):
    """A deferred job target that breaks."""
    raise LookupError(f"no order {message.content}")


def test_a_failing_deferred_job_reaches_plugin_error(fake_wecom_api) -> None:
    errors = []

    class Deferring:
        @hookimpl
        def handle_message(self, message, context):
            context.defer(failing_lookup, message)
            return "working on it…"

        @hookimpl
        def plugin_error(self, plugin_name, hook_name, exception):
            errors.append((plugin_name, hook_name, str(exception)))

    _, sim = build(fake_wecom_api, Deferring())
    assert sim.text("12").content == "working on it…"
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert errors == [("slow", "defer", "no order 12")]
    assert fake_wecom_api.sent == []
