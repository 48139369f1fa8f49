"""Recognising WeCom's retries of a callback, through the shared store.

WeCom sends a callback again when it had no answer within 5 seconds. A message
is identified by its app and MsgId; an event has no MsgId, so it is identified
by a hash of the whole decrypted message (keys made of FromUserName and
CreateTime, as some peers use, merge distinct events of the same second).
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import os
import socket
import threading
import time
from typing import NamedTuple

from .wecom.messages import Message
from .store import Store

log = logging.getLogger("wechatbot.dedup")

# WeCom retries for about 20 seconds; keep the mark well past that.
DEDUP_TTL = 900.0

RUNNING = "running"
NO_REPLY = "none"
DEFERRED = "deferred"
REPLY_PREFIX = "reply:"
#: Seconds after which a claim still "running" counts as abandoned: its
#: process should have answered or deferred the callback long before.
SILENT_AFTER = 10.0
#: Every callback's dedup key starts with this.
CALLBACK_PREFIX = "cb:"


class Fetched(NamedTuple):
    """A value read from the store along with a claim (``value`` None: the key is absent)."""

    value: str | None


def _owner_alive(host: str, pid: int) -> bool:
    """Whether the process that claimed a callback can still be running (unknown: yes)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def callback_key(app_name: str, message: Message, plaintext: str) -> str:
    """The identity of one callback, the same for every retry of it."""
    if message.msg_id:
        return f"{CALLBACK_PREFIX}{app_name}:msg:{message.msg_id}"
    digest = hashlib.sha256(plaintext.encode("utf-8")).hexdigest()
    return f"{CALLBACK_PREFIX}{app_name}:sha:{digest}"


class Dedup:
    """Marks callbacks as seen and remembers how each one was answered.

    The mark is written at once (it must be atomic across workers); how the
    callback was answered is written by a background thread in batches, one
    transaction per batch gathered over ``flush_every`` seconds (the first
    answer of a batch wakes it; the rest join without a signal): WeCom retries
    only after 5 seconds, and a retry arriving sooner finds the answer in this
    process or waits for it.
    """

    def __init__(self, store: Store, ttl: float = DEDUP_TTL, flush_every: float = 0.1,
                 silent_after: float = SILENT_AFTER) -> None:
        self.store = store
        self.ttl = ttl
        self.silent_after = silent_after
        self._host = socket.gethostname()
        self.flush_every = flush_every
        self._pending: dict[str, str] = {}
        #: The batch being written: still this process's to answer from (a store that
        #: stalls can hold the write for seconds, and a retry must not find "running").
        self._writing: dict[str, str] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_pid: int | None = None

    def claim(self, key: str, take_over: bool = False) -> bool:
        """True for the first arrival of a callback, False for a retry.

        The claim is a lease held by a live process: ``running:<host>:<pid>:<since>``.
        With ``take_over`` (WeCom's HTTP callbacks, whose first arrival always
        records how it was answered), a retry that finds its owner dead (same
        machine) or still running ``silent_after`` seconds after it claimed
        takes the callback over and runs it. A claim taken over is taken over
        again only when its new owner died too (workers killed one after the
        other), never for being silent: a slow plugin runs at most twice, and
        a callback that kills every worker it reaches runs at most as often
        as WeCom sends it (four times).
        """
        return self.claim_and_get(key, None, take_over)[0]

    def claim_and_get(self, key: str, other: str | None, take_over: bool = False) -> tuple[bool, Fetched | None]:
        """:meth:`claim`, reading ``other`` in the same store round trip on a first arrival.

        The second item is ``other``'s value as :class:`Fetched` when it was
        read, ``None`` when it was not (a retry, a callback taken over, or no
        ``other``): then whoever needs it reads it.
        """
        if other is None:
            added, fetched = self.store.add(key, self._running(), self.ttl), None
        else:
            added, value = self.store.add_and_get(key, self._running(), self.ttl, other)
            fetched = Fetched(value) if added else None
        if added:
            return True, fetched
        if not take_over:
            return False, None
        state = self.store.get(key)
        if state is None or not self._abandoned(state):
            return False, None
        self.store.release(key, state)
        if not self.store.add(key, self._running(taken_over=True), self.ttl):
            return False, None  # another retry took it first
        log.warning("callback %s taken over: its first arrival's process is dead or silent", key)
        return True, None

    def _running(self, taken_over: bool = False) -> str:
        return f"{RUNNING}:{self._host}:{os.getpid()}:{time.time():.3f}" + (":again" if taken_over else "")

    def _abandoned(self, state: str) -> bool:
        """Whether a ``running`` claim's owner died, or went silent (when it was not taken over yet)."""
        parts = state.split(":")
        if parts[0] != RUNNING or not (len(parts) == 4 or len(parts) == 5 and parts[4] == "again"):
            return False  # answered or deferred
        _, host, pid, since = parts[:4]
        try:
            pid_number, claimed_at = int(pid), float(since)
        except ValueError:
            return False
        if len(parts) == 4 and time.time() - claimed_at > self.silent_after:
            return True
        return pid_number != os.getpid() and not _owner_alive(host, pid_number)

    def answered(self, key: str, reply_xml: str | None) -> None:
        """Remember the plaintext reply XML (``None``: answered empty)."""
        self._later(key, REPLY_PREFIX + reply_xml if reply_xml else NO_REPLY)

    def deferred(self, key: str) -> None:
        """Remember that the reply goes out later through the API."""
        self._later(key, DEFERRED)

    def state(self, key: str) -> str | None:
        """The latest known state of a callback (this process's unwritten ones first)."""
        pending = self._pending.get(key)
        if pending is None:
            pending = self._writing.get(key)
        return pending if pending is not None else self.store.get(key)

    def wait_for_answer(self, key: str, timeout: float) -> str | None:
        """For a retry: the first arrival's reply XML, waiting while it is still running.

        ``None`` when it was answered empty, deferred, or still running after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            state = self.state(key)
            if state is None or not state.startswith(RUNNING):
                return state[len(REPLY_PREFIX):] if state and state.startswith(REPLY_PREFIX) else None
            if time.monotonic() + delay > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def flush(self) -> None:
        """Write the answers not written yet."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if batch:
            self._writing = batch
            try:
                self.store.set_many(batch, self.ttl)
            except Exception:
                log.exception("could not record %d answered callbacks", len(batch))
            finally:
                self._writing = {}

    def start(self) -> None:
        """Start this process's writer thread (again in a forked child)."""
        if self._writer_pid == os.getpid():
            return
        self._writer_pid = os.getpid()
        self._lock = threading.Lock()  # a fork may have copied it held
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_batches, name="wechatbot-dedup-writer", daemon=True)
        self._writer.start()
        atexit.register(self.flush)

    def stop(self) -> None:
        """Write what is pending and end this process's writer thread."""
        writer, self._writer = self._writer, None
        if writer is not None and self._writer_pid == os.getpid():
            self._stop.set()
            self._wake.set()
            writer.join(timeout=5)
            atexit.unregister(self.flush)
        self._writer_pid = None
        self.flush()

    def _later(self, key: str, value: str) -> None:
        with self._lock:
            first = not self._pending
            self._pending[key] = value
        if first:  # the writer is waiting for a batch to start; later ones join it
            self._wake.set()

    def _write_batches(self) -> None:
        stop = self._stop
        while not stop.is_set():
            self._wake.wait()
            stop.wait(self.flush_every)  # let a batch gather
            self._wake.clear()
            self.flush()
