"""The long connection against a real WebSocket server on 127.0.0.1 (wechatbot.testing.fake_longconn)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.sync.client import connect

from wechatbot import metrics
from wechatbot.longconn import protocol
from wechatbot.longconn.connection import ConnectionSettings
from wechatbot.longconn.holder import Holder, backoff
from wechatbot.longconn.lease import Lease
from wechatbot.longconn.sendqueue import Budget, SendQueue
from wechatbot.store import Store, open_store
from wechatbot.testing.fake_longconn import FakeLongConnServer

BOT, SECRET = "aibot-test-1", "long-connection-secret"


@pytest.fixture
def fake() -> Iterator[FakeLongConnServer]:
    with FakeLongConnServer({BOT: SECRET}) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


class Bot:
    """A holder whose handler answers each text with a stream of its words, one frame per word."""

    def __init__(self, fake: FakeLongConnServer, store: Store, *, secret: str = SECRET, word_pause: float = 0.05,
                 **holder_options: Any) -> None:
        self.runs: list[str] = []
        self.word_pause = word_pause
        holder_options.setdefault("queue", SendQueue(stream_gap=0.0, receipt_timeout=2.0))
        holder_options.setdefault("lease_ttl", 3.0)
        holder_options.setdefault("standby_poll", 0.2)
        holder_options.setdefault("reconnect_backoff", (0.1, 0.5))
        self.holder = Holder(ConnectionSettings(fake.url, BOT, secret, heartbeat=30.0), store, self.on_callback,
                             **holder_options)

    def on_callback(self, received: dict[str, Any]) -> None:
        body = received["body"]
        if body.get("msgtype") != "text":
            return
        self.runs.append(body["msgid"])
        threading.Thread(target=self.answer, args=(received,), daemon=True).start()

    def answer(self, received: dict[str, Any]) -> None:
        words = received["body"]["text"]["content"].split()
        conversation = protocol.conversation_of(received["body"])
        for n in range(1, len(words) + 1):
            frame = protocol.frame(protocol.RESPOND, protocol.req_id(received), {
                "msgtype": "stream", "stream": {"id": "s1", "content": " ".join(words[:n]), "finish": n == len(words)}})
            self.holder.send(frame, conversation)
            time.sleep(self.word_pause)

    def __enter__(self) -> Bot:
        self.holder.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.holder.close()


def stream_texts(fake: FakeLongConnServer, req_id: str) -> list[str]:
    return [protocol.stream_of(f).content for f in fake.replies(req_id)]


# -- a stream ------------------------------------------------------------------


def test_stream_arrives_in_order_one_frame_in_flight_and_merged(fake, store) -> None:
    # Receipts of the 1st and 3rd frames are slow: the words written meanwhile are merged.
    fake.receipt_policy(lambda frame, nth: 0.8 if nth in (1, 3) else 0.0)
    with Bot(fake, store, word_pause=0.1):
        fake.wait_subscribed(BOT)
        text = "one two three four five six seven eight nine ten eleven twelve"
        req_id = fake.push_text(BOT, text)
        final = fake.wait_final_reply(req_id, timeout=15)
        time.sleep(0.3)
    texts = stream_texts(fake, req_id)
    assert protocol.stream_of(final).content == text and texts[-1] == text
    assert 3 <= len(texts) < len(text.split())  # some frames merged, at least 3 steps
    assert all(len(a) < len(b) and b.startswith(a) for a, b in zip(texts, texts[1:]))  # only grows
    assert fake.received(protocol.RESPOND)[-1].frame["body"]["stream"]["finish"] is True  # nothing after it
    assert fake.violations == []


def test_stream_budget_keeps_within_thirty_frames_a_minute(fake, store) -> None:
    queue = SendQueue(stream_gap=0.0, budget=Budget(per_minute=8, per_hour=1000))
    with Bot(fake, store, queue=queue, word_pause=0.01):
        fake.wait_subscribed(BOT)
        fake.per_minute = 8
        text = " ".join(f"w{n}" for n in range(40))
        req_id = fake.push_text(BOT, text)
        final = fake.wait_final_reply(req_id, timeout=10)
    assert protocol.stream_of(final).content == text
    assert len(fake.replies(req_id)) <= 8 - 2  # intermediate frames leave room for others (reserve)
    assert not [r for r in fake.received(protocol.RESPOND) if r.frame.get("errcode")]


# -- one connection per bot ------------------------------------------------------


def test_two_holders_sharing_a_store_make_one_connection_and_take_over(fake, store) -> None:
    with Bot(fake, store) as first, Bot(fake, store) as second:
        fake.wait_subscribed(BOT)
        time.sleep(1.5)
        assert len(fake.subscriptions(BOT)) == 1
        holder, standby = (first, second) if first.holder.holding else (second, first)
        assert not standby.holder.holding
        started = time.monotonic()
        holder.holder.close()
        fake.wait_subscribed(BOT, count=2, timeout=10)
        assert time.monotonic() - started < 5
        assert standby.holder.holding
        req_id = fake.push_text(BOT, "after the takeover")
        assert protocol.stream_of(fake.wait_final_reply(req_id)).content == "after the takeover"
    fake.wait_for(lambda: fake.open_subscribed(BOT) == 0, 5, "every connection closed")


def test_a_kick_by_another_connection_is_not_fought(fake, store) -> None:
    with Bot(fake, store, kick_backoff=(3.0, 3.0)) as bot:
        fake.wait_subscribed(BOT)
        # Another deployment, with its own store, subscribes the same bot.
        with connect(fake.url) as other:
            other.send(json.dumps(protocol.subscribe(BOT, SECRET)))
            assert json.loads(other.recv(timeout=5))["errcode"] == 0
            fake.wait_for(lambda: fake.open_subscribed(BOT) == 1, 5, "the old connection closed")
            time.sleep(1.0)
            assert len(fake.subscriptions(BOT)) == 2  # ours did not come straight back
            assert bot.holder.holding  # still holds the lease: nobody in this store connects meanwhile
        fake.wait_subscribed(BOT, count=3, timeout=5)  # after its back-off, it connects again
    assert fake.violations == []


def test_refused_subscription_backs_off(fake, store) -> None:
    with Bot(fake, store, secret="wrong", refused_backoff=(5.0, 5.0)):
        fake.wait_for(lambda: fake.received(protocol.SUBSCRIBE), 5, "a subscribe")
        time.sleep(1.5)
    assert len(fake.received(protocol.SUBSCRIBE)) == 1
    assert fake.subscriptions(BOT) == []


# -- keeping the connection ------------------------------------------------------


def test_dropped_connection_reconnects_and_frames_sent_meanwhile_arrive(fake, store) -> None:
    with Bot(fake, store, reconnect_backoff=(0.5, 0.5)) as bot:
        fake.wait_subscribed(BOT)
        req_id = fake.push_text(BOT, "before")
        fake.wait_final_reply(req_id)
        fake.drop(BOT)
        fake.wait_for(lambda: not bot.holder.connected, 5, "the holder noticing the drop")
        # Sent while the connection is down: it waits for the next one.
        bot.holder.send(protocol.frame(protocol.SEND, protocol.new_req_id(protocol.SEND), {
            "chatid": "zhangsan", "msgtype": "markdown", "markdown": {"content": "pushed during the reconnect"}}),
            "zhangsan")
        fake.wait_subscribed(BOT, count=2, timeout=10)
        pushed = fake.wait_for(lambda: fake.received(protocol.SEND), 5, "the push")
    assert [p.frame["body"]["markdown"]["content"] for p in pushed] == ["pushed during the reconnect"]
    assert pushed[0].conn_id == fake.subscriptions(BOT)[1].conn_id


def test_heartbeats_and_a_dead_connection(fake, store) -> None:
    settings = ConnectionSettings(fake.url, BOT, SECRET, heartbeat=0.3)
    holder = Holder(settings, store, lambda frame: None, lease_ttl=2.0, reconnect_backoff=(0.1, 0.2))
    holder.start()
    try:
        fake.wait_subscribed(BOT)
        fake.wait_for(lambda: len(fake.received(protocol.PING)) >= 3, 5, "three pings")
        assert len(fake.subscriptions(BOT)) == 1  # answered pings keep it
        fake.answer_pings = False
        fake.wait_subscribed(BOT, count=2, timeout=5)  # two unanswered: a new connection
    finally:
        holder.close()
    pings = fake.received(protocol.PING)
    gaps = [b.at - a.at for a, b in zip(pings, pings[1:]) if a.conn_id == b.conn_id]
    assert gaps and min(gaps) > 0.2


# -- receipts ---------------------------------------------------------------------


def test_receipts_that_time_out_are_unknown_and_never_resent(fake, store) -> None:
    fake.receipt_policy(lambda frame, nth: None)  # no receipt, ever
    unknown_before = metrics.sample("wechatbot_longconn_frames_total", bot=BOT, outcome="unknown")
    queue = SendQueue(stream_gap=0.0, receipt_timeout=0.5)
    with Bot(fake, store, queue=queue, word_pause=0.0):
        fake.wait_subscribed(BOT)
        req_id = fake.push_text(BOT, "a b c d")
        fake.wait_final_reply(req_id, timeout=10)
        time.sleep(1.2)  # anything resent would show by now
    texts = stream_texts(fake, req_id)
    assert texts[0] == "a" and texts[-1] == "a b c d"
    assert len(texts) == len(set(texts))  # no frame twice
    assert queue.stats["unknown"] == len(texts) and queue.stats["delivered"] == 0
    assert metrics.sample("wechatbot_longconn_frames_total", bot=BOT, outcome="unknown") - unknown_before == len(texts)
    assert fake.violations == []


def test_a_late_receipt_is_not_mistaken_when_nothing_waits(fake, store) -> None:
    fake.receipt_policy(lambda frame, nth: 1.0 if nth == 1 else 0.0)
    queue = SendQueue(stream_gap=0.0, receipt_timeout=0.4)
    with Bot(fake, store, queue=queue, word_pause=0.0):
        fake.wait_subscribed(BOT)
        req_id = fake.push_text(BOT, "x y")
        fake.wait_final_reply(req_id, timeout=5)
        time.sleep(1.0)
    assert stream_texts(fake, req_id) == ["x", "x y"]


# -- frames from other processes ----------------------------------------------------


def test_frames_from_a_process_without_the_connection_reach_the_holder(fake, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    holder_store, other_store = open_store(url), open_store(url)
    try:
        with Bot(fake, holder_store):
            req_id = None
            fake.wait_subscribed(BOT)
            req_id = fake.push_message(BOT, {"msgid": "m-1", "aibotid": BOT, "chattype": "single",
                                             "from": {"userid": "lisi"}, "msgtype": "image",
                                             "image": {"url": "https://example.invalid/x", "aeskey": "k"}})
            # Another worker, which does not hold the connection, streams the answer.
            elsewhere = Holder(ConnectionSettings(fake.url, BOT, SECRET), other_store, lambda frame: None)
            for n, text in enumerate(["看", "看到", "看到了"]):
                elsewhere.send(protocol.frame(protocol.RESPOND, req_id, {
                    "msgtype": "stream", "stream": {"id": "x", "content": text, "finish": n == 2}}), "lisi")
            final = fake.wait_final_reply(req_id, timeout=5)
    finally:
        holder_store.close()
        other_store.close()
    assert protocol.stream_of(final).content == "看到了"
    assert fake.violations == []


# -- the pieces on their own ----------------------------------------------------------


def test_lease_is_held_by_one_owner_renewed_and_released(store) -> None:
    first, second = Lease(store, "longconn:lease:test", ttl=1.0), Lease(store, "longconn:lease:test", ttl=1.0)
    assert first.acquire() and not second.acquire()
    assert first.held and first.holder() == first.owner
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # kept past its ttl by renewing
        assert first.keep()
        assert not second.acquire()
        time.sleep(0.1)
    first.release()
    assert not first.held and second.acquire()


def test_lease_of_a_silent_holder_expires_and_it_knows(store) -> None:
    first, second = Lease(store, "longconn:lease:test", ttl=0.5), Lease(store, "longconn:lease:test", ttl=0.5)
    assert first.acquire()
    time.sleep(0.6)  # it did not renew (frozen, killed)
    assert not first.keep()  # it counts the lease lost before anyone else can have it
    assert second.acquire()
    assert not first.keep()


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    delays = [backoff(n, 1.0, 30.0) for n in range(1, 9)]
    assert all(0.5 * min(30, 2 ** (n - 1)) <= d <= min(30, 2 ** (n - 1)) for n, d in enumerate(delays, 1))
    assert len({round(backoff(3, 1.0, 30.0), 6) for _ in range(20)}) > 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stream_frame(req_id: str, content: str, finish: bool = False) -> dict[str, Any]:
    return protocol.frame(protocol.RESPOND, req_id, {"msgtype": "stream", "stream": {"id": "s", "content": content, "finish": finish}})


def receipt(req_id: str, errcode: int = 0) -> dict[str, Any]:
    return {"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": "x"}


def test_queue_sends_one_frame_per_req_id_and_merges_newer_text() -> None:
    clock = Clock()
    queue = SendQueue(clock=clock, stream_gap=0.0)
    queue.offer(stream_frame("r1", "a"), "u")
    queue.offer(stream_frame("r2", "z"), "v")
    assert [i.frame["body"]["stream"]["content"] for i in queue.take_due()] == ["a", "z"]
    queue.offer(stream_frame("r1", "a b"), "u")
    queue.offer(stream_frame("r1", "a b c", finish=True), "u")
    assert queue.take_due() == []  # r1 still in flight
    assert queue.receipt(receipt("r1")).result == "delivered"
    [item] = queue.take_due()
    assert item.frame["body"]["stream"] == {"id": "s", "content": "a b c", "finish": True}
    queue.offer(stream_frame("r1", "a b c d"), "u")  # after finish: dropped
    assert queue.receipt(receipt("r1")).result == "delivered"
    assert queue.take_due() == [] and queue.stats["after_finish"] == 1


def test_queue_retries_only_what_was_not_applied() -> None:
    clock = Clock()
    queue = SendQueue(clock=clock, stream_gap=0.0, retry_delay=1.0)
    queue.offer(stream_frame("r1", "a", finish=True), "u")
    queue.take_due()
    assert queue.receipt(receipt("r1", protocol.ERR_CONFLICT)).result == "retrying"
    assert queue.take_due() == []  # not before its delay
    clock.now += 1.0
    [again] = queue.take_due()
    assert again.attempts == 2
    assert queue.receipt(receipt("r1", protocol.ERR_STREAM_CLOSED)).result == "failed"
    assert queue.pending() == 0
    queue.offer(stream_frame("r2", "b", finish=True), "u")
    queue.take_due()
    clock.now += 100
    assert [o.result for o in queue.expire()] == ["unknown"]
    assert queue.take_due() == [] and queue.pending() == 0


def test_budget_holds_intermediate_frames_but_lets_final_ones_through() -> None:
    clock = Clock()
    queue = SendQueue(clock=clock, stream_gap=0.0, budget=Budget(per_minute=12, per_hour=1000))
    for n in range(2):  # reserve = 10 of 12 a minute: two intermediate frames fit
        queue.offer(stream_frame(f"r{n}", "x"), "u")
    assert len(queue.take_due()) == 2
    queue.offer(stream_frame("r9", "mid"), "u")
    assert queue.take_due() == []
    queue.offer(protocol.frame(protocol.RESPOND, "r8", {"msgtype": "markdown", "markdown": {"content": "m"}}), "u")
    assert [i.req_id for i in queue.take_due()] == ["r8"]  # must-go frames use the reserve
    queue.offer(stream_frame("r7", "other conversation"), "w")
    assert [i.req_id for i in queue.take_due()] == ["r7"]
    clock.now += 60
    assert [i.req_id for i in queue.take_due()] == ["r9"]


def test_reply_frames_are_checked() -> None:
    protocol.check_reply(stream_frame("r", "ok"))
    with pytest.raises(ValueError, match="cannot carry msgtype 'text'"):
        protocol.check_reply(protocol.frame(protocol.RESPOND, "r", {"msgtype": "text", "text": {"content": "x"}}))
    with pytest.raises(ValueError, match="chatid"):
        protocol.check_reply(protocol.frame(protocol.SEND, "r", {"msgtype": "markdown", "markdown": {"content": "x"}}))
    assert "secret" not in repr(ConnectionSettings("ws://x", "b", "secret"))
