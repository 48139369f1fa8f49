"""Deferred jobs that survive the death of the process running them, on huey.

Once WeCom has been answered it never asks again, so a reply still being
worked on belongs to the host. Each job is a record in the store plus a huey
task. huey deletes a task from its queue when a worker takes it, so a worker
killed mid-job would lose it; every run therefore first schedules its own
successor (a guard, ``lease`` seconds later, written straight to the queue's
schedule) and only then works under a lease that a heartbeat keeps fresh.
When the guard fires it finds the job done (and stops), still leased by a
live worker (and schedules the next guard), or abandoned (and runs it again).
The reply is pushed once; twice only if a process dies between pushing and
recording that it did.

The queue lives next to the store: a SQLite file beside the store's (one
machine, no server), the same Redis (several hosts), or memory (tests).

A job's record is written to the real store, never to the memory a
:class:`~wechatbot.outage.ResilientStore` answers from during an outage: a
job queued with its record only in one process's memory would be dropped by
every other process. While the store or the queue cannot take a job, it
waits in this process's spool (in order, at most :data:`SPOOL_LIMIT`) and is
queued, record first, once both are back. A job whose record cannot be read
when it runs (the store is down) is put off, not dropped.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import threading
import time
import uuid
from typing import Any, Callable


def _import_huey_without_redis() -> None:
    """Import huey, leaving the Redis client out unless it is loaded already.

    huey's storage module imports redis-py (and with it asyncio) even for a
    SQLite or memory queue: about 7 MiB more in every gunicorn worker. So
    huey is imported with redis hidden; a Redis queue loads redis itself and
    hands it to huey (:func:`_huey_with_redis`).
    """
    if "huey.storage" in sys.modules or "redis" in sys.modules:
        return
    sys.modules["redis"] = None  # type: ignore[assignment]  # "import redis" fails: huey goes without
    try:
        import huey.storage  # noqa: F401
    finally:
        del sys.modules["redis"]


def _huey_with_redis() -> None:
    """Give huey the Redis client it was imported without (see above)."""
    import huey.storage as storage

    if storage.Redis is not None:
        return
    import redis
    import redis.exceptions

    storage.ConnectionPool, storage.Redis = redis.ConnectionPool, redis.Redis
    storage.ConnectionError, storage.TimeoutError = redis.exceptions.ConnectionError, redis.exceptions.TimeoutError
    storage.RedisStorage.redis_client = redis.Redis


_import_huey_without_redis()

from huey import MemoryHuey, RedisHuey, SqliteHuey  # noqa: E402
from huey.api import Huey  # noqa: E402
from huey.consumer import Consumer  # noqa: E402

from .config import ConfigError  # noqa: E402
from .outage import outage_errors, quiet_outage_tracebacks  # noqa: E402
from .store import Store  # noqa: E402

log = logging.getLogger("wechatbot.jobs")

JOB_TTL = 24 * 3600.0
MAX_ATTEMPTS = 3
#: Jobs kept in a process while the queue cannot be reached.
SPOOL_LIMIT = 10_000
#: Tries at writing a guard to a busy queue (a SQLite queue locked past its timeout).
GUARD_TRIES = 3
#: Seconds a Redis queue command may take (its consumer blocks 1 s reading).
QUEUE_TIMEOUT = 2.0


def queue_for(store_url: str, queue_url: str | None = None) -> Huey:
    """The huey instance for a store URL (or an explicit ``[wechatbot] queue`` URL)."""
    url = queue_url or store_url
    common = {"name": "wechatbot", "results": False, "utc": True}
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path.endswith(".db"):
            path = path[:-3]
        try:
            return SqliteHuey(filename=path + "-queue.db", **common)
        except sqlite3.Error:
            # The folder cannot be reached now (removed, unwritable): the store's outage says so, and
            # the queue's calls fail (jobs wait in the spool) until it is back.
            return SqliteHuey(filename=path + "-queue.db", create_tables=False, **common)
    if url.startswith(("redis://", "rediss://")):
        _huey_with_redis()
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # A frozen server must not hold a request thread that queues a job:
        # a timeout a little over the consumer's blocking read (1 s), no retry after it.
        pool = redis.ConnectionPool.from_url(
            url, socket_timeout=QUEUE_TIMEOUT, socket_connect_timeout=QUEUE_TIMEOUT, health_check_interval=30,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)))
        return RedisHuey(connection_pool=pool, **common)
    if url.startswith("memory://"):
        return MemoryHuey(**common)
    raise ConfigError(
        f"[wechatbot] queue = {url!r}: use sqlite:///path.db, redis://host:port/db or memory:// "
        "(or leave it empty to keep the queue beside the store)"
    )


class _EmbeddedConsumer(Consumer):
    """A huey consumer running as threads inside a web worker.

    It leaves signal handling to gunicorn (huey's own would replace it).
    """

    def _set_signal_handlers(self) -> None:
        pass

    def _create_process(self, process: Any, name: str) -> Any:
        thread = super()._create_process(process, name)
        thread.name = f"wechatbot-jobs-{name}"  # findable among the web worker's threads
        return thread


Runner = Callable[[dict], None]


class Jobs:
    """Durable deferred jobs: records in the store, work on huey."""

    def __init__(self, store: Store, huey: Huey, runner: Runner, lease: float = 10.0, workers: int = 2) -> None:
        self.store = store
        # Records only the real store holds (see the module's docstring).
        self.durable: Store = getattr(store, "durable", store)
        self.huey = huey
        self.runner = runner
        self.lease = lease
        self.workers = workers
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.held: set[str] = set()
        self._held_lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._pid: int | None = None
        self._stop = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        #: Jobs the store or the queue could not take, by key, waiting for both to be back:
        #: (the record to write, or None when the store has it; when to run, epoch seconds).
        self._spool: dict[str, tuple[dict | None, float]] = {}
        self._spool_lock = threading.Lock()
        self._spool_said = False
        self.task = huey.task(name="wechatbot.run_job")(self._run)

    # -- starting and stopping -------------------------------------------

    def start(self) -> None:
        """Start this process's consumer and lease heartbeat (again after a fork)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.held = set()
        self._stop = threading.Event()
        self._consumer = _EmbeddedConsumer(
            self.huey, workers=self.workers, periodic=False, initial_delay=0.05, max_delay=0.5,
            check_worker_health=False, worker_type="thread",
        )
        quiet_outage_tracebacks("huey")  # its workers' loggers exist now, before they log anything
        self._consumer.start()
        self._heartbeat_thread = threading.Thread(target=self._heartbeat, name="wechatbot-lease-heartbeat", daemon=True)
        self._heartbeat_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the consumer and the heartbeat and wait for their threads to end.

        Leases still held expire and their guards take over, in this process or another.
        """
        self._stop.set()
        consumer, self._consumer = self._consumer, None
        if consumer is not None and self._pid == os.getpid():
            consumer.stop(graceful=False)
            threads = [thread for _, thread in consumer.worker_threads] + [consumer.scheduler]
            if self._heartbeat_thread is not None:
                threads.append(self._heartbeat_thread)
            for thread in threads:
                thread.join(timeout)
        self._heartbeat_thread = None
        self._pid = None

    # -- submitting ------------------------------------------------------

    def submit(self, record: dict, key: str | None = None) -> str:
        """Store a job and queue it to run now; return its key.

        While the store or the queue cannot be reached (a SQLite file
        unwritable, the disk full, Redis down) the job waits in a bounded
        spool in this process, queued when both are back; when the spool is
        full, the job runs at once here.
        """
        key = key or f"job-{uuid.uuid4().hex}"
        self._queue(key, {**record, "key": key, "attempts": 0}, 0.0)
        return key

    def submit_later(self, record: dict, delay: float) -> str:
        """Store a job and queue it to run ``delay`` seconds from now; return its key."""
        key = f"job-{uuid.uuid4().hex}"
        self._queue(key, {**record, "key": key, "attempts": 0}, delay)
        return key

    def _queue(self, key: str, entry: dict | None, delay: float) -> None:
        """Write the record (unless None: the store has it) and queue the job, or spool it.

        Once something waits in the spool, new jobs join it without trying:
        they keep their order, and no request thread waits on a store or
        queue known to be down.
        """
        if not self._spool:
            try:
                self._enqueue(key, entry, delay)
                return
            except outage_errors() as exc:
                self._spool_job(key, entry, time.time() + delay, exc)
                return
        self._spool_job(key, entry, time.time() + delay, None)

    def _enqueue(self, key: str, entry: dict | None, delay: float) -> None:
        if entry is not None:
            self.durable.set(f"job:{key}", json.dumps(entry), JOB_TTL)
        if delay > 0:
            self.task.schedule((key,), delay=delay)
        else:
            self.task(key)

    def _spool_job(self, key: str, entry: dict | None, due: float, exc: BaseException | None) -> None:
        """Keep a job the store or queue refused until :meth:`flush_spool` can queue it.

        Said once when the queue alone is down; an outage of the store has its own line.
        """
        with self._spool_lock:
            if not self._spool and exc is not None and getattr(self.store, "healthy", True):
                self._spool_said = True
                log.error("job queue unreachable (%s: %s): jobs wait in this process (at most %d) until it is back",
                          type(exc).__name__, " ".join(str(exc).split())[:200], SPOOL_LIMIT)
            if len(self._spool) < SPOOL_LIMIT:
                self._spool[key] = (entry, due)
                return
        if entry is None:
            log.error("job spool full: deferred job %s is put off until its record can be read again", key)
            return
        log.warning("job spool full: deferred job %s runs now in this process", key)
        threading.Thread(target=self._run_spooled, args=(entry,), name="wechatbot-spooled-job", daemon=True).start()

    def _run_spooled(self, entry: dict) -> None:
        try:
            self.runner(entry)
        except Exception:
            log.exception("deferred job %s failed", entry.get("key"))

    def flush_spool(self) -> int:
        """Queue the jobs that waited for the store or the queue; return how many are still waiting."""
        with self._spool_lock:
            waiting = list(self._spool.items())
        for key, (entry, due) in waiting:
            try:
                self._enqueue(key, entry, due - time.time())
            except outage_errors():
                return len(self._spool)
            with self._spool_lock:
                self._spool.pop(key, None)
                if not self._spool and self._spool_said:
                    self._spool_said = False
                    log.warning("job queue is back: every job that waited in this process is queued")
        return len(self._spool)

    def adopt(self, record: dict, key: str) -> None:
        """Record a job this process is already running (past the reply deadline).

        This process holds its lease; if it dies, the guard runs the job again.
        While the store is down the record and lease are kept in this process
        and copied back when it returns (``outage``); while the queue is down
        the guard waits in the spool.
        """
        self.store.set(f"job:{key}", json.dumps({**record, "key": key, "attempts": 1}), JOB_TTL)
        self.store.set(f"lease:{key}", self.owner, self.lease)
        self._hold(key)
        if self._spool:  # the queue is down: do not hold up the request thread on it
            self._spool_job(key, None, time.time() + self.lease, None)
            return
        try:
            self._schedule_guard(key)
        except outage_errors() as exc:
            self._spool_job(key, None, time.time() + self.lease, exc)

    def finish(self, key: str) -> None:
        """Mark a job done: guards stop, nobody runs it again."""
        self.store.set(f"done:{key}", "1", JOB_TTL)
        self._release(key)

    # -- running -----------------------------------------------------------

    def _run(self, key: str) -> None:
        try:
            if self.durable.get(f"done:{key}"):
                return
            raw = self.durable.get(f"job:{key}")
        except outage_errors():
            self._queue(key, None, self.lease)  # the store is down: look again later
            return
        if raw is None:
            log.error("deferred job %s has no record (expired?); dropped", key)
            return
        # The guard first: if this process dies below, it runs the job again.
        try:
            self._schedule_guard(key)
        except Exception as exc:
            log.error("deferred job %s: its next guard could not be queued (%s: %s); it runs without one",
                      key, type(exc).__name__, " ".join(str(exc).split())[:200])
        if not self.store.add(f"lease:{key}", self.owner, self.lease):
            return  # a live worker holds it
        self._hold(key)
        record = json.loads(raw)
        record["attempts"] = record.get("attempts", 0) + 1
        if record["attempts"] > MAX_ATTEMPTS:
            log.error("deferred job %s gave up after %d attempts (its worker died each time)", key, MAX_ATTEMPTS)
            self.finish(key)
            return
        if record["attempts"] > 1:
            log.warning("deferred job %s: attempt %d (an earlier worker died)", key, record["attempts"])
        self.store.set(f"job:{key}", json.dumps(record), JOB_TTL)
        try:
            self.runner(record)
        except Exception:
            log.exception("deferred job %s failed", key)
        self.finish(key)

    def _schedule_guard(self, key: str) -> None:
        """File the job's next guard under the queue's schedule, ``lease`` seconds from now.

        huey's ``task.schedule()`` puts a delayed task on the queue itself; a
        consumer takes it off and only then files it under the schedule. A
        process killed in between (often the one whose job the guard protects,
        as its own consumer is polling) takes the guard with it, and the job is
        never found again. Written to the schedule directly, the guard is safe
        once this returns. A queue too busy to take it is tried again; the
        last failure is raised.
        """
        guard = self.task.s(key, delay=self.lease)
        for attempt in range(1, GUARD_TRIES + 1):
            try:
                self.huey.add_schedule(guard)
                return
            except Exception as exc:
                # Only a busy SQLite queue is worth waiting for; a server that timed out is not.
                if attempt == GUARD_TRIES or not isinstance(exc, sqlite3.OperationalError):
                    raise
                time.sleep(0.1 * attempt)

    # -- leases ------------------------------------------------------------

    def _hold(self, key: str) -> None:
        with self._held_lock:
            self.held.add(key)

    def _release(self, key: str) -> None:
        with self._held_lock:
            self.held.discard(key)
        if self.store.get(f"lease:{key}") == self.owner:
            self.store.delete(f"lease:{key}")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 5):
            if self._spool:
                self.flush_spool()
            with self._held_lock:
                keys = list(self.held)
            if not keys:
                continue
            # One write for all of them: renewed one by one, a few hundred jobs held
            # through a burst took longer than the lease, which then lapsed and
            # another worker ran the job again.
            try:
                self.store.set_many({f"lease:{key}": self.owner for key in keys}, self.lease)
            except Exception:
                log.exception("cannot renew the leases of %d deferred jobs", len(keys))

    def pending(self) -> int:
        """Jobs waiting in the queue (not counting scheduled guards)."""
        return self.huey.pending_count()


def run_standalone(jobs: Jobs) -> None:
    """Run a consumer in the foreground (``wechatbot worker``) until interrupted."""
    consumer = Consumer(jobs.huey, workers=jobs.workers, periodic=False, initial_delay=0.05, max_delay=0.5, worker_type="thread")
    consumer.run()


def describe(huey: Any) -> str:
    """Where the queue lives, for logs."""
    storage = huey.storage
    return getattr(storage, "filename", None) or type(storage).__name__
