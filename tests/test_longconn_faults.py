"""Frames that fail on the AI bot's long connection are tried again, not dropped; what fails for good is
reported once. A host on its long connection against the fake WebSocket server, which refuses frames
with WeCom's errcodes, cuts the connection as a frame arrives, or refuses connections for a while.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from wechatbot import MarkdownReply, hookimpl, metrics
from wechatbot.longconn import protocol
from wechatbot.longconn.pending import PendingFrames
from wechatbot.longconn.sendqueue import SendQueue
from wechatbot.store import open_store
from wechatbot.testing import make_app
from wechatbot.testing.fake_longconn import CUT, CUT_AFTER, FakeLongConnServer, Refuse

BOT, SECRET = "aibot-faults-1", "faults-secret"


class Replier:
    """'defer …' answers later through a push (aibot_send_msg), 'md …' with a markdown, anything else with a text."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str, str, Any]] = []
        self.lock = threading.Lock()

    @hookimpl
    def handle_message(self, message: Any, context: Any) -> Any:
        if message.content.startswith("defer "):
            context.defer(later, message)
            return None
        if message.content.startswith("md "):
            return MarkdownReply(f"**{message.content[3:]}**")
        return f"echo {message.content}"

    @hookimpl
    def plugin_error(self, plugin_name: str, hook_name: str, exception: BaseException, message: Any) -> None:
        with self.lock:
            self.errors.append((plugin_name, hook_name, str(exception), message))


def later(message: Any, context: Any) -> str:
    time.sleep(0.3)
    return f"later: {message.content}"


@pytest.fixture
def fake() -> Iterator[FakeLongConnServer]:
    with FakeLongConnServer({BOT: SECRET}) as server:
        yield server


def host(fake: FakeLongConnServer, tmp_path: Path, plugin: Replier, **wechatbot: str):
    """A host whose only endpoint is the bot on ``fake``, with short pauses between attempts."""
    sections = {
        "wecom:bot": {"type": "aibot", "mode": "websocket", "bot_id": BOT, "secret": SECRET, "ws_url": fake.url},
        "wechatbot": {"store": f"sqlite:///{tmp_path / 'state.db'}", **wechatbot},
    }
    app = make_app(sections, {"replier": plugin})
    holder = app.extensions["wechatbot"].long_connections["bot"].holder
    holder.queue.retry_delay, holder.queue.frequency_delay = 0.05, 0.1
    holder.reconnect_backoff = (0.1, 0.3)
    fake.wait_subscribed(BOT)
    return holder


class Frames:
    """The host's frame counts (``wechatbot_longconn_frames``) since this was made."""

    def __init__(self) -> None:
        self.start = {o: self.now(o) for o in ("delivered", "unknown", "failed", "retrying")}

    @staticmethod
    def now(outcome: str) -> float:
        return metrics.sample("wechatbot_longconn_frames_total", bot=BOT, outcome=outcome)

    def __getitem__(self, outcome: str) -> float:
        return self.now(outcome) - self.start[outcome]


def wait_for(condition, timeout: float = 10.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: timed out"
        time.sleep(0.05)
    return value


def pushes(fake: FakeLongConnServer) -> list[dict]:
    return [r.frame for r in fake.received(protocol.SEND)]


def stream_texts(fake: FakeLongConnServer, req_id: str) -> list[str]:
    return [protocol.stream_of(f).content for f in fake.replies(req_id)]


def refuse_first(codes: list[int], cmd: str):
    """A receipt policy: the first frames of each req_id of ``cmd`` get ``codes`` in turn, later ones are accepted."""
    def policy(frame: dict, nth: int):
        if frame.get("cmd") == cmd and nth <= len(codes):
            return Refuse(codes[nth - 1])
        return 0.0
    return policy


# -- passing failures are tried again -------------------------------------------------------


@pytest.mark.parametrize("kind", ["reply", "push"])
def test_busy_and_rate_limited_frames_are_sent_again_until_delivered(fake, tmp_path, kind, caplog) -> None:
    plugin = Replier()
    host(fake, tmp_path, plugin)
    frames = Frames()
    codes = [protocol.ERR_BUSY, protocol.ERR_CONCURRENCY, protocol.ERR_FREQUENCY]
    fake.receipt_policy(refuse_first(codes, protocol.RESPOND if kind == "reply" else protocol.SEND))
    with caplog.at_level(logging.INFO):
        if kind == "reply":
            req_id = fake.push_text(BOT, "hello")
            final = fake.wait_final_reply(req_id)
            assert protocol.stream_of(final).content == "echo hello"
            wait_for(lambda: frames["delivered"] == 1, 5, "the receipt")  # the fake records it before answering
            sent = [r.frame for r in fake.received(protocol.RESPOND, req_id)]
        else:
            fake.push_text(BOT, "defer hello", userid="wangwu")
            wait_for(lambda: frames["delivered"] == 1, 15, "the push")
            sent = pushes(fake)
            assert {f["body"]["markdown"]["content"] for f in sent} == {"later: defer hello"}
    assert len(sent) == 4 and len({protocol.req_id(f) for f in sent}) == 1  # the same frame, four times
    assert (frames["retrying"], frames["delivered"], frames["failed"]) == (3, 1, 0)
    assert plugin.errors == []
    assert not [r for r in caplog.records if r.name.startswith("wechatbot") and r.levelno >= logging.ERROR]


@pytest.mark.parametrize("cut", [CUT, CUT_AFTER])
def test_a_stream_frame_whose_connection_was_cut_goes_again_and_shows_once(fake, tmp_path, cut) -> None:
    """Cut before the frame applies, it goes again on the next connection; cut after, WeCom's
    846608 to the copy says it had arrived: delivered, the user sees it once either way."""
    plugin = Replier()
    host(fake, tmp_path, plugin)
    frames = Frames()
    fake.receipt_policy(lambda frame, nth: cut if frame.get("cmd") == protocol.RESPOND and nth == 1 else 0.0)
    req_id = fake.push_text(BOT, "through a cut")
    fake.wait_subscribed(BOT, count=2)
    wait_for(lambda: frames["delivered"] == 1, 10, "the frame settled")
    assert stream_texts(fake, req_id) == ["echo through a cut"]  # shown once
    sent = fake.received(protocol.RESPOND, req_id)
    assert len(sent) == 2 and sent[0].conn_id != sent[1].conn_id
    assert (frames["retrying"], frames["failed"], frames["unknown"]) == (1, 0, 0)
    assert plugin.errors == []


def test_a_markdown_in_flight_when_the_connection_is_cut_is_unknown_and_not_sent_twice(fake, tmp_path) -> None:
    plugin = Replier()
    host(fake, tmp_path, plugin)
    frames = Frames()
    fake.receipt_policy(lambda frame, nth: CUT_AFTER if frame.get("cmd") == protocol.RESPOND else 0.0)
    req_id = fake.push_text(BOT, "md once")
    fake.wait_subscribed(BOT, count=2)
    wait_for(lambda: frames["unknown"] == 1, 10, "the frame taken as unknown")
    time.sleep(0.5)  # anything sent again would show by now
    assert [f["body"]["markdown"]["content"] for f in fake.replies(req_id)] == ["**once**"]
    assert len(fake.received(protocol.RESPOND, req_id)) == 1
    assert plugin.errors == []


def test_a_late_reply_made_while_the_connection_is_down_goes_when_it_is_back(fake, tmp_path) -> None:
    plugin = Replier()
    host(fake, tmp_path, plugin)
    fake.push_text(BOT, "defer while down", userid="zhaoliu")
    fake.accepting = False  # WeCom unreachable: every reconnect fails
    fake.drop(BOT)
    time.sleep(1.5)  # the push is made meanwhile (0.3 s) and waits
    assert pushes(fake) == []
    fake.accepting = True
    fake.wait_subscribed(BOT, count=2, timeout=10)
    [push] = wait_for(lambda: fake.received(protocol.SEND), 10, "the push")
    assert push.frame["body"] == {"chatid": "zhaoliu", "msgtype": "markdown",
                                  "markdown": {"content": "later: defer while down"}}
    assert push.conn_id == fake.subscriptions(BOT)[1].conn_id
    assert plugin.errors == []


# -- permanent failures are reported once -----------------------------------------------------


def test_a_permanent_refusal_is_logged_once_with_its_hint_counted_and_reported(fake, tmp_path, caplog) -> None:
    plugin = Replier()
    host(fake, tmp_path, plugin)
    frames = Frames()
    fake.receipt_policy(lambda frame, nth: Refuse(protocol.ERR_WINDOW_CLOSED, "reply window expired")
                        if frame.get("cmd") == protocol.SEND else 0.0)
    with caplog.at_level(logging.INFO):
        fake.push_text(BOT, "defer too late")
        wait_for(lambda: plugin.errors, 15, "the report")
        time.sleep(0.5)  # anything sent again would show by now
    assert len(pushes(fake)) == 1 and frames["failed"] == 1 and frames["retrying"] == 0
    lines = [r for r in caplog.records if r.name == "wechatbot.longconn" and r.levelno >= logging.ERROR]
    assert len(lines) == 1 and not lines[0].exc_info, [r.getMessage() for r in lines]
    assert "errcode 846604" in lines[0].getMessage() and "reply window" in lines[0].getMessage()
    [(name, hook, error, message)] = plugin.errors
    assert (name, hook) == ("replier", "push") and "846604" in error and message.content == "defer too late"


def test_a_frame_still_refused_after_push_retry_for_is_given_up_and_reported(fake, tmp_path) -> None:
    plugin = Replier()
    host(fake, tmp_path, plugin, push_retry_for="1")
    frames = Frames()
    fake.receipt_policy(lambda frame, nth: Refuse(protocol.ERR_BUSY) if frame.get("cmd") == protocol.RESPOND else 0.0)
    req_id = fake.push_text(BOT, "never")
    wait_for(lambda: plugin.errors, 10, "the report")
    assert fake.replies(req_id) == [] and len(fake.received(protocol.RESPOND, req_id)) >= 3
    assert frames["failed"] == 1 and frames["retrying"] >= 2
    [(name, hook, error, _)] = plugin.errors
    assert (name, hook) == ("replier", "push") and "errcode -1" in error


def test_a_late_reply_is_given_up_when_the_connection_stays_down(fake, tmp_path) -> None:
    plugin = Replier()
    host(fake, tmp_path, plugin, push_retry_for="1")
    fake.push_text(BOT, "defer into the void")
    fake.accepting = False
    fake.drop(BOT)
    wait_for(lambda: plugin.errors, 10, "the report")
    [(name, hook, error, _)] = plugin.errors
    assert (name, hook) == ("replier", "push") and "down" in error
    fake.accepting = True
    fake.wait_subscribed(BOT, count=2, timeout=10)
    time.sleep(0.5)
    assert pushes(fake) == []  # given up is given up


# -- the pieces ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def receipt(req_id: str, errcode: int = 0) -> dict[str, Any]:
    return {"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": "x"}


def push_frame(req_id: str) -> dict[str, Any]:
    return protocol.frame(protocol.SEND, req_id, {"chatid": "u", "msgtype": "markdown", "markdown": {"content": "x"}})


def test_queue_tries_again_with_growing_pauses_until_the_deadline() -> None:
    clock = Clock()
    told: list[str] = []
    queue = SendQueue(clock=clock, retry_delay=1.0, frequency_delay=10.0, retry_for=20.0,
                      on_outcome=lambda item, outcome: told.append(outcome.result))
    queue.offer(push_frame("p1"), "u")
    pauses = []
    for _ in range(3):
        [item] = queue.take_due()
        assert queue.receipt(receipt("p1", protocol.ERR_BUSY)).result == "retrying"
        assert queue.take_due() == []  # not before its pause
        pauses.append(item.not_before - clock.now)
        clock.now = item.not_before
    assert pauses == [1.0, 2.0, 4.0]  # doubling, from retry_delay
    [item] = queue.take_due()
    # A rate limit pauses from frequency_delay (10 s × 2³, at most 60 s): past the deadline (20 s after the offer).
    last = queue.receipt(receipt("p1", protocol.ERR_FREQUENCY))
    assert (last.result, last.gave_up, last.errcode) == ("failed", True, protocol.ERR_FREQUENCY)
    assert told == ["retrying"] * 3 + ["failed"] and queue.pending() == 0


def test_queue_gives_up_frames_that_waited_past_their_deadline_and_sends_a_frame_once_per_key() -> None:
    clock = Clock()
    queue = SendQueue(clock=clock, retry_for=5.0)
    assert queue.offer(push_frame("p1"), "u", key="k1") and not queue.offer(push_frame("p1"), "u", key="k1")
    clock.now += 6
    [outcome] = queue.give_up()
    assert (outcome.result, outcome.gave_up, outcome.errcode) == ("failed", True, None)
    assert queue.pending() == 0 and queue.take_due() == []


def test_pending_frames_are_kept_until_settled_and_the_index_is_pruned(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        pending = PendingFrames(store, BOT)
        entries = [pending.add(push_frame(f"p{n}"), "u", {"plugin": "x", "body": {}}, 60.0) for n in range(3)]
        pending.done(entries[0]["key"])
        pending.done(entries[2]["key"])
        assert [e["key"] for e in pending.unsettled()] == [entries[1]["key"]]
        assert [e["frame"] for e in pending.unsettled()] == [push_frame("p1")]  # read again: still there
        assert store.pop(pending.index, 100) == [entries[1]["key"]]  # the settled ones left the index
    finally:
        store.close()
