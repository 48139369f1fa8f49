"""What the holder of the connection sends, in which order and how often.

WeCom's rules (D:101463) and what peers learned the hard way:

- **one frame in flight per req_id**: the next frame of a req_id waits for the
  receipt of the previous one (a second one earns errcode 6000). Newer text of
  a stream replaces its frame that still waits (each stream frame carries the
  whole text), so a waiting stream costs one frame however fast it grows;
- **a receipt that does not come means "unknown", never "resend"**: resending
  is what shows users a reply twice. The next frame of that req_id goes out
  after the timeout; a receipt with an error says the frame was not applied,
  and only the errors that mean "try later" (6000, 45009) are sent again;
- **30 frames a minute and 1000 an hour per conversation**, replies and
  pushes together: a stream's intermediate frames keep a reserve free for
  the frames that must go out (a stream's last frame, a welcome, a card
  update, a push), and are paced (a short burst, then what the rest of the
  budget sustains) so that a long stream keeps moving instead of stalling
  once a minute's budget is spent.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from . import protocol

log = logging.getLogger("wechatbot.longconn")

PER_MINUTE = 30
PER_HOUR = 1000
RECEIPT_TIMEOUT = 10.0
# Frames of the budget that intermediate stream frames leave to the others.
MINUTE_RESERVE = 10
HOUR_RESERVE = 100
# Least time between two intermediate frames of one conversation, and how
# many may go in a burst before they are paced to what the budget sustains.
STREAM_GAP = 0.5
STREAM_BURST = 6
RETRY_DELAY = 1.0
MAX_ATTEMPTS = 5
# Over the budget by WeCom's count (another holder sent to this conversation
# before a takeover): wait longer, up to beyond the minute's window.
FREQUENCY_DELAY = 10.0


@dataclass
class Outgoing:
    """A frame waiting to be sent, and the conversation whose budget it uses."""

    frame: dict[str, Any]
    conversation: str
    attempts: int = 0
    not_before: float = 0.0

    @property
    def req_id(self) -> str:
        return protocol.req_id(self.frame)

    @property
    def stream(self) -> protocol.StreamState | None:
        return protocol.stream_of(self.frame)

    @property
    def must_go(self) -> bool:
        """Everything but a stream's intermediate frame must reach the user."""
        stream = self.stream
        return stream is None or stream.finish


@dataclass(frozen=True)
class Outcome:
    """What became of a frame: ``delivered``, ``unknown`` (no receipt) or ``failed``."""

    frame: dict[str, Any]
    result: str
    errcode: int | None = None
    errmsg: str = ""


class Budget:
    """The per-conversation budget of WeCom, counted over sliding windows."""

    def __init__(self, per_minute: int = PER_MINUTE, per_hour: int = PER_HOUR) -> None:
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._sent: dict[str, deque[float]] = {}

    def _window(self, conversation: str, now: float) -> deque[float]:
        sent = self._sent.setdefault(conversation, deque())
        while sent and sent[0] <= now - 3600:
            sent.popleft()
        return sent

    def free_at(self, conversation: str, now: float, reserve_minute: int = 0, reserve_hour: int = 0) -> float:
        """The earliest time one more frame fits while leaving the reserves free."""
        sent = self._window(conversation, now)
        hour_room = self.per_hour - reserve_hour - len(sent)
        in_minute = [t for t in sent if t > now - 60]
        minute_room = self.per_minute - reserve_minute - len(in_minute)
        at = now
        if minute_room <= 0:
            at = max(at, in_minute[-minute_room] + 60 if -minute_room < len(in_minute) else now + 60)
        if hour_room <= 0:
            at = max(at, sent[-hour_room] + 3600 if -hour_room < len(sent) else now + 3600)
        return at

    def last(self, conversation: str) -> float | None:
        sent = self._sent.get(conversation)
        return sent[-1] if sent else None

    def spend(self, conversation: str, now: float) -> None:
        self._window(conversation, now).append(now)


@dataclass
class _Lane:
    """The frames of one req_id: at most one in flight, the rest waiting in order."""

    waiting: deque[Outgoing] = field(default_factory=deque)
    in_flight: Outgoing | None = None
    sent_at: float = 0.0


class SendQueue:
    """The holder's queue of frames, thread-safe; the connection drains it."""

    def __init__(self, *, receipt_timeout: float = RECEIPT_TIMEOUT, budget: Budget | None = None,
                 stream_gap: float = STREAM_GAP, retry_delay: float = RETRY_DELAY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.receipt_timeout = receipt_timeout
        self.budget = budget or Budget()
        self.stream_gap = stream_gap
        self.retry_delay = retry_delay
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self._lanes: dict[str, _Lane] = {}
        # Per conversation: intermediate stream frames still allowed in a burst, and when that was counted.
        self._tokens: dict[str, tuple[float, float]] = {}
        self._refill = (self.budget.per_minute - MINUTE_RESERVE) / 60.0
        self._finished: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()

    # -- putting frames in --------------------------------------------------

    def offer(self, frame: dict[str, Any], conversation: str) -> None:
        """Queue a frame; newer text of a stream replaces its frame still waiting."""
        item = Outgoing(frame, conversation)
        with self._cond:
            self._offer(item)
            self._cond.notify_all()

    def _offer(self, item: Outgoing) -> None:
        stream = item.stream
        lane = self._lanes.setdefault(item.req_id, _Lane())
        if stream is not None:
            key = (item.req_id, stream.stream_id)
            if key in self._finished:
                self.stats["after_finish"] += 1
                log.warning("stream %s of %s is finished: a later update is dropped", stream.stream_id, item.req_id)
                return
            last = lane.waiting[-1] if lane.waiting else None
            if last is not None and last.stream is not None and last.stream.stream_id == stream.stream_id:
                last.frame = item.frame
                self.stats["merged"] += 1
                if stream.finish:
                    self._finished[key] = self.clock()
                return
            if stream.finish:
                self._finished[key] = self.clock()
        lane.waiting.append(item)

    def put_back(self, items: list[Outgoing]) -> None:
        """Return frames that could not be written (the connection closed first)."""
        with self._cond:
            for item in reversed(items):
                lane = self._lanes.setdefault(item.req_id, _Lane())
                if lane.in_flight is item:
                    lane.in_flight = None
                lane.waiting.appendleft(item)
            self._cond.notify_all()

    # -- taking frames out ----------------------------------------------------

    def take_due(self) -> list[Outgoing]:
        """The frames that may be sent now; each is in flight from here on."""
        now = self.clock()
        due = []
        with self._cond:
            for lane in self._lanes.values():
                if lane.in_flight is not None or not lane.waiting:
                    continue
                item = lane.waiting[0]
                if item.not_before > now or self._ready_at(item, now) > now:
                    continue
                lane.waiting.popleft()
                lane.in_flight, lane.sent_at = item, now
                item.attempts += 1
                self.budget.spend(item.conversation, now)
                if not item.must_go:
                    self._tokens[item.conversation] = (self._tokens_at(item.conversation, now) - 1, now)
                due.append(item)
            self.stats["sent"] += len(due)
        return due

    def _ready_at(self, item: Outgoing, now: float) -> float:
        if item.must_go:
            return self.budget.free_at(item.conversation, now)
        at = self.budget.free_at(item.conversation, now, MINUTE_RESERVE, HOUR_RESERVE)
        last = self.budget.last(item.conversation)
        if last is not None:
            at = max(at, last + self.stream_gap)
        tokens = self._tokens_at(item.conversation, now)
        if tokens < 1 and self._refill > 0:
            at = max(at, now + (1 - tokens) / self._refill)
        return at

    def _tokens_at(self, conversation: str, now: float) -> float:
        tokens, counted = self._tokens.get(conversation, (float(STREAM_BURST), now))
        return min(float(STREAM_BURST), tokens + (now - counted) * self._refill)

    def wait(self, timeout: float) -> None:
        """Sleep until a frame may be due, a receipt came, or ``timeout`` passed."""
        with self._cond:
            wake = self._next_event()
            if wake is not None:
                timeout = min(timeout, max(0.0, wake - self.clock()))
            if timeout > 0:
                self._cond.wait(timeout)

    def wake(self) -> None:
        """End a :meth:`wait` now (the connection closed)."""
        with self._cond:
            self._cond.notify_all()

    def _next_event(self) -> float | None:
        now = self.clock()
        times = []
        for lane in self._lanes.values():
            if lane.in_flight is not None:
                times.append(lane.sent_at + self.receipt_timeout)
            elif lane.waiting:
                item = lane.waiting[0]
                times.append(max(item.not_before, self._ready_at(item, now)))
        return min(times) if times else None

    # -- what became of them --------------------------------------------------

    def receipt(self, received: dict[str, Any]) -> Outcome | None:
        """Match a receipt to the frame in flight with its req_id (None: nothing was)."""
        req_id = protocol.req_id(received)
        errcode = int(received.get("errcode", 0) or 0)
        errmsg = str(received.get("errmsg", ""))
        with self._cond:
            lane = self._lanes.get(req_id)
            item = lane.in_flight if lane else None
            if lane is None or item is None:
                return None
            lane.in_flight = None
            if errcode == protocol.OK:
                outcome = Outcome(item.frame, "delivered", errcode, errmsg)
            elif errcode in protocol.RETRYABLE and item.attempts < MAX_ATTEMPTS:
                # Not applied: send it again later, unless newer text of its stream replaced it.
                step = FREQUENCY_DELAY if errcode == protocol.ERR_FREQUENCY else self.retry_delay
                item.not_before = self.clock() + step * item.attempts
                self._requeue_front(lane, item)
                self.stats["retried"] += 1
                self._cond.notify_all()
                return Outcome(item.frame, "retrying", errcode, errmsg)
            else:
                outcome = Outcome(item.frame, "failed", errcode, errmsg)
            self._settle(req_id, lane)
            self._cond.notify_all()
        self.stats[outcome.result] += 1
        if outcome.result == "failed":
            log.error("WeCom refused %s for %s: errcode %s %s", item.frame.get("cmd"), req_id, errcode, errmsg)
        return outcome

    def _requeue_front(self, lane: _Lane, item: Outgoing) -> None:
        stream = item.stream
        nxt = lane.waiting[0] if lane.waiting else None
        if stream is not None and nxt is not None and nxt.stream is not None and nxt.stream.stream_id == stream.stream_id:
            return  # the waiting frame carries newer text of the same stream
        lane.waiting.appendleft(item)

    def expire(self) -> list[Outcome]:
        """Frames whose receipt is overdue: their outcome is unknown and they are not resent."""
        now = self.clock()
        outcomes = []
        with self._cond:
            for req_id, lane in list(self._lanes.items()):
                if lane.in_flight is not None and now - lane.sent_at >= self.receipt_timeout:
                    outcomes.append(Outcome(lane.in_flight.frame, "unknown"))
                    lane.in_flight = None
                    self._settle(req_id, lane)
            if outcomes:
                self._cond.notify_all()
        for outcome in outcomes:
            self.stats["unknown"] += 1
            log.warning("no receipt for %s of %s within %.0f s: taken as unknown, not resent",
                        outcome.frame.get("cmd"), protocol.req_id(outcome.frame), self.receipt_timeout)
        return outcomes

    def connection_lost(self) -> list[Outcome]:
        """The connection closed: frames in flight are unknown; waiting ones stay for the next."""
        with self._cond:
            lost = []
            for req_id, lane in list(self._lanes.items()):
                if lane.in_flight is not None:
                    lost.append(Outcome(lane.in_flight.frame, "unknown"))
                    lane.in_flight = None
                    self._settle(req_id, lane)
        self.stats["unknown"] += len(lost)
        return lost

    def drain(self) -> list[Outgoing]:
        """Take every waiting frame out (to hand them to the next holder)."""
        with self._cond:
            items = [item for lane in self._lanes.values() for item in lane.waiting]
            for lane in self._lanes.values():
                lane.waiting.clear()
            for req_id, lane in list(self._lanes.items()):
                self._settle(req_id, lane)
        return items

    def _settle(self, req_id: str, lane: _Lane) -> None:
        if lane.in_flight is None and not lane.waiting:
            del self._lanes[req_id]
        if len(self._finished) > 1000:
            cutoff = self.clock() - 600
            self._finished = {k: t for k, t in self._finished.items() if t > cutoff}

    def pending(self) -> int:
        """Frames waiting or in flight."""
        with self._cond:
            return sum(len(lane.waiting) + (lane.in_flight is not None) for lane in self._lanes.values())
