"""What the holder of the connection sends, in which order and how often.

WeCom's rules (D:101463) and what peers learned the hard way:

- **one frame in flight per req_id**: the next frame of a req_id waits for the
  receipt of the previous one (a second one earns errcode 6000). Newer text of
  a stream replaces its frame that still waits (each stream frame carries the
  whole text), so a waiting stream costs one frame however fast it grows;
- **a receipt that does not come means "unknown", never "resend"**: resending
  is what shows users a reply twice. The next frame of that req_id goes out
  after the timeout. A receipt with an error says the frame was not applied:
  the errors that mean "try later" (-1 busy, 6000, the rate limits 45009 and
  45033) are sent again after growing pauses until the frame's deadline
  (``retry_for`` after it was offered), the others fail for good;
- **a connection that drops with a frame in flight**: a frame that shows
  nothing twice when sent twice (a stream's frame, a card update) goes again
  on the next connection (846608 to a finished stream's frame sent again
  means the first copy arrived); any other is "unknown", as above. A frame
  still waiting past its deadline (the connection stayed down) fails;
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
# First pause before a frame refused with "try later" goes again; it doubles each time, up to MAX_RETRY_PAUSE.
RETRY_DELAY = 1.0
# Over the budget by WeCom's count (another holder sent to this conversation
# before a takeover): wait longer, up to beyond the minute's window.
FREQUENCY_DELAY = 10.0
MAX_RETRY_PAUSE = 60.0
# How long a frame may take to be delivered, from when it was offered.
RETRY_FOR = 600.0


@dataclass
class Outgoing:
    """A frame waiting to be sent, and the conversation whose budget it uses.

    ``key`` names the frame's record in the store (frames that must reach the
    user are kept there until settled), ``meta`` says whom to tell if it fails
    (the plugin and the message), ``deadline`` is when it is given up (on the
    queue's clock); ``maybe_applied`` is set when a copy may have arrived.
    """

    frame: dict[str, Any]
    conversation: str
    attempts: int = 0
    not_before: float = 0.0
    key: str | None = None
    meta: dict[str, Any] | None = None
    deadline: float = float("inf")
    maybe_applied: bool = False
    errcode: int | None = None  # the last receipt's, when it said "try later"
    errmsg: str = ""

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
    """What became of a frame: ``delivered``, ``unknown`` (no receipt), ``failed``, or ``retrying``
    (it goes again); ``superseded`` for a frame dropped unsent (a stream's update after its end).

    ``gave_up`` says that a frame failed because its deadline passed while it was
    being tried again or waited for a connection.
    """

    frame: dict[str, Any]
    result: str
    errcode: int | None = None
    errmsg: str = ""
    gave_up: bool = False

    @property
    def settled(self) -> bool:
        """Whether nothing more will happen to the frame."""
        return self.result != "retrying"


#: Told of every outcome, outside the queue's lock: ``(the frame as queued, what became of it)``.
Listener = Callable[[Outgoing, Outcome], None]


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
                 frequency_delay: float = FREQUENCY_DELAY, retry_for: float = RETRY_FOR,
                 clock: Callable[[], float] = time.monotonic, on_outcome: Listener | None = None) -> None:
        self.receipt_timeout = receipt_timeout
        self.budget = budget or Budget()
        self.stream_gap = stream_gap
        self.retry_delay = retry_delay
        self.frequency_delay = frequency_delay
        self.retry_for = retry_for
        self.clock = clock
        self.on_outcome = on_outcome
        self.stats: Counter[str] = Counter()
        self._lanes: dict[str, _Lane] = {}
        # The keys of the frames offered (queued or settled) and when: a frame recovered from the
        # store and the same frame from the outbox are queued once.
        self._keys: dict[str, float] = {}
        # Per conversation: intermediate stream frames still allowed in a burst, and when that was counted.
        self._tokens: dict[str, tuple[float, float]] = {}
        self._refill = (self.budget.per_minute - MINUTE_RESERVE) / 60.0
        self._finished: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()

    # -- putting frames in --------------------------------------------------

    def offer(self, frame: dict[str, Any], conversation: str, *, key: str | None = None,
              meta: dict[str, Any] | None = None, deadline: float | None = None, maybe_applied: bool = False) -> bool:
        """Queue a frame; newer text of a stream replaces its frame still waiting.

        ``deadline`` (on the queue's clock) defaults to ``retry_for`` from now.
        False when a frame of the same ``key`` was offered before (it is not queued twice).
        """
        now = self.clock()
        item = Outgoing(frame, conversation, key=key, meta=meta, maybe_applied=maybe_applied,
                        deadline=now + self.retry_for if deadline is None else deadline)
        with self._cond:
            if key is not None:
                if key in self._keys:
                    return False
                self._keys[key] = now
            queued = self._offer(item)
            self._cond.notify_all()
        if not queued:
            self._tell([(item, Outcome(frame, "superseded"))])
        return True

    def _offer(self, item: Outgoing) -> bool:
        stream = item.stream
        lane = self._lanes.setdefault(item.req_id, _Lane())
        if stream is not None:
            key = (item.req_id, stream.stream_id)
            if key in self._finished:
                self.stats["after_finish"] += 1
                log.warning("stream %s of %s is finished: a later update is dropped", stream.stream_id, item.req_id)
                self._settle(item.req_id, lane)
                return False
            last = lane.waiting[-1] if lane.waiting else None
            if last is not None and last.stream is not None and last.stream.stream_id == stream.stream_id:
                last.frame, last.deadline = item.frame, item.deadline
                last.key, last.meta = item.key or last.key, item.meta or last.meta
                self.stats["merged"] += 1
                if stream.finish:
                    self._finished[key] = self.clock()
                return True
            if stream.finish:
                self._finished[key] = self.clock()
        lane.waiting.append(item)
        return True

    def _tell(self, outcomes: list[tuple[Outgoing, Outcome]]) -> None:
        """Count and hand on outcomes (never under the lock: the listener may touch the store)."""
        for item, outcome in outcomes:
            self.stats[outcome.result] += 1
            if self.on_outcome is not None:
                try:
                    self.on_outcome(item, outcome)
                except Exception:
                    log.exception("the outcome of %s of %s could not be handled", outcome.frame.get("cmd"),
                                  protocol.req_id(outcome.frame))

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
        try:
            errcode = int(received.get("errcode", 0) or 0)
        except (TypeError, ValueError, OverflowError):
            errcode = -2  # a receipt that makes no sense: not "ok", and no reason to try again
        errmsg = str(received.get("errmsg", ""))
        with self._cond:
            lane = self._lanes.get(req_id)
            item = lane.in_flight if lane else None
            if lane is None or item is None:
                return None
            lane.in_flight = None
            stream = item.stream
            if errcode == protocol.OK:
                outcome = Outcome(item.frame, "delivered", errcode, errmsg)
            elif errcode == protocol.ERR_STREAM_CLOSED and item.maybe_applied and stream is not None and stream.finish:
                outcome = Outcome(item.frame, "delivered", errcode, errmsg)  # the copy sent before the drop arrived
            elif errcode in protocol.RETRYABLE:
                # Not applied: send it again later, unless newer text of its stream replaced it.
                base = self.frequency_delay if errcode in protocol.RATE_LIMITS else self.retry_delay
                at = self.clock() + min(base * 2 ** max(0, item.attempts - 1), MAX_RETRY_PAUSE)
                item.errcode, item.errmsg = errcode, errmsg
                if at <= item.deadline:
                    item.not_before = at
                    self._requeue_front(lane, item)
                    self._cond.notify_all()
                    outcome = Outcome(item.frame, "retrying", errcode, errmsg)
                else:
                    outcome = Outcome(item.frame, "failed", errcode, errmsg, gave_up=True)
            else:
                outcome = Outcome(item.frame, "failed", errcode, errmsg)
            if outcome.settled:
                self._settle(req_id, lane)
                self._cond.notify_all()
        self._tell([(item, outcome)])
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
        told = []
        with self._cond:
            for req_id, lane in list(self._lanes.items()):
                if lane.in_flight is not None and now - lane.sent_at >= self.receipt_timeout:
                    told.append((lane.in_flight, Outcome(lane.in_flight.frame, "unknown")))
                    lane.in_flight = None
                    self._settle(req_id, lane)
            if told:
                self._cond.notify_all()
        for _, outcome in told:
            log.warning("no receipt for %s of %s within %.0f s: taken as unknown, not resent",
                        outcome.frame.get("cmd"), protocol.req_id(outcome.frame), self.receipt_timeout)
        self._tell(told)
        return [outcome for _, outcome in told]

    def give_up(self) -> list[Outcome]:
        """Frames still waiting past their deadline (the connection stayed down, or WeCom stayed busy): failed."""
        now = self.clock()
        told = []
        with self._cond:
            for req_id, lane in list(self._lanes.items()):
                overdue = [item for item in lane.waiting if item.deadline < now]
                for item in overdue:
                    lane.waiting.remove(item)
                    told.append((item, Outcome(item.frame, "failed", item.errcode, item.errmsg, gave_up=True)))
                if overdue:
                    self._settle(req_id, lane)
        self._tell(told)
        return [outcome for _, outcome in told]

    def connection_lost(self) -> list[Outcome]:
        """The connection closed: a frame in flight goes again if a second copy shows nothing twice,
        else its outcome is unknown; waiting frames stay for the next connection."""
        told = []
        with self._cond:
            for req_id, lane in list(self._lanes.items()):
                item = lane.in_flight
                if item is None:
                    continue
                lane.in_flight = None
                if protocol.resendable(item.frame):
                    item.maybe_applied = True
                    self._requeue_front(lane, item)
                    told.append((item, Outcome(item.frame, "retrying")))
                else:
                    told.append((item, Outcome(item.frame, "unknown")))
                self._settle(req_id, lane)
            self._cond.notify_all()
        self._tell(told)
        return [outcome for _, outcome in told]

    def drain(self) -> list[Outgoing]:
        """Take every waiting frame out (to hand them to the next holder)."""
        with self._cond:
            items = [item for lane in self._lanes.values() for item in lane.waiting]
            for lane in self._lanes.values():
                lane.waiting.clear()
            for item in items:  # handed on: this queue takes them again if they come back to it
                if item.key is not None:
                    self._keys.pop(item.key, None)
            for req_id, lane in list(self._lanes.items()):
                self._settle(req_id, lane)
        return items

    def _settle(self, req_id: str, lane: _Lane) -> None:
        if lane.in_flight is None and not lane.waiting:
            self._lanes.pop(req_id, None)
        if len(self._finished) > 1000:
            cutoff = self.clock() - 600
            self._finished = {k: t for k, t in self._finished.items() if t > cutoff}
        if len(self._keys) > 10_000:
            cutoff = self.clock() - max(3600.0, self.retry_for + 120)
            self._keys = {k: t for k, t in self._keys.items() if t > cutoff}

    def pending(self) -> int:
        """Frames waiting or in flight."""
        with self._cond:
            return sum(len(lane.waiting) + (lane.in_flight is not None) for lane in self._lanes.values())
