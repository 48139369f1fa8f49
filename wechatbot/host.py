"""The host: everything one Flask app serves, built once, closed once.

:class:`Host` reads top to bottom: store, plugins, one :class:`Endpoint` per
``[wecom]`` section, dedup, the bounded pool, the outbox, durable jobs and the
pipeline that ties them together. :meth:`Host.close` stops every thread the
host started and closes the store.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from .config import Config, ConfigError
from .dedup import Dedup
from .deferred import run_job
from .endpoint import Endpoint
from .jobs import Jobs, queue_for
from .outage import ResilientStore
from .outbox import Outbox
from .pipeline import Pipeline
from .plugins import LoadedPlugin, installed_plugins, load, plugin_manager, select
from .pool import BoundedPool
from .schedules import Schedule, Scheduler, as_push
from .store_marks import open_store_once
from .streaming import Streaming
from .streams import Streams

log = logging.getLogger("wechatbot")


class Host:
    """Config, store, plugins, endpoints and the callback pipeline of one app."""

    def __init__(self, config: Config, extra_plugins: Mapping[str, Any] | None = None, *, url_prefix: str = "") -> None:
        """``url_prefix`` goes before every endpoint's callback path (the Blueprint's mount point)."""
        self.config = config
        # Down is a state: while the store cannot be reached, this process answers for it.
        # A worker started after its siblings opened a SQLite store never creates it (see store_marks).
        self.store = ResilientStore(config.store, opener=open_store_once)
        try:
            self._build(config, extra_plugins, url_prefix)
        except BaseException:
            self.store.close()  # nothing else has started yet
            raise
        self.closed = False

    def _build(self, config: Config, extra_plugins: Mapping[str, Any] | None, url_prefix: str) -> None:
        self.jobs = Jobs(self.store, queue_for(config.store, config.queue), self._run_job,
                         lease=config.job_lease, workers=max(1, config.deferred_workers // 4))
        self.candidates = installed_plugins(config.plugins_dir, extra_plugins)
        cache: dict[str, LoadedPlugin] = {}
        self.endpoints: dict[str, Endpoint] = {}
        for name, endpoint in config.endpoints.items():
            order = select(config.plugins if endpoint.plugins is None else endpoint.plugins, config.disabled, self.candidates)
            plugins = load(self.candidates, order, cache)
            self.endpoints[name] = Endpoint(endpoint, config, plugins, plugin_manager(plugins), self.store, self.jobs.submit,
                                           path=url_prefix + endpoint.path)
        self.loaded = cache
        # A claim still "running" half a second past the deadline belongs to a process that died or froze.
        self.dedup = Dedup(self.store, silent_after=config.reply_deadline + 0.5)
        self.pool = BoundedPool(config.deferred_workers, config.deferred_queue)
        self.outbox = Outbox(self.pool, self.jobs, retry_for=config.push_retry_for)
        self.streams = Streams(self.store, window=config.stream_window, placeholder=config.stream_placeholder)
        self.pipeline = Pipeline(config, self.dedup, self.pool, self.jobs, self.outbox,
                                 Streaming(self.streams, self.pool, self.outbox))
        #: The AI bots on their long connection (``mode = websocket``), by endpoint name.
        self.long_connections: dict[str, Any] = {}
        for name, endpoint in self.endpoints.items():
            if endpoint.config.is_websocket:
                # Imported only here: hosts without a long connection never load websockets.
                from .longconn.service import LongConnEndpoint

                self.long_connections[name] = LongConnEndpoint(endpoint, config, self.store, self.dedup, self.pool)
        for name, section in config.schedule_settings.items():
            if section.get("endpoint", "").strip() not in self.endpoints:
                known = ", ".join(repr(n) for n in self.endpoints)
                raise ConfigError(f"[schedule:{name}] endpoint = {section.get('endpoint')!r} names no [wecom] section (endpoints: {known})")
        #: Runs the endpoints' scheduled pushes, once per due time across every host (set by start).
        self.scheduler: Scheduler | None = None

    def start(self) -> None:
        """Run the plugins' start-up hooks, then start this process's background threads."""
        for endpoint in self.endpoints.values():
            endpoint.start()
        self.pipeline.start()
        self.start_long_connections()
        self.scheduler = Scheduler([job for e in self.endpoints.values() for job in e.schedules], self.store, self._fire)
        self.scheduler.start()
        for endpoint in self.endpoints.values():
            log.info("endpoint [%s] (%s) at %s: plugins %s", endpoint.section, endpoint.config.type, endpoint.path,
                     ", ".join(p.name for p in endpoint.plugins) or "none")

    def start_long_connections(self) -> None:
        """Stand by for the long connection of every ``mode = websocket`` bot (one process connects)."""
        for connection in self.long_connections.values():
            connection.start()

    def close(self) -> None:
        """Stop the job consumer, heartbeat, dedup writer and pool; close the store. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for connection in self.long_connections.values():
            connection.close()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.jobs.stop()
        self.streams.stop()
        self.pool.shutdown()
        self.dedup.stop()
        self.store.close()

    def _fire(self, schedule: Schedule, due: float) -> None:
        """Run one due scheduled push: its text, or its plugin's function, through the outbox."""
        endpoint = self.endpoints[schedule.endpoint]
        result = schedule.func(endpoint.context_for(schedule.plugin)) if schedule.func is not None else None
        reply = as_push(schedule, result)
        if reply is not None:
            self.outbox.push_to(endpoint, reply, schedule.to)

    def _run_job(self, record: dict) -> None:
        run_job(record, self.endpoints[record["endpoint"]], self.outbox)

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
