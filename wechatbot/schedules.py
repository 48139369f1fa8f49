"""Scheduled pushes: periodic or cron-timed jobs, each run once per due time across every host.

A job is declared in the config::

    [schedule:standup]
    cron = 30 9 * * 1-5              # or: every = 3600 (seconds)
    timezone = Asia/Shanghai         # cron's clock (default: the host's)
    to = user:zhangsan, department:2, tag:5, chat:CHATID, webhook:KEY
    text = 站会时间到                 # or: markdown = **站会**
    endpoint = hr                    # which [wecom:NAME] sends (default: [wecom])
    missed = skip                    # or: once (run the latest missed time once)

or by a plugin through the ``register_schedules(register, context)`` hook,
``register("morning", func, every=60, to=["user:zhangsan"])``, where
``func(context)`` returns what to push (a ``str`` or a ``Reply``; ``None``
pushes nothing).

Every worker of every host runs a scheduler thread. Due times are the same on
all of them (``every`` counts from the Unix epoch, cron from its clock), and a
due time is claimed with one atomic ``add`` in the shared store: whoever wins
pushes, the others skip it. A due time that passed while no host ran is
skipped, or with ``missed = once`` run once when a host comes back (only the
latest such time, and never times before the job first appeared).
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .config import ConfigError, split_list
from .store import PREFIXES

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("wechatbot.schedules")

TARGET_KINDS = ("user", "department", "tag", "chat", "webhook")
MISSED = ("skip", "once")
SCHEDULE_KEYS = {"every", "cron", "timezone", "to", "text", "markdown", "endpoint", "missed", "grace"}
DEFAULT_GRACE = 60.0
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class Target:
    """Where a push goes: ``user``, ``department``, ``tag``, ``chat`` (an app chat) or ``webhook`` (a group robot)."""

    kind: str
    value: str

    @classmethod
    def parse(cls, text: str, where: str) -> Target:
        kind, colon, value = text.strip().partition(":")
        if not colon:
            kind, value = "user", text.strip()
        if kind not in TARGET_KINDS or not value:
            raise ConfigError(f"{where}: {text!r} is not one of {', '.join(k + ':ID' for k in TARGET_KINDS)}")
        if kind == "webhook" and "key=" in value:
            value = value.split("key=", 1)[1].split("&", 1)[0]  # a whole webhook URL: keep its key
        return cls(kind, value)

    def __str__(self) -> str:
        return f"{self.kind}:{'***' if self.kind == 'webhook' else self.value}"


def _zone(name: str, where: str) -> tzinfo | None:
    if not name:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where} timezone = {name!r} is not a time zone name (e.g. Asia/Shanghai)") from None


@dataclass(frozen=True)
class Schedule:
    """One job: when it is due, where it pushes, and what."""

    name: str
    to: tuple[Target, ...]
    every: float | None = None
    cron: str | None = None
    timezone: str = ""
    endpoint: str = ""
    text: str = ""
    markdown: bool = False
    func: Callable[..., Any] | None = field(default=None, repr=False)
    plugin: str = ""
    missed: str = "skip"
    grace: float = DEFAULT_GRACE

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}"
        if (self.every is None) == (self.cron is None):
            raise ConfigError(f"{where} needs exactly one of every (seconds) or cron")
        if self.every is not None and not self.every > 0:
            raise ConfigError(f"{where}: every must be a positive number of seconds, not {self.every!r}")
        if self.cron is not None:
            from cronsim import CronSim, CronSimError

            try:
                CronSim(self.cron, datetime.now())
            except CronSimError as exc:
                raise ConfigError(f"{where}: cron {self.cron!r} is not a cron expression ({exc})") from None
        if self.missed not in MISSED:
            raise ConfigError(f"{where}: missed must be skip or once, not {self.missed!r}")
        if not self.to:
            raise ConfigError(f"{where} has no targets: set to = user:ID, department:ID, tag:ID, chat:ID or webhook:KEY")
        _zone(self.timezone, where)

    @property
    def key(self) -> str:
        """The job's name in the store, unique across endpoints and plugins."""
        return f"{self.endpoint + '/' if self.endpoint else ''}{self.plugin + '.' if self.plugin else ''}{self.name}"

    @property
    def when(self) -> str:
        """``every 60 s`` or ``cron 30 9 * * 1-5 (Asia/Shanghai)``, for listings."""
        if self.every is not None:
            return f"every {self.every:g} s"
        return f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone else "")

    def _clock(self, at: float) -> datetime:
        zone = _zone(self.timezone, self.name)
        return datetime.fromtimestamp(at, zone) if zone else datetime.fromtimestamp(at).astimezone()

    def latest_due(self, now: float) -> float:
        """The latest due time at or before ``now`` (Unix seconds)."""
        if self.every is not None:
            return math.floor(now / self.every) * self.every
        from cronsim import CronSim

        start = self._clock(math.floor(now)) + timedelta(seconds=1)  # cronsim's reverse excludes its start
        return next(CronSim(self.cron, start, reverse=True)).timestamp()

    def next_due(self, now: float) -> float:
        """The first due time after ``now``."""
        if self.every is not None:
            return (math.floor(now / self.every) + 1) * self.every
        from cronsim import CronSim

        return next(CronSim(self.cron, self._clock(now))).timestamp()


def from_config(name: str, section: Mapping[str, str]) -> Schedule:
    """A ``[schedule:NAME]`` section as a Schedule; a ConfigError names the key to fix."""
    where = f"[schedule:{name}]"
    for key in section:
        if key not in SCHEDULE_KEYS:
            raise ConfigError(f"unknown key {where} {key} (known: {', '.join(sorted(SCHEDULE_KEYS))})")
    text, markdown = section.get("text", ""), section.get("markdown", "")
    if bool(text.strip()) == bool(markdown.strip()):
        raise ConfigError(f"{where} needs text or markdown (one of them)")
    every = section.get("every", "").strip()
    try:
        every_seconds = float(every) if every else None
        grace = float(section.get("grace", DEFAULT_GRACE))
    except ValueError:
        raise ConfigError(f"{where} every and grace are numbers of seconds") from None
    try:
        return Schedule(
            name=name, to=tuple(Target.parse(t, f"{where} to") for t in split_list(section.get("to", ""))),
            every=every_seconds, cron=section.get("cron", "").strip() or None,
            timezone=section.get("timezone", "").strip(), endpoint=section.get("endpoint", "").strip(),
            text=(text or markdown).strip(), markdown=bool(markdown.strip()),
            missed=section.get("missed", "skip").strip(), grace=grace,
        )
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(f"schedule {name!r}", where)) from None


def from_plugin(plugin: str, endpoint: str, name: str, func: Callable[..., Any], *, every: float | None = None,
                cron: str | None = None, to: Iterable[str] = (), missed: str = "skip", timezone: str = "",
                grace: float = DEFAULT_GRACE) -> Schedule:
    """A Schedule a plugin declared through ``register_schedules``."""
    where = f"plugin {plugin!r} schedule {name!r}"
    return Schedule(name=name, to=tuple(Target.parse(t, where) for t in to), every=every, cron=cron,
                    timezone=timezone, endpoint=endpoint, func=func, plugin=plugin, missed=missed, grace=grace)


Fire = Callable[[Schedule, float], None]


class Scheduler:
    """Runs due jobs in this process; the store makes sure only one process runs each due time."""

    def __init__(self, schedules: Iterable[Schedule], store: Store, fire: Fire, tick: float = TICK_SECONDS) -> None:
        self.schedules = list(schedules)
        self.store = store
        self.fire = fire
        self.tick = tick
        self.owner = uuid.uuid4().hex[:12]
        self._seen: dict[str, float] = {}
        self._checked: dict[str, float] = {}
        self._stop = threading.Event()
        self._pid: int | None = None

    def _store_key(self, schedule: Schedule, what: str) -> str:
        return f"{PREFIXES['schedule']}{schedule.key}:{what}"

    def first_seen(self, schedule: Schedule, now: float) -> float:
        """When the job first appeared on any host (earlier due times are no missed runs)."""
        if schedule.key not in self._seen:
            key = self._store_key(schedule, "seen")
            self.store.add(key, repr(now))
            self._seen[schedule.key] = float(self.store.get(key) or now)
        return self._seen[schedule.key]

    def last_run(self, schedule: Schedule) -> float | None:
        """The latest due time some host claimed for this job, if any."""
        raw = self.store.get(self._store_key(schedule, "last"))
        return float(raw) if raw else None

    def run_due(self, now: float | None = None) -> list[tuple[Schedule, float]]:
        """Claim and fire every job due now; returns what this process fired."""
        now = time.time() if now is None else now
        fired = []
        for schedule in self.schedules:
            due = schedule.latest_due(now)
            if self._checked.get(schedule.key) == due:
                continue
            if due < self.first_seen(schedule, now):
                self._checked[schedule.key] = due
                continue
            gap = schedule.next_due(due) - due
            claimed = self.store.add(self._store_key(schedule, f"due:{due!r}"), self.owner, 2 * max(gap, schedule.grace) + 60)
            self._checked[schedule.key] = due
            if not claimed:
                continue  # another process has it
            self.store.set(self._store_key(schedule, "last"), repr(due))
            late = now - due
            if late > schedule.grace and schedule.missed == "skip":
                log.info("schedule %s: skipped the run due %.0f s ago (missed = skip)", schedule.key, late)
                continue
            try:
                self.fire(schedule, due)
                fired.append((schedule, due))
            except Exception:
                log.exception("schedule %s: the run due at %s failed", schedule.key, datetime.fromtimestamp(due).isoformat())
        return fired

    def start(self) -> None:
        """Start this process's scheduler thread (again after a fork); nothing when there are no jobs."""
        if not self.schedules or self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._checked = {}
        threading.Thread(target=self._loop, name="wechatbot-scheduler", daemon=True).start()

    def stop(self) -> None:
        """Stop the thread; the other hosts go on firing."""
        self._stop.set()
        self._pid = None

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.run_due()
            except Exception:
                log.exception("scheduler tick failed (the store may be down); trying again")


def as_push(schedule: Schedule, result: Any) -> Any:
    """What a run pushes: the configured text, or what the plugin's function returned, as a Reply."""
    from .wecom.replies import MarkdownReply, TextReply, as_reply

    if schedule.func is None:
        return MarkdownReply(schedule.text) if schedule.markdown else TextReply(schedule.text)
    return as_reply(result)


def collect_schedules(config: Any, pm: Any, contexts: Mapping[str, Any], endpoint: str) -> list[Schedule]:
    """The endpoint's jobs: ``[schedule:NAME]`` sections naming it, and its plugins' ``register_schedules``."""
    found = [from_config(name, section) for name, section in sorted(config.schedule_settings.items())
             if section.get("endpoint", "").strip() == endpoint]
    for impl in reversed(pm.hook.register_schedules.get_hookimpls()):
        context = contexts.get(impl.plugin_name)
        if context is None:
            continue

        def register(name: str, func: Callable[..., Any], plugin: str = impl.plugin_name, **options: Any) -> None:
            found.append(from_plugin(plugin, endpoint, name, func, **options))

        values = {"register": register, "context": context}
        try:
            impl.function(*[values[arg] for arg in impl.argnames])
        except ConfigError as exc:
            raise ConfigError(f"plugin {impl.plugin_name!r}: {exc}") from None
        except Exception as exc:
            raise ConfigError(f"plugin {impl.plugin_name!r} failed in register_schedules: {exc}") from exc
    return found
