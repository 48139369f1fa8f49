"""AI bot streams whose text lives in the shared store, so any worker of any host answers them.

Once the host answers a user's message with a ``stream``, WeCom keeps POSTing
``msgtype: stream`` refresh polls until it sees ``finish: true``, for at most
6 minutes from the user's message. Those polls land on whichever worker (and
host) the load balancer picks. This module keeps each stream in the store that
every worker shares, under three keys:

* ``stream:<endpoint>:<id>``: the text so far and when the user's message came,
  written (at most every ``flush_every`` seconds) by the one worker running the
  plugin (the *owner*, a :class:`StreamWriter`);
* ``stream-alive:<endpoint>:<id>``: the owner's heartbeat, a key that expires
  ``orphan_after`` seconds after the owner last refreshed it;
* ``stream-end:<endpoint>:<id>``: how the stream ended, the text WeCom shows for
  good. It is written with the store's atomic ``add``, so exactly one party
  ends a stream: the owner when the plugin is done, or whoever first sees the
  window close, or a poll that finds the owner dead (an orphan).

A poll (:meth:`Streams.poll`) reads those keys and answers at once; it never
waits on the plugin. Its text only grows: the visible text is the stream's
text cut to fit 20480 UTF-8 bytes with room for a closing note, never inside a
character. What does not fit, and what the plugin writes after the window
closed, is handed back by :meth:`StreamWriter.finish` as ``rest``, to go once
through the message's ``response_url``. Nothing here speaks HTTP: the webhook
channel and the WebSocket long connection share it.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import metrics
from .process import current_pid
from .store import PREFIXES, Store
from .wecom.bot_replies import STREAM_CONTENT_LIMIT, cut_utf8

log = logging.getLogger("wechatbot.streams")

__all__ = [
    "DEFAULT_ORPHAN_AFTER",
    "Frame",
    "StreamEnd",
    "StreamWriter",
    "Streams",
    "fit_stream",
    "new_stream_id",
]

#: Seconds without a heartbeat after which a stream's owner counts as dead.
DEFAULT_ORPHAN_AFTER = 6.0
#: Bytes kept free at the end of the visible text for a closing note, so that
#: adding the note never shortens what the user already saw.
NOTE_RESERVE = 256
#: Notes shown at the end of a stream that did not end normally.
MORE_BELOW = "\n\n（未完，余下内容随后发送）"
STILL_WORKING = "（仍在处理，结果随后发送）"
INTERRUPTED = "\n\n（回答中断，请重新提问）"
FAILED = "\n\n（回答出错，已中断）"

DONE, WINDOW, ORPHAN, ERROR = "done", "window", "orphan", "error"


def new_stream_id() -> str:
    """A fresh stream id (WeCom lets the host choose it)."""
    return uuid.uuid4().hex


def _visible(text: str, limit: int) -> str:
    """The part of ``text`` a poll shows while the stream runs."""
    return cut_utf8(text, limit - NOTE_RESERVE)[0]


def fit_stream(text: str, limit: int = STREAM_CONTENT_LIMIT) -> tuple[str, str]:
    """``(content, rest)`` for a finished stream of ``text``.

    Text that fits is shown whole (``rest`` empty). Longer text is shown as
    far as it fits with a note that the rest follows, and ``rest`` (what was
    not shown) goes through ``response_url``.
    """
    head, rest = cut_utf8(text, limit)
    if not rest:
        return text, ""
    shown = _visible(text, limit)
    return shown + MORE_BELOW, text[len(shown):]


@dataclass(frozen=True)
class Frame:
    """What one poll answers: the whole text to show and whether the stream is finished.

    ``reason`` says how a finished stream ended (``done``, ``window``,
    ``orphan``, ``error`` or ``unknown`` for an id this store never saw).
    ``orphaned`` is True for the one poll that found the owner dead and ended
    the stream, so that its caller reports it (``plugin_error``); ``meta`` is
    what the owner stored with the stream (the message, the plugin).
    """

    content: str
    finish: bool
    reason: str | None = None
    orphaned: bool = False
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StreamEnd:
    """How a stream ended: the text WeCom shows for good and how much of the
    stream's text it holds (``shown``, in characters)."""

    reason: str
    content: str
    shown: int

    def to_json(self) -> str:
        return json.dumps({"reason": self.reason, "content": self.content, "shown": self.shown}, ensure_ascii=False)

    @classmethod
    def from_json(cls, value: str) -> StreamEnd:
        data = json.loads(value)
        return cls(data["reason"], data["content"], int(data["shown"]))


class Streams:
    """Every stream of one host's endpoints, in the shared ``store``.

    ``window`` is how long WeCom polls a stream after the user's message
    (``[wechatbot] stream_window``, 360 s); the host ends a stream
    ``margin`` seconds before that. ``placeholder`` is shown before the first
    chunk. ``clock`` is the wall clock (the window is shared by hosts).
    """

    def __init__(
        self,
        store: Store,
        *,
        window: float = 360.0,
        placeholder: str = "…",
        orphan_after: float = DEFAULT_ORPHAN_AFTER,
        limit: int = STREAM_CONTENT_LIMIT,
        margin: float | None = None,
        flush_every: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.window = window
        self.placeholder = placeholder
        self.orphan_after = orphan_after
        self.limit = limit
        self.margin = min(20.0, window / 10) if margin is None else margin
        self.flush_every = flush_every
        self.clock = clock
        self._writers: dict[str, StreamWriter] = {}
        self._lock = threading.Lock()
        self._beating_in: int | None = None
        self._wake = threading.Event()

    # Keys and times

    @staticmethod
    def _keys(endpoint: str, stream_id: str) -> tuple[str, str, str]:
        name = f"{endpoint}:{stream_id}"
        return PREFIXES["stream"] + name, PREFIXES["stream_alive"] + name, PREFIXES["stream_end"] + name

    def closes_at(self, started: float) -> float:
        """When the host ends a stream whose user message came at ``started``."""
        return started + self.window - self.margin

    @property
    def _ttl(self) -> float:
        # Long enough for every poll WeCom makes, and for late readers of the end.
        return self.window + 600.0

    # The owner's side

    def open(self, endpoint: str, *, stream_id: str | None = None, started: float | None = None,
             meta: dict | None = None) -> StreamWriter:
        """Start a stream owned by this process; returns its writer.

        ``started`` is when the user's message arrived (default: now).
        ``meta`` is stored with the stream for the poll that may find it
        orphaned (plain JSON: the message, the plugin's name). The stream
        exists in the store before this returns, so the first answer may go.
        """
        stream_id = stream_id or new_stream_id()
        started = self.clock() if started is None else started
        writer = StreamWriter(self, endpoint, stream_id, started, meta or {})
        record, alive, _ = self._keys(endpoint, stream_id)
        self.store.set(alive, writer.token, self.orphan_after)
        self.store.set(record, writer._record(), self._ttl)
        with self._lock:
            self._writers[writer.token] = writer
        self._start_heartbeat()
        return writer

    def _release(self, writer: StreamWriter) -> None:
        with self._lock:
            self._writers.pop(writer.token, None)
        _, alive, _ = self._keys(writer.endpoint, writer.stream_id)
        try:
            self.store.delete(alive)
        except Exception:
            log.warning("could not drop the heartbeat of stream %s", writer.stream_id, exc_info=True)

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._beating_in == current_pid():
                return
            self._beating_in = current_pid()
        threading.Thread(target=self._beat, name="wechatbot-stream-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        pid = current_pid()
        while self._beating_in == pid:
            self._wake.wait(self.orphan_after / 3)
            with self._lock:
                writers = list(self._writers.values())
            for writer in writers:
                _, alive, _ = self._keys(writer.endpoint, writer.stream_id)
                try:
                    self.store.set(alive, writer.token, self.orphan_after)
                except Exception:
                    log.warning("could not refresh the heartbeat of stream %s", writer.stream_id, exc_info=True)

    def stop(self) -> None:
        """Stop this process's heartbeat thread (streams still open will be found orphaned)."""
        self._beating_in = None
        self._wake.set()
        self._wake = threading.Event()

    # Ending

    def _end(self, endpoint: str, stream_id: str, reason: str, text: str, *, more: bool = False) -> tuple[StreamEnd, bool]:
        """End a stream once: ``(the end, whether this call ended it)``."""
        if reason == DONE:
            content, rest = fit_stream(text, self.limit)
            shown = len(text) - len(rest)
        else:
            shown_text = _visible(text, self.limit)
            note = {WINDOW: MORE_BELOW if shown_text else STILL_WORKING, ORPHAN: INTERRUPTED, ERROR: FAILED}[reason]
            content, shown = (shown_text + note if shown_text else note.lstrip("\n")), len(shown_text)
        ending = StreamEnd(reason, content, shown)
        _, _, end_key = self._keys(endpoint, stream_id)
        if self.store.add(end_key, ending.to_json(), self._ttl):
            log.info("stream %s ended (%s, %d characters shown)", stream_id, reason, shown)
            return ending, True
        stored = self.store.get(end_key)
        return (StreamEnd.from_json(stored) if stored else ending), False

    def ended(self, endpoint: str, stream_id: str) -> StreamEnd | None:
        """How the stream ended, or None while it runs (or when unknown)."""
        _, _, end_key = self._keys(endpoint, stream_id)
        value = self.store.get(end_key)
        return StreamEnd.from_json(value) if value else None

    # Any worker's side

    def poll(self, endpoint: str, stream_id: str) -> Frame:
        """Answer one refresh poll from the store, at once.

        An unknown id gets ``finish: true`` (with empty content): WeCom then
        stops asking. A stream past its window, or whose owner stopped
        beating, is ended here, once.
        """
        metrics.stream_polled(f"wecom:{endpoint}" if endpoint else "wecom")
        record_key, alive_key, _ = self._keys(endpoint, stream_id)
        ending = self.ended(endpoint, stream_id)
        if ending is not None:
            return Frame(ending.content, True, ending.reason)
        value = self.store.get(record_key)
        if value is None:
            return Frame("", True, "unknown")
        record = json.loads(value)
        text, started, meta = record["text"], float(record["started"]), record.get("meta") or {}
        if self.clock() >= self.closes_at(started):
            ending, _ = self._end(endpoint, stream_id, WINDOW, text)
            return Frame(ending.content, True, ending.reason, meta=meta)
        if self.store.get(alive_key) is None:
            ending, mine = self._end(endpoint, stream_id, ORPHAN, text)
            if mine:
                log.warning("stream %s lost its worker: ended with a note after %d characters", stream_id, ending.shown)
            return Frame(ending.content, True, ending.reason, orphaned=mine and ending.reason == ORPHAN, meta=meta)
        return Frame(_visible(text, self.limit) or self.placeholder, False, meta=meta)


class StreamWriter:
    """The owner's handle on one stream: append chunks, then finish.

    Made by :meth:`Streams.open`. Writes are coalesced: the store sees the
    text at most every ``flush_every`` seconds, and always at the end.
    """

    def __init__(self, streams: Streams, endpoint: str, stream_id: str, started: float, meta: dict) -> None:
        self.streams = streams
        self.endpoint = endpoint
        self.stream_id = stream_id
        self.started = started
        self.meta = meta
        self.token = uuid.uuid4().hex
        self._parts: list[str] = []
        self._text = ""
        self._flushed_at = float("-inf")  # the first append writes at once
        self._ending: StreamEnd | None = None
        self._finished = False

    @property
    def text(self) -> str:
        """Everything appended so far."""
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    @property
    def first_frame(self) -> str:
        """The text of the first answer: the text so far, or the placeholder."""
        return _visible(self.text, self.streams.limit) or self.streams.placeholder

    def _record(self) -> str:
        return json.dumps({"text": self.text, "started": self.started, "meta": self.meta}, ensure_ascii=False)

    def append(self, chunk: str) -> bool:
        """Add ``chunk`` to the text; False once the stream has ended (keep going
        if you like: what follows comes back as ``rest`` from :meth:`finish`)."""
        if not isinstance(chunk, str):
            raise TypeError(f"a stream chunk must be a str, not {type(chunk).__name__}")
        self._parts.append(chunk)
        if time.monotonic() - self._flushed_at >= self.streams.flush_every:
            self.flush()
        return self._ending is None

    def flush(self) -> None:
        """Write the text so far to the store (or end the stream when its window closes)."""
        self._flushed_at = time.monotonic()
        if self._ending is not None:
            return
        streams = self.streams
        self._ending = streams.ended(self.endpoint, self.stream_id)
        if self._ending is not None:
            return
        if streams.clock() >= streams.closes_at(self.started):
            self._ending, _ = streams._end(self.endpoint, self.stream_id, WINDOW, self.text)
            return
        record_key, _, _ = streams._keys(self.endpoint, self.stream_id)
        streams.store.set(record_key, self._record(), streams._ttl)

    def finish(self, error: BaseException | None = None) -> tuple[StreamEnd, str]:
        """End the stream (the plugin is done, or raised ``error``).

        Returns ``(how it ended, rest)``: ``rest`` is the text WeCom did not
        show (beyond 20480 bytes, or written after the window closed), to
        send once through ``response_url``; empty when everything was shown.
        """
        if self._finished:
            raise RuntimeError(f"stream {self.stream_id} is already finished")
        self._finished = True
        try:
            self.flush()
            if self._ending is None:
                self._ending, _ = self.streams._end(
                    self.endpoint, self.stream_id, ERROR if error is not None else DONE, self.text)
        finally:
            self.streams._release(self)
        rest = self.text[self._ending.shown:] if self._ending.reason != ERROR else ""
        return self._ending, rest

    def run(self, chunks: Iterable[Any]) -> tuple[StreamEnd, str, BaseException | None]:
        """Feed every chunk of ``chunks`` into the stream, then finish it.

        ``None`` chunks are skipped. Returns ``(end, rest, error)``; an
        exception the iterator raised is caught and returned (the stream then
        ends with a short visible note).
        """
        error: BaseException | None = None
        try:
            for chunk in chunks:
                if chunk is not None:
                    self.append(chunk)
        except Exception as exc:  # the plugin's iterator failed: end visibly, report it
            error = exc
        ending, rest = self.finish(error)
        return ending, rest, error
