"""Streams kept in the shared store: polls from anywhere, orphans, the window, the 20480-byte limit."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from wechatbot.store import MemoryStore, SQLiteStore
from wechatbot.streams import INTERRUPTED, MORE_BELOW, STILL_WORKING, Streams, fit_stream
from wechatbot.wecom.bot_replies import STREAM_CONTENT_LIMIT


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def streams(clock):
    s = Streams(MemoryStore(), window=60, orphan_after=1.0, flush_every=0, clock=clock)
    yield s
    s.stop()


def test_a_stream_from_placeholder_to_finish(streams):
    writer = streams.open("bot", meta={"plugin": "llm"})
    assert writer.first_frame == "…"
    frame = streams.poll("bot", writer.stream_id)
    assert (frame.content, frame.finish, frame.meta) == ("…", False, {"plugin": "llm"})
    writer.append("<think>想一想</think>")
    writer.append("你好")
    assert streams.poll("bot", writer.stream_id).content == "<think>想一想</think>你好"
    ending, rest = writer.finish()
    assert (ending.reason, ending.content, rest) == ("done", "<think>想一想</think>你好", "")
    for _ in range(2):  # every later poll gets the same finished text
        frame = streams.poll("bot", writer.stream_id)
        assert (frame.content, frame.finish, frame.reason) == ("<think>想一想</think>你好", True, "done")


def test_an_unknown_stream_is_finished(streams):
    frame = streams.poll("bot", "never-seen")
    assert frame.finish and frame.content == "" and frame.reason == "unknown"


def test_polls_from_another_host_sharing_the_sqlite_store(tmp_path, clock):
    url = tmp_path / "shared.db"
    one = Streams(SQLiteStore(str(url)), window=60, flush_every=0, clock=clock)
    two = Streams(SQLiteStore(str(url)), window=60, flush_every=0, clock=clock)
    writer = one.open("bot")
    seen = []
    for word in ("a", "b", "c"):
        writer.append(word)
        seen.append(two.poll("bot", writer.stream_id).content)
    writer.finish()
    assert seen == ["a", "ab", "abc"]
    assert two.poll("bot", writer.stream_id).finish
    one.stop(), two.stop()


def test_writes_are_coalesced_but_the_end_is_complete(clock):
    streams = Streams(MemoryStore(), window=60, flush_every=3600, clock=clock)
    writer = streams.open("bot")
    writer.append("a")  # the first append writes (nothing written yet)
    writer.append("b")
    assert streams.poll("bot", writer.stream_id).content == "a"
    ending, _ = writer.finish()
    assert ending.content == "ab" and streams.poll("bot", writer.stream_id).content == "ab"
    streams.stop()


def test_an_orphan_is_finished_once_with_a_note(streams):
    writer = streams.open("bot", meta={"plugin": "llm"})
    writer.append("half an answer")
    streams.stop()  # the owner's heartbeat stops, as if its worker died
    time.sleep(1.2)
    first = streams.poll("bot", writer.stream_id)
    assert first.finish and first.orphaned and first.reason == "orphan"
    assert first.content == "half an answer" + INTERRUPTED and first.meta == {"plugin": "llm"}
    again = streams.poll("bot", writer.stream_id)
    assert again.finish and not again.orphaned and again.content == first.content


def test_a_living_owner_is_never_orphaned(streams):
    writer = streams.open("bot")
    writer.append("x")
    time.sleep(1.5)  # longer than orphan_after: the heartbeat keeps it alive
    assert not streams.poll("bot", writer.stream_id).finish
    writer.finish()


def test_the_window_closes_the_stream_and_the_rest_follows(streams, clock):
    writer = streams.open("bot")
    writer.append("part one")
    clock.now += streams.window - streams.margin  # the window is closing
    frame = streams.poll("bot", writer.stream_id)
    assert frame.finish and frame.reason == "window" and frame.content == "part one" + MORE_BELOW
    assert writer.append(", part two") is False  # the owner learns the stream has ended
    ending, rest = writer.finish()
    assert ending.reason == "window" and rest == ", part two"
    assert streams.poll("bot", writer.stream_id).content == "part one" + MORE_BELOW


def test_a_window_closing_before_any_text(streams, clock):
    writer = streams.open("bot")
    clock.now += streams.window
    assert streams.poll("bot", writer.stream_id).content == STILL_WORKING
    writer.append("late answer")
    assert writer.finish()[1] == "late answer"


def test_the_owner_closes_the_window_itself(streams, clock):
    writer = streams.open("bot")
    writer.append("a")
    clock.now += streams.window
    assert writer.append("b") is False  # what it knew when the window closed is shown
    writer.append("c")
    ending, rest = writer.finish()
    assert ending.reason == "window" and ending.content == "ab" + MORE_BELOW and rest == "c"


def test_overflow_beyond_20480_bytes(streams):
    text = "".join(f"第{i}行：流式输出的内容。\n" for i in range(2000))  # about 60 KB
    writer = streams.open("bot")
    seen = []
    for start in range(0, len(text), 500):
        writer.append(text[start:start + 500])
        seen.append(streams.poll("bot", writer.stream_id).content)
    ending, rest = writer.finish()
    final = streams.poll("bot", writer.stream_id).content
    seen.append(final)
    for earlier, later in zip(seen, seen[1:]):  # the text the user sees only grows
        assert later.startswith(earlier.removesuffix(MORE_BELOW))
    assert all(len(s.encode()) <= STREAM_CONTENT_LIMIT for s in seen)
    assert final.endswith(MORE_BELOW)
    assert final.removesuffix(MORE_BELOW) + rest == text  # nothing lost, nothing twice


def test_fit_stream():
    assert fit_stream("short") == ("short", "")
    exact = "a" * STREAM_CONTENT_LIMIT
    assert fit_stream(exact) == (exact, "")
    content, rest = fit_stream("中" * 7000)
    assert len(content.encode()) <= STREAM_CONTENT_LIMIT and content.endswith(MORE_BELOW)
    assert content.removesuffix(MORE_BELOW) + rest == "中" * 7000


def test_an_iterator_that_raises_ends_with_a_visible_note(streams):
    def chunks():
        yield "started"
        raise RuntimeError("model went away")

    writer = streams.open("bot")
    ending, rest, error = writer.run(chunks())
    assert isinstance(error, RuntimeError) and ending.reason == "error" and rest == ""
    frame = streams.poll("bot", writer.stream_id)
    assert frame.finish and frame.content.startswith("started") and len(frame.content) > len("started")


def test_chunks_must_be_text(streams):
    writer = streams.open("bot")
    with pytest.raises(TypeError, match="str"):
        writer.append(b"bytes")
    writer.finish()


def _own_a_stream_then_hang(db: str, ready) -> None:
    streams = Streams(SQLiteStore(db), window=60, orphan_after=1.0, flush_every=0)
    writer = streams.open("bot", stream_id="S-KILLED")
    writer.append("before the kill")
    ready.set()
    time.sleep(60)


def test_a_stream_whose_process_is_killed(tmp_path):
    db = str(tmp_path / "kill.db")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_own_a_stream_then_hang, args=(db, ready))
    child.start()
    try:
        assert ready.wait(10)
        streams = Streams(SQLiteStore(db), window=60, orphan_after=1.0)
        assert streams.poll("bot", "S-KILLED") == streams.poll("bot", "S-KILLED")
        assert not streams.poll("bot", "S-KILLED").finish  # alive: its heartbeat runs
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not (frame := streams.poll("bot", "S-KILLED")).finish:
            assert time.monotonic() < deadline, "the orphan was never finished"
            time.sleep(0.1)
        assert frame.orphaned and frame.content == "before the kill" + INTERRUPTED
    finally:
        child.kill()
        child.join()
