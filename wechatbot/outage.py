"""A store that is down is a state, not an exception.

:class:`ResilientStore` stands in front of the configured store (SQLite or
Redis). While that store answers, every call goes to it. When a call fails
because the store cannot be reached or written (Redis gone or frozen, the
SQLite file read-only, its folder removed, the disk full), the store is
*down*: calls are answered from a memory store in this process instead, so
callbacks are still answered and plugins still run. Dedup then only sees
this process's retries; each callback claimed meanwhile is counted as a
possible duplicate. Every ``probe_every`` seconds one call tries the real
store again, with a write first (a full disk or a read-only file still
answers reads); the first that succeeds makes it *up* again, by itself.

One log line when the state changes, at most one a minute while it lasts, and
no tracebacks: an outage is expected. :meth:`check` and :attr:`healthy` are
what ``/readyz`` asks.

Starting while the store is down works the same way: the store is opened
again at each probe until it opens.

What was kept here during the outage is copied back when the store returns
(by a background thread, so that no callback waits for it): every key with
the time it had left, with ``add``, so that a key the store already holds
keeps the store's value (another process or host may have written it since),
and every list entry (frames waiting for a long connection), appended. Two
things are left out on purpose: ``lock:`` keys, since a lock taken in one
process's memory excluded no one else and copying it would only make others
wait for it to expire, and the ``ready:`` probe keys. Durable jobs are not
kept here at all: :attr:`durable` is the real store or an error, and
:class:`~wechatbot.jobs.Jobs` keeps a job the store cannot take in its own
spool until it can (a job written only to this process's memory would be
found by no other process). What cannot be copied back is what a process
that died during the outage kept: its marks, answers and spooled jobs.
"""
from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from typing import Any, Callable

from .dedup import CALLBACK_PREFIX
from .process import current_pid
from .store import PREFIXES, MemoryStore, Store, StoreURLError, _redact, open_store

__all__ = ["ResilientStore", "StoreDown", "outage_errors"]

log = logging.getLogger("wechatbot.store")

#: Seconds between two attempts to reach a store that is down.
PROBE_EVERY = 1.0
#: Seconds between two "still down" log lines.
REMIND_EVERY = 60.0
#: The key a probe writes to see the store take writes again (one per process).
WRITE_PROBE_PREFIX = PREFIXES["ready"] + "write:"
#: Keys never copied back after an outage (see the module's docstring).
NOT_COPIED_BACK = (PREFIXES["lock"], PREFIXES["ready"])


class StoreDown(ConnectionError):
    """The store is down and it is not yet time to try it again (raised by :attr:`ResilientStore.durable`)."""


def outage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the store cannot be reached or written", not a bug."""
    errors: list[type[BaseException]] = [OSError, sqlite3.Error]
    redis = sys.modules.get("redis")  # loaded by a Redis store; a SQLite host never imports it
    if redis is not None and hasattr(redis, "RedisError"):
        errors.append(redis.RedisError)
    return tuple(errors)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


class ResilientStore(Store):
    """The store at ``url``, answered from this process's memory while it is down.

    ``opener`` opens the real store (default :func:`~wechatbot.store.open_store`);
    a URL no backend accepts still raises :class:`StoreURLError` at once.
    ``clock`` is ``time.monotonic`` (tests pass their own).
    """

    def __init__(self, url: str, opener: Callable[[str], Store] = open_store, *,
                 probe_every: float = PROBE_EVERY, remind_every: float = REMIND_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._shown_url = _redact(url)
        self._opener = opener
        self.probe_every = probe_every
        self.remind_every = remind_every
        self._clock = clock
        self._lock = threading.Lock()
        self._local = MemoryStore()
        self._primary: Store | None = None
        self._closed = False
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._next_reminder = 0.0
        self._last_error: BaseException | None = None
        #: Entries written back (or found there already) after the last outage.
        self.copied_back = 0
        self._copier: threading.Thread | None = None
        #: Calls answered locally during the current or last outage, and
        #: callbacks claimed meanwhile (possible duplicates across processes).
        self.local_calls = 0
        self.possible_duplicates = 0
        self.outages = 0
        try:
            self._primary = opener(url)
        except StoreURLError as exc:
            cause = exc.__cause__
            if not isinstance(cause, self._errors):
                raise
            self._went_down(cause)
        except self._errors as exc:
            self._went_down(exc)
        else:
            self.ping()  # a Redis client connects lazily: know the state from the start

    @property
    def _errors(self) -> tuple[type[BaseException], ...]:
        return outage_errors()

    # -- state ------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Whether the real store answered the last call made to it."""
        return self._down_since is None

    @property
    def down_for(self) -> float:
        """Seconds since the store went down (0 while it is up)."""
        return 0.0 if self._down_since is None else self._clock() - self._down_since

    def ping(self) -> bool:
        """Ask the real store now; True when it answered. Updates the state."""
        try:
            self.check()
        except self._errors:
            return False
        return True

    def check(self, key: str = "ready:ping") -> None:
        """Ask the real store now, raising its error when it cannot answer. Updates the state.

        A write, then a read of ``key``: a store may answer reads but not
        writes (a full disk, a read-only file, a SQLite file removed while open).
        """
        try:
            primary = self._open()
            self._write_probe(primary)
            primary.get(key)
        except self._errors as exc:
            self._went_down(exc)
            raise
        self._came_back()

    @property
    def durable(self) -> Store:
        """The real store, never this process's memory: its calls raise while the store is down.

        For what must be seen by every process (durable jobs). While the store
        is down a call raises :class:`StoreDown` at once, except the one per
        ``probe_every`` that tries the real store.
        """
        return _Durable(self)

    def _write_probe(self, primary: Store) -> None:
        primary.set(f"{WRITE_PROBE_PREFIX}{current_pid()}", "1", 60.0)

    def _open(self) -> Store:
        primary = self._primary
        if primary is None:
            try:
                primary = self._opener(self.url)
            except StoreURLError as exc:
                raise exc.__cause__ if isinstance(exc.__cause__, self._errors) else exc
            self._primary = primary
        return primary

    def _went_down(self, exc: BaseException) -> None:
        now = self._clock()
        self._last_error = exc
        with self._lock:
            self._next_probe = now + self.probe_every
            if self._down_since is not None:
                if now >= self._next_reminder:
                    self._next_reminder = now + self.remind_every
                    log.warning("store %s still unreachable after %.0f s (%s); %d calls answered in this process, "
                                "%d callbacks possibly handled twice", self._shown_url, now - self._down_since,
                                _reason(exc), self.local_calls, self.possible_duplicates)
                return
            self._down_since = now
            self._next_reminder = now + self.remind_every
            self.outages += 1
            self.local_calls = self.possible_duplicates = 0
        log.error("store %s unreachable (%s): answering from this process until it is back; retries may run "
                  "plugins twice meanwhile", self._shown_url, _reason(exc))

    def _came_back(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            lasted, self._down_since = self._clock() - self._down_since, None
            kept, self._local = self._local, MemoryStore()
        log.warning("store %s is back after %.0f s; %d calls were answered in this process, %d callbacks "
                    "possibly handled twice; copying back what was kept here", self._shown_url, lasted,
                    self.local_calls, self.possible_duplicates)
        self._copier = threading.Thread(target=self._copy_back, args=(kept,), name="wechatbot-store-copy-back",
                                        daemon=True)
        self._copier.start()

    def _copy_back(self, kept: MemoryStore) -> None:
        """Write what ``kept`` holds into the real store (see the module's docstring)."""
        time.sleep(0.05)  # let calls that chose the local store just before it came back finish there
        entries, items = kept.snapshot()
        entries = [entry for entry in entries if not entry[0].startswith(NOT_COPIED_BACK)]
        copied = 0
        try:
            primary = self._open()
            for n, (key, value, ttl) in enumerate(entries):
                if ttl is None or ttl > 0.001:
                    primary.add(key, value, ttl)
                copied = n + 1
            for n, (key, value, ttl) in enumerate(items):
                if ttl > 0.001:
                    primary.push(key, value, ttl)
                copied = len(entries) + n + 1
        except self._errors as exc:
            self._went_down(exc)
            rest_entries = entries[copied:]
            rest_items = items[max(0, copied - len(entries)):]
            local = self._local
            for key, value, ttl in rest_entries:  # kept for the next time it is back
                if ttl is None or ttl > 0.001:
                    local.add(key, value, ttl)
            for key, value, ttl in rest_items:
                if ttl > 0.001:
                    local.push(key, value, ttl)
        self.copied_back = copied
        if entries or items:
            log.debug("store %s: %d of %d entries kept in this process during the outage copied back",
                     self._shown_url, copied, len(entries) + len(items))

    def wait_copied_back(self, timeout: float = 10.0) -> None:
        """Wait for the copy after the last outage to finish (tests)."""
        copier = self._copier
        if copier is not None:
            copier.join(timeout)

    def _probe_due(self) -> bool:
        """True for the one caller per ``probe_every`` that tries the real store while it is down."""
        now = self._clock()
        if now < self._next_probe:
            return False
        with self._lock:
            if now < self._next_probe:
                return False
            self._next_probe = now + self.probe_every
            return True

    def _call(self, name: str, *args: Any) -> Any:
        """``name(*args)`` on the real store, or on the local one while it is down."""
        if self._closed:
            raise RuntimeError(f"the store {self._shown_url} is closed")
        if self._down_since is None:
            try:
                return getattr(self._open(), name)(*args)
            except self._errors as exc:
                self._went_down(exc)
        elif self._probe_due():
            try:
                return self._on_primary(name, args)
            except self._errors:
                pass
        self.local_calls += 1
        return getattr(self._local, name)(*args)

    def _on_primary(self, name: str, args: tuple) -> Any:
        """``name(*args)`` on the real store (a write probe first while it is down), updating the state."""
        try:
            primary = self._open()
            if self._down_since is not None:
                self._write_probe(primary)
            result = getattr(primary, name)(*args)
        except self._errors as exc:
            self._went_down(exc)
            raise
        self._came_back()
        return result

    def _durable_call(self, name: str, *args: Any) -> Any:
        if self._closed:
            raise RuntimeError(f"the store {self._shown_url} is closed")
        if self._down_since is not None and not self._probe_due():
            error = self._last_error
            raise StoreDown(f"store {self._shown_url} is down"
                            + (f" ({_reason(error)})" if error is not None else ""))
        return self._on_primary(name, args)

    # -- the Store interface --------------------------------------------------------

    def get(self, key: str) -> str | None:
        return self._call("get", key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._call("set", key, value, ttl)

    def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        added = self._call("add", key, value, ttl)
        if added and self._down_since is not None and key.startswith(CALLBACK_PREFIX):
            self.possible_duplicates += 1
        return added

    def add_and_get(self, key: str, value: str, ttl: float | None, other: str) -> tuple[bool, str | None]:
        added, current = self._call("add_and_get", key, value, ttl, other)
        if added and self._down_since is not None and key.startswith(CALLBACK_PREFIX):
            self.possible_duplicates += 1
        return added, current

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        return self._call("incr", key, amount, ttl)

    def set_many(self, items: dict[str, str], ttl: float | None = None) -> None:
        self._call("set_many", items, ttl)

    def delete(self, key: str) -> None:
        self._call("delete", key)

    def _delete_if_equal(self, key: str, value: str) -> None:
        self._call("_delete_if_equal", key, value)

    def renew(self, key: str, value: str, ttl: float) -> bool:
        return self._call("renew", key, value, ttl)

    def push(self, key: str, value: str, ttl: float) -> None:
        self._call("push", key, value, ttl)

    def pop(self, key: str, count: int = 100) -> list[str]:
        return self._call("pop", key, count)

    def close(self) -> None:
        self._closed = True
        primary, self._primary = self._primary, None
        if primary is not None:
            try:
                primary.close()
            except self._errors:
                pass
        self._local.close()


class _Durable(Store):
    """:attr:`ResilientStore.durable`: the real store through the outage state, with no memory behind it."""

    def __init__(self, resilient: ResilientStore) -> None:
        self._resilient = resilient

    def get(self, key: str) -> str | None:
        return self._resilient._durable_call("get", key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._resilient._durable_call("set", key, value, ttl)

    def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        return self._resilient._durable_call("add", key, value, ttl)

    def add_and_get(self, key: str, value: str, ttl: float | None, other: str) -> tuple[bool, str | None]:
        return self._resilient._durable_call("add_and_get", key, value, ttl, other)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        return self._resilient._durable_call("incr", key, amount, ttl)

    def set_many(self, items: dict[str, str], ttl: float | None = None) -> None:
        self._resilient._durable_call("set_many", items, ttl)

    def delete(self, key: str) -> None:
        self._resilient._durable_call("delete", key)

    def _delete_if_equal(self, key: str, value: str) -> None:
        self._resilient._durable_call("_delete_if_equal", key, value)

    def renew(self, key: str, value: str, ttl: float) -> bool:
        return self._resilient._durable_call("renew", key, value, ttl)

    def push(self, key: str, value: str, ttl: float) -> None:
        self._resilient._durable_call("push", key, value, ttl)

    def pop(self, key: str, count: int = 100) -> list[str]:
        return self._resilient._durable_call("pop", key, count)


class OutageLogFilter(logging.Filter):
    """Turns a library's tracebacks for an unreachable store into one short line a minute.

    huey's consumer logs a traceback every time it cannot read its queue,
    which during an outage means several a second.
    """

    def __init__(self, every: float = REMIND_EVERY) -> None:
        super().__init__()
        self.every = every
        self._next = 0.0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, outage_errors()):
            return True
        now = time.monotonic()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self.every
        record.msg = f"{record.getMessage()}: {_reason(exc)} (the queue is unreachable; said at most once a minute)"
        record.args, record.exc_info, record.exc_text = None, None, None
        return True


_QUIET_LOGGERS: set[str] = set()
_FILTER = OutageLogFilter()


def quiet_outage_tracebacks(prefix: str) -> None:
    """Put :class:`OutageLogFilter` on every existing logger named ``prefix`` or below it."""
    names = [name for name in list(logging.root.manager.loggerDict) if name == prefix or name.startswith(prefix + ".")]
    for name in [prefix, *names]:
        if name not in _QUIET_LOGGERS:
            _QUIET_LOGGERS.add(name)
            logging.getLogger(name).addFilter(_FILTER)
