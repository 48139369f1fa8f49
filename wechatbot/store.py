"""Small shared key-value state with expiry: access tokens, dedup keys, cached replies.

Three backends sit behind one interface, picked by ``[wechatbot] store``:

* ``memory://`` keeps everything in this process (tests, single-process runs);
* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the default)
  is shared by every gunicorn worker on one machine, with no server to run;
* ``redis://[:password@]host:port/db`` or ``rediss://…`` is shared by several hosts.

Values are strings; every key prefix is named once, in :data:`PREFIXES`.
``add`` is the primitive that makes dedup and locking safe: it sets a key only
if it is absent (an expired key counts as absent), atomically across threads,
processes and, for Redis, hosts.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar
from urllib.parse import quote, urlsplit

from .errors import WechatbotError
from .process import current_pid

if TYPE_CHECKING:
    import redis

__all__ = [
    "CONFIG_KEY",
    "PREFIXES",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoreFileGone",
    "StoreURLError",
    "open_store",
]

T = TypeVar("T")

CONFIG_KEY = "[wechatbot] store"

ACCEPTED_FORMS = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "redis://[:password@]host:port/db or rediss://[:password@]host:port/db"
)

#: Every key prefix in the store, named in one place. Plugins reach only
#: ``plugin:`` keys, through :class:`wechatbot.storage.PluginStorage`.
PREFIXES = {
    "plugin": "plugin:",        # a plugin's own storage: plugin:<name>:<key>
    "ask": "ask:",              # a question waiting for its answer (conversations)
    "ask_taken": "ask-taken:",  # the claim on one question's answer
    "rate": "rate:",            # rate-limit windows (permissions)
    "member": "member:",        # cached department and tag membership (permissions)
    "schedule": "schedule:",    # once-only claims and last runs of scheduled jobs
    "lock": "lock:",            # Store.lock
    "stream": "stream:",              # an AI bot stream's text so far (streams)
    "stream_alive": "stream-alive:",  # its owner's heartbeat
    "stream_end": "stream-end:",      # how it ended, written once
    "longconn_lease": "longconn:lease:",    # which process holds a bot's long connection
    "longconn_outbox": "longconn:outbox:",  # frames from other processes, for the holder to send
    "longconn_alive": "longconn:alive:",    # a process serving a long-connection bot is alive
    "longconn_stream": "longconn:stream:",  # a stream still being written on the long connection
    "longconn_streams": "longconn:streams:",  # the bot's streams to look at after a takeover
    "longconn_pending": "longconn:pending:",  # a frame that must reach the user, until it is settled
    "longconn_pending_index": "longconn:pending-index:",  # the keys of a bot's pending frames
    "ready": "ready:",          # ready:probe read by /readyz; ready:write:* written by a store probing a down one
}

# How often (seconds) a store sweeps out expired entries. Reads already ignore
# them; the sweep only keeps the table (or dict) from growing without bound.
DEFAULT_PURGE_INTERVAL = 60.0
# How often (seconds) a SQLite store checks that its file is still the one it opened.
FILE_CHECK_INTERVAL = 1.0
# Seconds a Redis command may take before the store counts as unreachable: a
# frozen server must not hold a callback past WeCom's 5 s (a callback makes
# several store calls, and only the first waits: the store is down after it).
REDIS_TIMEOUT = 1.0


def _redact(url: str) -> str:
    """Hide the user-info part of a URL (it may hold a password)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1***@", url)


class StoreFileGone(OSError):
    """A SQLite store's file was removed or replaced while the store had it open.

    Writes would go on into the removed file (and be lost) and a new file
    would start empty, so the store refuses both: it is unreachable until
    the file is back at its path.
    """

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        super().__init__(
            f"the SQLite store {path} {what}; put the folder and file back (the same path), "
            "or restart wechatbot to begin again with an empty store"
        )


class StoreURLError(WechatbotError, ValueError):
    """``[wechatbot] store`` holds a URL no backend accepts.

    The message names the config key, the offending value (user-info hidden)
    and the accepted forms, so a start-up failure says what to fix.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = _redact(url)
        self.reason = reason
        super().__init__(
            f"{CONFIG_KEY} = {self.url!r} is not usable: {reason}. "
            f"Accepted forms: {ACCEPTED_FORMS}"
        )

    def __reduce__(self) -> tuple[type[StoreURLError], tuple[str, str]]:
        return (type(self), (self.url, self.reason))


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")


class Store(ABC):
    """A string key-value store whose entries may expire."""

    @abstractmethod
    def get(self, key: str) -> str | None:
        """Return the value of ``key``, or None if it is absent or expired."""

    @abstractmethod
    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; it expires after ``ttl`` seconds (None: never)."""

    @abstractmethod
    def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent or expired; True if it was stored.

        Atomic across every user of the same store, which is what makes
        callback dedup and :meth:`lock` safe.
        """

    def add_and_get(self, key: str, value: str, ttl: float | None, other: str) -> tuple[bool, str | None]:
        """:meth:`add`, and when it stored ``value``, the value of ``other`` as :meth:`get` gives it.

        One round trip where the store allows (a callback's dedup claim and
        the read of the sender's pending question, on every callback).
        When nothing was stored, ``other`` is not read: ``(False, None)``.
        """
        if not self.add(key, value, ttl):
            return False, None
        return True, self.get(other)

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer in ``key`` (absent or expired: 0); return the new value.

        Atomic like :meth:`add`. ``ttl`` applies when the key is created and
        is not extended by later calls, so a counter made with a TTL counts
        one fixed window (what rate limits need).
        """

    def set_many(self, items: dict[str, str], ttl: float | None = None) -> None:
        """Set several keys with the same TTL, in as few round trips as the backend allows."""
        for key, value in items.items():
            self.set(key, value, ttl)

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""

    @abstractmethod
    def _delete_if_equal(self, key: str, value: str) -> None:
        """Remove ``key`` only while it still holds ``value`` (atomically)."""

    def release(self, key: str, value: str) -> None:
        """Remove ``key`` only while it still holds ``value``: let go of a lease one holds."""
        self._delete_if_equal(key, value)

    @abstractmethod
    def renew(self, key: str, value: str, ttl: float) -> bool:
        """Give ``key`` a fresh ``ttl`` only while it still holds ``value``; True if it did.

        Atomic: with :meth:`add` it makes a lease (take it with ``add``, keep it
        with ``renew``, let go with :meth:`release`). An expired key is not
        renewed, since someone else may have taken it meanwhile.
        """

    @abstractmethod
    def push(self, key: str, value: str, ttl: float) -> None:
        """Append ``value`` to the list ``key`` (a queue shared by every user of the store).

        Each entry lives at least ``ttl`` seconds; a backend may keep it until
        ``ttl`` after the list's last push.
        """

    @abstractmethod
    def pop(self, key: str, count: int = 100) -> list[str]:
        """Take up to ``count`` entries from the front of the list ``key``, oldest first.

        Atomic: an entry is taken by exactly one caller.
        """

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    @contextmanager
    def lock(self, name: str, ttl: float = 30.0, wait: float = 10.0) -> Iterator[bool]:
        """Hold a mutex named ``name`` shared by every user of this store.

        Yields True if the lock was taken within ``wait`` seconds, False
        otherwise (the body still runs; the caller decides what to do). The
        lock lives in key ``lock:<name>`` with a random owner token and
        expires after ``ttl`` seconds, so a crashed owner cannot block others
        for ever; on exit it is removed only if this owner still holds it.
        """
        _check_ttl(ttl)
        key = PREFIXES["lock"] + name
        token = uuid.uuid4().hex
        deadline = time.monotonic() + max(wait, 0.0)
        pause = 0.005
        while True:
            if self.add(key, token, ttl):
                acquired = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                acquired = False
                break
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)
        try:
            yield acquired
        finally:
            if acquired:
                self._delete_if_equal(key, token)


class MemoryStore(Store):
    """A per-process store: a dict guarded by a lock. For tests and single-process runs."""

    def __init__(self, *, purge_interval: float = DEFAULT_PURGE_INTERVAL) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        self._lists: dict[str, deque[tuple[str, float]]] = {}
        self._mutex = threading.Lock()
        self._purge_interval = purge_interval
        self._next_purge = time.monotonic() + purge_interval

    @staticmethod
    def _expiry(ttl: float | None, now: float) -> float | None:
        _check_ttl(ttl)
        return None if ttl is None else now + ttl

    def _live(self, key: str, now: float) -> tuple[str, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _maybe_purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + self._purge_interval
        dead = [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]
        for k in dead:
            del self._data[k]

    def get(self, key: str) -> str | None:
        with self._mutex:
            entry = self._live(key, time.monotonic())
            return None if entry is None else entry[0]

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        now = time.monotonic()
        expires = self._expiry(ttl, now)
        with self._mutex:
            self._data[key] = (value, expires)
            self._maybe_purge(now)

    def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        now = time.monotonic()
        expires = self._expiry(ttl, now)
        with self._mutex:
            if self._live(key, now) is not None:
                return False
            self._data[key] = (value, expires)
            self._maybe_purge(now)
            return True

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = time.monotonic()
        expires = self._expiry(ttl, now)
        with self._mutex:
            entry = self._live(key, now)
            value = (int(entry[0]) if entry else 0) + amount
            self._data[key] = (str(value), entry[1] if entry else expires)
            self._maybe_purge(now)
            return value

    def delete(self, key: str) -> None:
        with self._mutex:
            self._data.pop(key, None)

    def _delete_if_equal(self, key: str, value: str) -> None:
        with self._mutex:
            entry = self._data.get(key)
            if entry is not None and entry[0] == value:
                del self._data[key]

    def renew(self, key: str, value: str, ttl: float) -> bool:
        now = time.monotonic()
        expires = self._expiry(ttl, now)
        with self._mutex:
            entry = self._live(key, now)
            if entry is None or entry[0] != value:
                return False
            self._data[key] = (value, expires)
            return True

    def push(self, key: str, value: str, ttl: float) -> None:
        now = time.monotonic()
        expires = self._expiry(ttl, now)
        with self._mutex:
            self._lists.setdefault(key, deque()).append((value, expires))  # type: ignore[arg-type]

    def pop(self, key: str, count: int = 100) -> list[str]:
        now = time.monotonic()
        taken: list[str] = []
        with self._mutex:
            entries = self._lists.get(key)
            while entries and len(taken) < count:
                value, expires = entries.popleft()
                if expires > now:
                    taken.append(value)
            if entries is not None and not entries:
                del self._lists[key]
        return taken

    def snapshot(self) -> tuple[list[tuple[str, str, float | None]], list[tuple[str, str, float]]]:
        """Every live entry as ``(key, value, seconds left or None)``, then every list entry the same way."""
        now = time.monotonic()
        with self._mutex:
            entries = [(key, value, None if expires is None else expires - now)
                       for key, (value, expires) in self._data.items() if expires is None or expires > now]
            items = [(key, value, expires - now) for key, queue in self._lists.items()
                     for value, expires in queue if expires > now]
        return entries, items

    def close(self) -> None:
        with self._mutex:
            self._data.clear()
            self._lists.clear()


def _padded(rows: list[tuple]) -> list[tuple]:
    """``rows`` made up to a power of two in length by repeating the last one.

    Each length of a multi-row statement is a statement of its own in the
    connection's cache (up to 128 of them, tens of kB each): batches of every
    length from 1 to 200 grew a worker by 10 MiB. Nine lengths (1, 2, 4 …
    256) keep the growth near 1 MiB. Writing the last row again sets it to
    the same value.
    """
    size = 1 << (len(rows) - 1).bit_length()
    return rows + [rows[-1]] * (size - len(rows))


class SQLiteStore(Store):
    """A store in one SQLite file, shared by the processes and threads of one machine.

    WAL journal and ``synchronous=NORMAL`` keep each write cheap; each
    operation is a single autocommit statement, so writers only wait for each
    other (``busy_timeout``) and never deadlock. Every thread gets its own
    connection, and a forked child (gunicorn workers) opens fresh ones instead
    of sharing the parent's. Expiry is wall-clock time, which all processes on
    the machine agree on.

    The file is created (with its folder) only when the store is made; a
    connection opened later only opens the file that is there. About once a
    second a write checks that the path still holds the file first opened:
    a folder removed (or a file replaced) at run time makes every call raise
    :class:`StoreFileGone` until a file is back at the path, rather than
    writing into the removed file or starting a fresh empty one.
    """

    _TABLE = "wechatbot_kv"
    _SQL_GET = f"SELECT value FROM {_TABLE} WHERE key = ? AND (expires IS NULL OR expires > ?)"
    _SQL_SET = (
        f"INSERT INTO {_TABLE} (key, value, expires) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
    )
    # The conflict branch only overwrites an expired row, so the one statement
    # both tests and sets; changes() (rowcount) tells whether it did.
    _SQL_ADD = _SQL_SET + f" WHERE {_TABLE}.expires IS NOT NULL AND {_TABLE}.expires <= ?"
    # The same, returning a row (with another key's live value) only when it stored one.
    _SQL_ADD_AND_GET = _SQL_ADD + (
        f" RETURNING (SELECT other.value FROM {_TABLE} AS other "
        "WHERE other.key = ? AND (other.expires IS NULL OR other.expires > ?))"
    )
    # An expired row starts again from the amount and the new expiry.
    _SQL_INCR = (
        f"INSERT INTO {_TABLE} (key, value, expires) VALUES (?, CAST(? AS TEXT), ?) "
        f"ON CONFLICT(key) DO UPDATE SET "
        f"value = CASE WHEN {_TABLE}.expires IS NOT NULL AND {_TABLE}.expires <= ? THEN excluded.value "
        f"ELSE CAST(CAST({_TABLE}.value AS INTEGER) + ? AS TEXT) END, "
        f"expires = CASE WHEN {_TABLE}.expires IS NOT NULL AND {_TABLE}.expires <= ? THEN excluded.expires "
        f"ELSE {_TABLE}.expires END "
        "RETURNING value"
    )
    _SQL_DELETE = f"DELETE FROM {_TABLE} WHERE key = ?"
    _SQL_DELETE_IF = f"DELETE FROM {_TABLE} WHERE key = ? AND value = ?"
    _SQL_PURGE = f"DELETE FROM {_TABLE} WHERE expires IS NOT NULL AND expires <= ?"
    _SQL_RENEW = f"UPDATE {_TABLE} SET expires = ? WHERE key = ? AND value = ? AND (expires IS NULL OR expires > ?)"
    # Lists (push / pop): one row per entry, in the order of an increasing id.
    _LIST_TABLE = "wechatbot_list"
    _SQL_PUSH = f"INSERT INTO {_LIST_TABLE} (key, value, expires) VALUES (?, ?, ?)"
    _SQL_POP = (
        f"DELETE FROM {_LIST_TABLE} WHERE id IN (SELECT id FROM {_LIST_TABLE} "
        "WHERE key = ? AND expires > ? ORDER BY id LIMIT ?) RETURNING id, value"
    )
    _SQL_PURGE_LISTS = f"DELETE FROM {_LIST_TABLE} WHERE expires <= ?"
    # Rows per statement in set_many: 3 parameters each, well under SQLite's
    # limit on parameters in one statement. A power of two (see _padded).
    _ROWS_PER_STATEMENT = 256

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        purge_interval: float = DEFAULT_PURGE_INTERVAL,
        create: bool = True,
    ) -> None:
        """``create=False`` opens only a file that is there (:class:`StoreFileGone` otherwise)."""
        self.path = os.fspath(path)
        self._busy_timeout = busy_timeout
        self._purge_interval = purge_interval
        self._next_purge = time.time() + purge_interval
        self._process: tuple[int, sqlite3.Connection, threading.Lock] | None = None
        # Appended to without a lock (list.append is atomic), so that a fork
        # can never leave a child waiting on a lock another thread held.
        self._conns: list[tuple[int, sqlite3.Connection]] = []
        # Connections inherited through fork are kept referenced but never
        # used or closed: closing one in the child could drop the parent's
        # POSIX locks on the file.
        self._inherited: list[sqlite3.Connection] = []
        self._closed = False
        self._next_check = time.time() + FILE_CHECK_INTERVAL
        self._next_housekeeping = min(self._next_purge, self._next_check)
        #: Set once the path no longer holds the file opened (see StoreFileGone).
        self._gone = False
        if create:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        elif not os.path.exists(self.path):
            raise StoreFileGone(self.path, "is missing: it was removed while this host was running")
        # Set up the file with a throw-away connection, so that a process that
        # opens the store and then forks (gunicorn --preload) hands no open
        # connection to its children.
        conn = self._connect(create=create)
        try:
            # Several workers start at once: setting up may meet a busy file too.
            self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            self._retry(lambda: conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._TABLE} ("
                "key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL"
                ") WITHOUT ROWID"
            ))
            self._retry(lambda: conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._LIST_TABLE} ("
                "id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, value TEXT NOT NULL, expires REAL NOT NULL)"
            ))
            self._retry(lambda: conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self._LIST_TABLE}_key ON {self._LIST_TABLE} (key, id)"
            ))
        finally:
            conn.close()
        self._identity = self._file_identity()

    def _file_identity(self) -> tuple[int, int]:
        stat = os.stat(self.path)
        return stat.st_dev, stat.st_ino

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        # isolation_level=None: autocommit, one statement is one transaction.
        # timeout=0: a busy database fails at once and _retry waits instead.
        # mode=rw: only the constructor creates the file (see the class).
        target = self.path if create else f"file:{quote(os.path.abspath(self.path))}?mode=rw"
        conn = sqlite3.connect(target, timeout=0, isolation_level=None, check_same_thread=False, uri=not create)
        self._retry(lambda: conn.execute("PRAGMA synchronous=OFF"))
        self._retry(lambda: conn.execute("PRAGMA journal_size_limit=4194304"))
        return conn

    def _conn(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """This process's connection and the lock its threads take turns with.

        One connection per process, used by one thread at a time: threads
        queue on a Python lock instead of each connection retrying SQLite's
        file locks, which costs far more CPU when many threads write at once.
        A forked child opens its own (the parent's lock may be held).
        """
        if self._closed:
            raise RuntimeError(f"the SQLite store at {self.path} is closed")
        state = self._process
        if state is not None and state[0] == current_pid():
            return state[1], state[2]
        if state is not None:
            self._inherited.append(state[1])
        if self._gone:
            self._reattach()
        conn = self._connect()
        self._process = (os.getpid(), conn, threading.Lock())
        self._conns.append((os.getpid(), conn))
        return conn, self._process[2]

    def _check_file(self) -> None:
        """Raise :class:`StoreFileGone` when the path no longer holds the file this store opened."""
        try:
            same = self._file_identity() == self._identity
        except FileNotFoundError:
            what = "was removed while in use (its folder too?)"
        else:
            if same:
                return
            what = "was replaced by another file while in use"
        self._gone = True
        self._process = None  # the next call reconnects, once the file is back (see _reattach)
        raise StoreFileGone(self.path, what)

    def _reattach(self) -> None:
        """Use the file at the path again, once there is one holding a store."""
        if not os.path.exists(self.path):
            raise StoreFileGone(self.path, "is gone: it was removed while in use")
        conn = self._connect()
        try:
            conn.execute(f"SELECT 1 FROM {self._TABLE} LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreFileGone(self.path, f"was removed while in use, and what is there now is not a store ({exc})") from None
        finally:
            conn.close()
        self._identity = self._file_identity()
        self._gone = False

    def _retry(self, operation: Callable[[], T]) -> T:
        """Run ``operation``, retrying while another process holds the write lock.

        SQLite's own busy handler sleeps a millisecond or more per try; with
        several workers writing all the time that stalls every thread of this
        process behind its connection. Another writer holds the lock for tens
        of microseconds, so short sleeps that grow get through far sooner.
        """
        delay = 0.00005
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                return operation()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    def _execute(self, conn: sqlite3.Connection, sql: str, params: tuple) -> sqlite3.Cursor:
        """``conn.execute(sql, params)``, through :meth:`_retry` only once the file was busy."""
        try:
            return conn.execute(sql, params)
        except sqlite3.OperationalError:
            return self._retry(lambda: conn.execute(sql, params))

    def _after_write(self, conn: sqlite3.Connection, now: float) -> None:
        if now < self._next_housekeeping:
            return
        if now >= self._next_check:
            self._next_check = now + FILE_CHECK_INTERVAL
            self._check_file()
        if now >= self._next_purge:
            self._next_purge = now + self._purge_interval
            self._retry(lambda: conn.execute(self._SQL_PURGE, (now,)))
            self._retry(lambda: conn.execute(self._SQL_PURGE_LISTS, (now,)))
        self._next_housekeeping = min(self._next_purge, self._next_check)

    def get(self, key: str) -> str | None:
        conn, lock = self._conn()
        with lock:
            row = self._execute(conn, self._SQL_GET, (key, time.time())).fetchone()
        return None if row is None else row[0]

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        now = time.time()
        conn, lock = self._conn()
        with lock:
            self._execute(conn, self._SQL_SET, (key, value, None if ttl is None else now + ttl))
            self._after_write(conn, now)

    def set_many(self, items: dict[str, str], ttl: float | None = None) -> None:
        _check_ttl(ttl)
        now = time.time()
        expires = None if ttl is None else now + ttl
        conn, lock = self._conn()
        rows = [(key, value, expires) for key, value in items.items()]
        with lock:
            for start in range(0, len(rows), self._ROWS_PER_STATEMENT):
                chunk = _padded(rows[start:start + self._ROWS_PER_STATEMENT])
                self._execute(conn, self._sql_set_rows(len(chunk)), tuple(v for row in chunk for v in row))
            self._after_write(conn, now)

    @classmethod
    def _sql_set_rows(cls, count: int) -> str:
        """One INSERT … ON CONFLICT for ``count`` rows.

        One statement is one transaction and one call into SQLite: the
        process lets go of the GIL (and must win it back) once per batch
        rather than once per row, all the while holding the write lock.
        """
        values = ", ".join(["(?, ?, ?)"] * count)
        return (
            f"INSERT INTO {cls._TABLE} (key, value, expires) VALUES {values} "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
        )

    def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        _check_ttl(ttl)
        now = time.time()
        conn, lock = self._conn()
        with lock:
            cur = self._execute(conn, self._SQL_ADD, (key, value, None if ttl is None else now + ttl, now))
            added = cur.rowcount == 1
            self._after_write(conn, now)
        return added

    def add_and_get(self, key: str, value: str, ttl: float | None, other: str) -> tuple[bool, str | None]:
        """One statement: SQLite is entered (and the GIL let go of) once, not twice."""
        _check_ttl(ttl)
        now = time.time()
        conn, lock = self._conn()
        with lock:
            rows = self._execute(conn, self._SQL_ADD_AND_GET,
                                (key, value, None if ttl is None else now + ttl, now, other, now)).fetchall()
            self._after_write(conn, now)  # fetchall: the statement ran to its end, so it is committed
        return (True, rows[0][0]) if rows else (False, None)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        _check_ttl(ttl)
        now = time.time()
        amount = int(amount)
        conn, lock = self._conn()
        with lock:
            row = self._execute(conn, self._SQL_INCR, (key, amount, None if ttl is None else now + ttl, now, amount, now)).fetchone()
            self._after_write(conn, now)
        return int(row[0])

    def delete(self, key: str) -> None:
        conn, lock = self._conn()
        with lock:
            self._execute(conn, self._SQL_DELETE, (key,))

    def _delete_if_equal(self, key: str, value: str) -> None:
        conn, lock = self._conn()
        with lock:
            self._execute(conn, self._SQL_DELETE_IF, (key, value))

    def renew(self, key: str, value: str, ttl: float) -> bool:
        _check_ttl(ttl)
        now = time.time()
        conn, lock = self._conn()
        with lock:
            return self._execute(conn, self._SQL_RENEW, (now + ttl, key, value, now)).rowcount == 1

    def push(self, key: str, value: str, ttl: float) -> None:
        _check_ttl(ttl)
        now = time.time()
        conn, lock = self._conn()
        with lock:
            self._execute(conn, self._SQL_PUSH, (key, value, now + ttl))
            self._after_write(conn, now)

    def pop(self, key: str, count: int = 100) -> list[str]:
        conn, lock = self._conn()
        with lock:
            rows = self._execute(conn, self._SQL_POP, (key, time.time(), count)).fetchall()
        return [value for _, value in sorted(rows)]

    def close(self) -> None:
        self._closed = True
        pid = os.getpid()
        conns, self._conns = self._conns, []
        for owner, conn in conns:
            if owner == pid:
                conn.close()


class RedisStore(Store):
    """A store in Redis, shared by several hosts. Expiry is Redis's own (``PX``)."""

    # Delete the key only while it still holds the caller's token, in one
    # server-side step, so a lock that expired and was taken by someone else
    # is not released by its former owner.
    _DELETE_IF_EQUAL = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then "
        "return redis.call('del', KEYS[1]) else return 0 end"
    )

    # Create the key with its expiry only if absent, then add: one server-side step.
    _INCR = (
        "if ARGV[2] ~= '' then redis.call('set', KEYS[1], 0, 'PX', ARGV[2], 'NX') end "
        "return redis.call('incrby', KEYS[1], ARGV[1])"
    )
    _RENEW = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then "
        "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
    )

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._delete_if_equal_script = client.register_script(self._DELETE_IF_EQUAL)
        self._incr_script = client.register_script(self._INCR)
        self._renew_script = client.register_script(self._RENEW)

    @staticmethod
    def _px(ttl: float | None) -> int | None:
        _check_ttl(ttl)
        return None if ttl is None else max(1, math.ceil(ttl * 1000))

    def get(self, key: str) -> str | None:
        return self._client.get(key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._client.set(key, value, px=self._px(ttl))

    def set_many(self, items: dict[str, str], ttl: float | None = None) -> None:
        _check_ttl(ttl)
        with self._client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, px=self._px(ttl))
            pipe.execute()

    def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        return bool(self._client.set(key, value, px=self._px(ttl), nx=True))

    def add_and_get(self, key: str, value: str, ttl: float | None, other: str) -> tuple[bool, str | None]:
        """``SET NX`` and ``GET`` in one round trip (a pipeline; ``other`` read even when not needed)."""
        with self._client.pipeline(transaction=False) as pipe:
            pipe.set(key, value, px=self._px(ttl), nx=True)
            pipe.get(other)
            added, current = pipe.execute()
        return (True, current) if added else (False, None)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        px = self._px(ttl)
        return int(self._incr_script(keys=[key], args=[int(amount), "" if px is None else px]))

    def delete(self, key: str) -> None:
        self._client.delete(key)

    def _delete_if_equal(self, key: str, value: str) -> None:
        self._delete_if_equal_script(keys=[key], args=[value])

    def renew(self, key: str, value: str, ttl: float) -> bool:
        return bool(self._renew_script(keys=[key], args=[value, self._px(ttl)]))

    def push(self, key: str, value: str, ttl: float) -> None:
        # Redis expires whole keys: the list lives ttl after its last push.
        with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, value)
            pipe.pexpire(key, self._px(ttl))
            pipe.execute()

    def pop(self, key: str, count: int = 100) -> list[str]:
        return self._client.lpop(key, count) or []

    def close(self) -> None:
        self._client.close()


def _open_sqlite(url: str, create: bool = True) -> SQLiteStore:
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path:
        raise StoreURLError(url, "a SQLite URL needs a file path after sqlite:///")
    if path == ":memory:" or path.startswith("file:"):
        # Every thread and process would get its own private database.
        raise StoreURLError(url, "a SQLite store must be a file on disk; use memory:// for tests")
    try:
        return SQLiteStore(path, create=create)
    except (OSError, sqlite3.Error) as exc:
        raise StoreURLError(url, f"cannot open SQLite file {path!r} ({exc})") from exc


def _open_redis(url: str) -> RedisStore:
    parts = urlsplit(url)
    try:
        parts.port
    except ValueError:
        raise StoreURLError(url, "the port must be a number") from None
    if not parts.hostname:
        raise StoreURLError(url, "a Redis URL needs a host")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise StoreURLError(url, f"the database must be a number, not {db!r}")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            # Defaults the URL's query string may override: a dead or frozen
            # server must fail a callback quickly rather than hang a worker.
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            # Once more at once after a broken connection (a pooled one that
            # died with a restarted server); never after a timeout.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            health_check_interval=30,
        )
    except ValueError as exc:
        raise StoreURLError(url, str(exc)) from None
    return RedisStore(client)


def open_store(url: str, create: bool = True) -> Store:
    """Open the store that ``url`` (the ``[wechatbot] store`` setting) names.

    Raises :class:`StoreURLError` for a URL no backend accepts. A Redis server
    is contacted on first use, not here, so a briefly unavailable server does
    not stop the host from starting. ``create=False``: a SQLite file must be
    there already.
    """
    url = url.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    url = scheme + url[len(scheme) :]  # schemes are case-insensitive
    if scheme == "memory":
        if url.lower() != "memory://":
            raise StoreURLError(url, "memory:// takes nothing after the scheme")
        return MemoryStore()
    if scheme == "sqlite":
        return _open_sqlite(url, create)
    if scheme in ("redis", "rediss"):
        return _open_redis(url)
    if not scheme:
        raise StoreURLError(url, "expected a URL with a scheme")
    raise StoreURLError(url, f"unknown scheme {scheme!r}")
