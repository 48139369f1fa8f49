"""Exactly one connection per bot, across every worker and host that shares the store.

Each process that serves a ``mode = websocket`` bot runs a :class:`Holder`.
All of them try to take the bot's lease; the one that has it connects, the
others stand by and try again every ``standby_poll`` seconds. If the holder
dies, its lease runs out (``lease_ttl``) and a standby takes over.

A ``disconnected_event`` means another connection subscribed the bot. When
this process still holds the lease, that connection belongs to something
outside this store (another deployment): the holder keeps the lease, so no
process of this store joins the fight, and waits before connecting again,
longer each time (``kick_backoff``). When the lease is gone, the new holder
is legitimate and this one simply stands by.

Frames may be produced in any process (a plugin in another worker, a
deferred job): :meth:`Holder.send` hands them to the send queue when this
process holds the connection, and to the bot's outbox in the store otherwise,
which the holder empties every ``outbox_poll`` seconds. A process that loses
the lease moves the frames still waiting into the outbox for the next holder.

Every frame that must reach the user is also written down in the store
(:mod:`.pending`) until it is settled. A new holder sends what the previous
one left unsettled (its process was killed while the frame waited), and a
frame still undelivered ``retry_for`` seconds after it was made (WeCom stayed
busy, or the connection stayed down) is given up. What fails for good is
logged once with its hint, counted (``wechatbot_longconn_frames{outcome="failed"}``)
and handed to ``on_failed`` (the service reports it to ``plugin_error``).
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Any, Callable

from .. import metrics
from ..store import PREFIXES, Store
from . import protocol
from .connection import KICKED, REFUSED, STOPPED, ConnectionSettings, run_connection
from .lease import Lease
from .pending import PendingFrames
from .sendqueue import RETRY_FOR, Outcome, Outgoing, SendQueue

log = logging.getLogger("wechatbot.longconn")

# Outbox entries older than this are dropped (a frame that must reach the user
# is still found through its record in the store, until its deadline).
OUTBOX_TTL = 600.0
# How often the holder looks for frames that are past their deadline, and reads the records in the store.
GIVE_UP_EVERY = 1.0
RECOVER_EVERY = 60.0

#: Told of a frame that failed for good: its meta (``plugin``, ``body``: the message) and the error.
FailureHandler = Callable[[dict[str, Any], Exception], None]


def hand_over(store: Store, bot_id: str, frame: dict[str, Any], conversation: str,
              meta: dict[str, Any] | None = None, retry_for: float = RETRY_FOR) -> None:
    """Send a frame through whichever process holds the connection: its outbox in the store.

    A frame that must reach the user is written down first (see :mod:`.pending`).
    """
    entry: dict[str, Any] = {"frame": frame, "conversation": conversation}
    if protocol.must_go(frame):
        entry = PendingFrames(store, bot_id).add(frame, conversation, meta, retry_for)
    _to_outbox(store, bot_id, entry, retry_for)


def _to_outbox(store: Store, bot_id: str, entry: dict[str, Any], retry_for: float) -> None:
    store.push(PREFIXES["longconn_outbox"] + bot_id, json.dumps(entry, ensure_ascii=False), max(OUTBOX_TTL, retry_for))


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before try number ``attempt`` (1, 2, …): doubling, capped, with jitter.

    The jitter (a random half to all of the delay) keeps processes that lost
    the connection together from coming back in step.
    """
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (0.5 + 0.5 * (rng or random).random())


class Holder:
    """Keeps the one connection of one bot while this process holds the bot's lease.

    ``on_callback`` gets every callback frame (on the reader thread: hand work
    off quickly); ``on_acquired`` runs each time this process takes the lease;
    ``on_failed`` is told of each frame with meta that failed for good.
    """

    def __init__(self, settings: ConnectionSettings, store: Store, on_callback: Callable[[dict[str, Any]], None], *,
                 on_acquired: Callable[[], None] | None = None, on_failed: FailureHandler | None = None,
                 retry_for: float = RETRY_FOR, queue: SendQueue | None = None,
                 lease_ttl: float = 5.0, standby_poll: float = 1.0, outbox_poll: float = 0.1, reconnect_backoff: tuple[float, float] = (1.0, 30.0),
                 refused_backoff: tuple[float, float] = (5.0, 300.0),
                 kick_backoff: tuple[float, float] = (30.0, 600.0)) -> None:
        self.settings = settings
        self.store = store
        self.on_callback = on_callback
        self.on_acquired = on_acquired
        self.on_failed = on_failed
        self.retry_for = retry_for
        self.queue = queue or SendQueue()
        self.queue.retry_for = retry_for
        self.queue.on_outcome = self._outcome
        self.pending = PendingFrames(store, settings.bot_id)
        self.lease = Lease(store, PREFIXES["longconn_lease"] + settings.bot_id, lease_ttl)
        self.outbox_key = PREFIXES["longconn_outbox"] + settings.bot_id
        self.standby_poll = standby_poll
        self.outbox_poll = outbox_poll
        self.reconnect_backoff = reconnect_backoff
        self.refused_backoff = refused_backoff
        self.kick_backoff = kick_backoff
        self.subscriptions = 0
        self._holding = False
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_pull = 0.0
        self._next_beat = 0.0
        self._next_give_up = 0.0
        self._next_recover = 0.0

    # -- life --------------------------------------------------------------

    def start(self) -> None:
        """Start standing by for the lease, in a thread of this process."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"wechatbot-longconn-{self.settings.bot_id}", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Close the connection, hand waiting frames on and give the lease up."""
        self._stop.set()
        self.queue.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def holding(self) -> bool:
        """Whether this process holds the bot's connection (or is reconnecting it)."""
        return self._holding

    @property
    def owner(self) -> str:
        """This process's name among the candidates (host, pid, a random part)."""
        return self.lease.owner

    def is_alive(self, owner: str) -> bool:
        """Whether the process named ``owner`` still serves this bot (holding or standing by)."""
        return self.store.get(PREFIXES["longconn_alive"] + owner) is not None

    def _beat(self) -> None:
        """Say in the store that this process is alive; it lapses as soon as its lease would."""
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self.lease.renew_every
        try:
            self.store.set(PREFIXES["longconn_alive"] + self.owner, "1", self.lease.ttl * 0.8)
        except Exception as exc:
            log.warning("bot %s: cannot write the heartbeat (%s)", self.settings.bot_id, exc)

    @property
    def connected(self) -> bool:
        """Whether this process has the bot's connection open and subscribed right now."""
        return self._connected.is_set()

    # -- frames from anywhere in this process --------------------------------

    def send(self, frame: dict[str, Any], conversation: str, meta: dict[str, Any] | None = None) -> None:
        """Send a frame through whichever process holds the connection.

        ``meta`` (``plugin``, ``body``: the message's JSON) says whom to tell if it fails for good
        (a stream's intermediate frames are never reported: its last frame is).
        """
        entry: dict[str, Any] = {"frame": frame, "conversation": conversation}  # a stream's update: no report
        if protocol.must_go(frame):
            entry["meta"] = meta
            try:
                entry = self.pending.add(frame, conversation, meta, self.retry_for)
            except Exception as exc:  # the frame still goes; only its recovery after a crash is lost
                log.warning("bot %s: cannot write down %s of %s (%s): it is not sent again if this process dies",
                            self.settings.bot_id, frame.get("cmd"), protocol.req_id(frame), exc)
        with self._lock:
            if self._holding:
                self._offer(entry)
                return
        _to_outbox(self.store, self.settings.bot_id, entry, self.retry_for)

    def _offer(self, entry: dict[str, Any], maybe_applied: bool = False) -> bool:
        """Queue a frame written down as ``entry``; False when it was queued before."""
        until = entry.get("until")
        deadline = None if until is None else self.queue.clock() + (float(until) - time.time())
        return self.queue.offer(entry["frame"], entry["conversation"], key=entry.get("key"), meta=entry.get("meta"),
                                deadline=deadline, maybe_applied=maybe_applied or bool(entry.get("maybe_applied")))

    def _entry(self, item: Outgoing) -> dict[str, Any]:
        """A queued frame as its outbox entry, deadline and record key kept."""
        entry = {"frame": item.frame, "conversation": item.conversation, "meta": item.meta,
                 "until": time.time() + (item.deadline - self.queue.clock()), "maybe_applied": item.maybe_applied}
        if item.key is not None:
            entry["key"] = item.key
        return entry

    # -- what became of them -------------------------------------------------------

    def _outcome(self, item: Outgoing, outcome: Outcome) -> None:
        """Count an outcome, forget a settled frame's record, and report a failure once."""
        if outcome.result != "superseded":
            metrics.longconn_frame(self.settings.bot_id, outcome.result)
        if outcome.settled and item.key is not None:
            try:
                self.pending.done(item.key)
            except Exception as exc:
                log.warning("bot %s: cannot forget a settled frame (%s): a new holder may send it again",
                            self.settings.bot_id, exc)
        if outcome.result == "failed":
            self._failed(item, outcome)

    def _failed(self, item: Outgoing, outcome: Outcome) -> None:
        from ..api.hints import WeComAPIError, WeComNetworkError  # only on this path: the API loads requests

        cmd, req_id = item.frame.get("cmd"), item.req_id
        error: Exception
        if outcome.errcode is not None:
            error = WeComAPIError(outcome.errcode, outcome.errmsg, str(cmd), protocol.hint(outcome.errcode))
        elif self.connected:
            error = WeComNetworkError(f"not sent within push_retry_for ({self.retry_for:.0f} s): the conversation's "
                                      "budget (30 frames a minute, 1000 an hour) stayed spent")
        else:
            error = WeComNetworkError(f"not sent within push_retry_for ({self.retry_for:.0f} s): the long connection "
                                      "was down")
        if outcome.gave_up:
            log.error("bot %s: %s for %s to %s given up after %d attempt(s) within %.0f s: %s", self.settings.bot_id,
                      cmd, req_id, item.conversation, item.attempts, self.retry_for, error)
        else:
            log.error("bot %s: WeCom refused %s for %s to %s: %s", self.settings.bot_id, cmd, req_id,
                      item.conversation, error)
        if self.on_failed is not None and item.meta is not None:
            self.on_failed(item.meta, error)

    def _recover(self, takeover: bool) -> None:
        """Queue the frames written down in the store and not settled: after a takeover, the previous
        holder's (which may have been sent already); else those still on their way through the outbox."""
        try:
            entries = self.pending.unsettled()
        except Exception as exc:
            log.warning("bot %s: cannot read the pending frames (%s)", self.settings.bot_id, exc)
            return
        with self._lock:
            queued = sum(1 for entry in entries if self._holding and self._offer(entry, maybe_applied=takeover))
        if queued and takeover:
            log.warning("bot %s: %d frame(s) the previous holder left unsettled are sent again", self.settings.bot_id,
                        queued)

    # -- the holder's loop -----------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._beat()
            if self.lease.acquire():
                log.info("bot %s: this process (%s) holds the connection", self.settings.bot_id, self.lease.owner)
                with self._lock:
                    self._holding = True
                try:
                    self._recover(takeover=True)
                    self._next_recover = time.monotonic() + RECOVER_EVERY
                    if self.on_acquired is not None:
                        try:
                            self.on_acquired()
                        except Exception:
                            log.exception("bot %s: taking over the previous holder's work failed", self.settings.bot_id)
                    self._hold()
                finally:
                    self._let_go()
            self._stop.wait(self.standby_poll * (0.75 + 0.5 * random.random()))

    def _hold(self) -> None:
        """Connect and reconnect while the lease lasts."""
        failures = refusals = kicks = 0
        while self._keep_going():
            ended = run_connection(self.settings, self.queue, self.on_callback, self._keep_going, self._connected)
            metrics.longconn_ended(self.settings.bot_id, ended.reason)
            if ended.subscribed:
                self.subscriptions += 1
                failures = refusals = 0
            if ended.reason == STOPPED:
                return
            if ended.reason == KICKED:
                if not self._keep_going():
                    return  # a process of this store took over: it is the holder now
                kicks += 1
                wait = backoff(kicks, *self.kick_backoff)
                log.warning("bot %s: kicked by a connection from outside this store (another deployment with the "
                            "same bot_id?); connecting again in %.0f s. Run one deployment per bot, or share the store.",
                            self.settings.bot_id, wait)
            elif ended.reason == REFUSED:
                refusals += 1
                wait = backoff(refusals, *self.refused_backoff)
            else:
                failures += 1
                wait = backoff(failures, *self.reconnect_backoff)
                log.info("bot %s: connection %s; reconnecting in %.1f s", self.settings.bot_id, ended.reason, wait)
            if not self._pause(wait):
                return

    def _pause(self, seconds: float) -> bool:
        """Wait, keeping the lease; False when it is lost or the holder closes."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._keep_going():
                return False
            self._stop.wait(min(self.lease.renew_every / 2, deadline - time.monotonic(), 0.5))
        return self._keep_going()

    def _keep_going(self) -> bool:
        """Renew the lease when due and take in the outbox; False to stop holding."""
        if self._stop.is_set() or not self.lease.keep():
            return False
        self._beat()
        now = time.monotonic()
        if now >= self._next_pull:
            self._next_pull = now + self.outbox_poll
            self._pull_outbox()
        if now >= self._next_give_up:
            self._next_give_up = now + GIVE_UP_EVERY
            self.queue.give_up()
        if now >= self._next_recover:
            self._next_recover = now + RECOVER_EVERY
            self._recover(takeover=False)
        return True

    def _pull_outbox(self) -> None:
        try:
            entries = self.store.pop(self.outbox_key, 100)
        except Exception as exc:
            log.warning("bot %s: cannot read the outbox (%s)", self.settings.bot_id, exc)
            return
        for raw in entries:
            try:
                self._offer(json.loads(raw))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.error("bot %s: dropped a broken outbox entry (%s)", self.settings.bot_id, exc)

    def _let_go(self) -> None:
        with self._lock:
            self._holding = False
            waiting = self.queue.drain()
        for item in waiting:
            try:
                _to_outbox(self.store, self.settings.bot_id, self._entry(item), self.retry_for)
            except Exception as exc:  # a frame written down is still found by the next holder
                log.warning("bot %s: cannot hand %s of %s to the next holder (%s)", self.settings.bot_id,
                            item.frame.get("cmd"), item.req_id, exc)
        if waiting:
            log.info("bot %s: %d waiting frame(s) handed to the next holder", self.settings.bot_id, len(waiting))
        self.lease.release()

