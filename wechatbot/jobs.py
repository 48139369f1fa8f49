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
"""
from __future__ import annotations

import json
import logging
import os
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


def queue_for(store_url: str, queue_url: str | None = None) -> Huey:
    """The huey instance for a store URL (or an explicit ``[wechatbot] queue`` URL)."""
    url = queue_url or store_url
    common = {"name": "wechatbot", "results": False, "utc": True}
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path.endswith(".db"):
            path = path[:-3]
        return SqliteHuey(filename=path + "-queue.db", **common)
    if url.startswith(("redis://", "rediss://")):
        _huey_with_redis()
        return RedisHuey(url=url, **common)
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
        #: Jobs the queue could not take, by key, waiting for it to come back.
        self._spool: dict[str, dict] = {}
        self._spool_lock = threading.Lock()
        self._next_adopt_warning = 0.0
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
        self._consumer.start()
        quiet_outage_tracebacks("huey")  # its workers' loggers exist now
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

        While the queue cannot be reached (its SQLite file unwritable, Redis
        down) the job waits in a bounded spool in this process, flushed when
        the queue is back; when the spool is full, the job runs at once here.
        """
        key = key or f"job-{uuid.uuid4().hex}"
        entry = {**record, "key": key, "attempts": 0}
        self.store.set(f"job:{key}", json.dumps(entry), JOB_TTL)
        try:
            self.task(key)
        except outage_errors() as exc:
            self._spool_job(key, entry, exc)
        return key

    def submit_later(self, record: dict, delay: float) -> str:
        """Store a job and queue it to run ``delay`` seconds from now; return its key."""
        key = f"job-{uuid.uuid4().hex}"
        entry = {**record, "key": key, "attempts": 0}
        self.store.set(f"job:{key}", json.dumps(entry), JOB_TTL)
        try:
            self.task.schedule((key,), delay=delay)
        except outage_errors() as exc:
            self._spool_job(key, entry, exc)
        return key

    def _spool_job(self, key: str, entry: dict, exc: BaseException) -> None:
        """Keep a job the queue refused until :meth:`flush_spool` can queue it."""
        with self._spool_lock:
            if not self._spool:
                log.error("job queue unreachable (%s: %s): jobs wait in this process (at most %d) until it is back",
                          type(exc).__name__, " ".join(str(exc).split())[:200], SPOOL_LIMIT)
            if len(self._spool) < SPOOL_LIMIT:
                self._spool[key] = entry
                return
        log.warning("job spool full: deferred job %s runs now in this process", key)
        threading.Thread(target=self._run_spooled, args=(entry,), name="wechatbot-spooled-job", daemon=True).start()

    def _run_spooled(self, entry: dict) -> None:
        try:
            self.runner(entry)
        except Exception:
            log.exception("deferred job %s failed", entry.get("key"))

    def flush_spool(self) -> int:
        """Queue the jobs that waited for the queue; return how many are still waiting."""
        with self._spool_lock:
            waiting = list(self._spool.items())
        for key, entry in waiting:
            try:
                self.store.set(f"job:{key}", json.dumps(entry), JOB_TTL)
                self.task(key)
            except outage_errors():
                return len(self._spool)
            with self._spool_lock:
                self._spool.pop(key, None)
                if not self._spool:
                    log.warning("job queue is back: every job that waited in this process is queued")
        return len(self._spool)

    def adopt(self, record: dict, key: str) -> None:
        """Record a job this process is already running (past the reply deadline).

        This process holds its lease; if it dies, the guard runs the job again.
        """
        self.store.set(f"job:{key}", json.dumps({**record, "key": key, "attempts": 1}), JOB_TTL)
        self.store.set(f"lease:{key}", self.owner, self.lease)
        self._hold(key)
        try:
            self._schedule_guard(key)
        except outage_errors() as exc:
            now = time.monotonic()
            if now >= self._next_adopt_warning:
                self._next_adopt_warning = now + 60.0
                log.warning("job queue unreachable (%s): late replies are pushed by this process, without a guard "
                            "if it dies", type(exc).__name__)

    def finish(self, key: str) -> None:
        """Mark a job done: guards stop, nobody runs it again."""
        self.store.set(f"done:{key}", "1", JOB_TTL)
        self._release(key)

    # -- running -----------------------------------------------------------

    def _run(self, key: str) -> None:
        if self.store.get(f"done:{key}"):
            return
        raw = self.store.get(f"job:{key}")
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
            except Exception:
                if attempt == GUARD_TRIES:
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
            for key in keys:
                try:
                    self.store.set(f"lease:{key}", self.owner, self.lease)
                except Exception:
                    log.exception("cannot renew the lease of deferred job %s", key)

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
