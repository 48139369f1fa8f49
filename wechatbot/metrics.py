"""The host's Prometheus series, added up over every worker process.

Under gunicorn, ``gunicorn.conf.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
directory it empties when the master starts: each worker then keeps its
counts in files there (prometheus_client's multiprocess mode), ``/metrics``
adds them all up whichever worker answers, and a dead worker's counts stay
counted (its live gauges are dropped by ``child_exit``). Without that
variable (``wechatbot serve``, tests) the counts are this process's own.

The call sites are few: the callback path reports each callback once
(:func:`callback_done`), the plugin caller each call, the outbox each push.
Label values are names from the config (apps, plugins) and fixed words,
so the number of series stays small. The one label a callback decides, its
kind (its msgtype or event), is kept to :data:`MAX_KINDS` names that look
like WeCom's; any other counts as ``other``.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: How a callback ended. ``answered``: a plugin replied (passively or pushed);
#: ``empty``: none did; ``deferred``: the plugins were still busy at the
#: deadline (``wechatbot_late_replies`` says how that ended); ``refused``: not
#: a valid callback (``reason`` says why); ``retry``: a repeat, answered from
#: the first arrival; ``error``: it raised out of the pipeline.
OUTCOMES = ("answered", "empty", "deferred", "refused", "retry", "error")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CALLBACKS = Counter("wechatbot_callbacks", "Callbacks by app, kind and outcome (refused ones by reason).",
                    ["app", "kind", "outcome", "reason"])
CALLBACK_SECONDS = Histogram("wechatbot_callback_seconds", "Time to answer a callback, from its arrival.",
                             ["app"], buckets=_LATENCY_BUCKETS)
PLUGIN_CALLS = Counter("wechatbot_plugin_calls", "Plugin hook calls, by plugin.", ["plugin"])
PLUGIN_ERRORS = Counter("wechatbot_plugin_errors", "Plugin hook calls that raised, by plugin.", ["plugin"])
PLUGIN_SECONDS = Histogram("wechatbot_plugin_seconds", "Time a plugin's hook took.", ["plugin"], buckets=_LATENCY_BUCKETS)
LATE_REPLIES = Counter("wechatbot_late_replies", "Replies that missed reply_deadline, by outcome (pushed, failed, none).",
                       ["app", "outcome"])
PUSHES = Counter("wechatbot_pushes", "Replies sent through the API instead of the answer, by outcome (sent, retried, failed).",
                 ["app", "outcome"])
TOKEN_FETCHES = Counter("wechatbot_token_fetches", "Access tokens fetched from WeCom, by outcome (ok, failed).",
                        ["app", "outcome"])
POOL_FULL = Counter("wechatbot_pool_full", "Work the full plugin pool refused (callbacks queued as jobs, pushes dropped).",
                    ["app"])
UNWAITED = Counter("wechatbot_unwaited",
                   "Callbacks answered empty without waiting for their plugins, their replies pushed later: the "
                   "request threads were all taken (reason: late, it reached one after reply_deadline; crowded, "
                   "others were waiting for one).", ["app", "reason"])
STREAM_POLLS = Counter("wechatbot_stream_polls", "AI bot stream refresh polls answered.", ["app"])
LONGCONN_FRAMES = Counter("wechatbot_longconn_frames",
                          "Frames sent on an AI bot's long connection, by what became of them "
                          "(delivered, unknown: no receipt, failed, retrying).", ["bot", "outcome"])
LONGCONN_CONNECTIONS = Counter("wechatbot_longconn_connections",
                               "Long connections that ended, by why (stopped, kicked, refused, dropped, dead).",
                               ["bot", "reason"])


_children: dict[tuple, Any] = {}


def _child(metric: Counter | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: the hot path skips prometheus_client's label checks."""
    key = (metric, labels)
    try:
        return _children[key]
    except KeyError:
        child = _children[key] = metric.labels(*labels)
        return child


#: Distinct callback kinds counted apart. A callback names its own msgtype and
#: event: beyond these many, or for a name no WeCom kind looks like, it counts
#: as ``other`` (else each absurd callback would add a series, for ever).
MAX_KINDS = 64
_KIND_NAME = re.compile(r"(?:(?:event:)?[A-Za-z][A-Za-z0-9_.]{0,39})?")
_kinds: set[str] = set()


def _kind_label(kind: str) -> str:
    if kind not in _kinds:
        if len(_kinds) >= MAX_KINDS or not _KIND_NAME.fullmatch(kind):
            return "other"
        _kinds.add(kind)
    return kind


def callback_done(app: str, kind: str, outcome: str, seconds: float | None = None, reason: str = "") -> None:
    """Count one callback (and how long it took, when it was answered at all)."""
    try:
        child = _children[(CALLBACKS, (app, kind, outcome, reason))]
    except KeyError:  # a new kind, outcome or reason: only kinds that pass _kind_label are remembered
        child = _child(CALLBACKS, app, _kind_label(kind), outcome, reason)
    child.inc()
    if seconds is not None:
        _child(CALLBACK_SECONDS, app).observe(seconds)


def plugin_called(plugin: str, seconds: float, failed: bool = False) -> None:
    """Count one call of a plugin's hook."""
    _child(PLUGIN_CALLS, plugin).inc()
    _child(PLUGIN_SECONDS, plugin).observe(seconds)
    if failed:
        _child(PLUGIN_ERRORS, plugin).inc()


def late_reply(app: str, outcome: str) -> None:
    """Count a reply that missed the deadline: ``pushed``, ``failed``, or ``none`` (no plugin answered)."""
    LATE_REPLIES.labels(app, outcome).inc()


def pushed(app: str, ok: bool) -> None:
    """Count a reply sent through the API (``message/send``, response_url, webhook)."""
    PUSHES.labels(app, "sent" if ok else "failed").inc()


def push_retried(app: str) -> None:
    """Count a push that failed for a passing reason and will be tried again."""
    PUSHES.labels(app, "retried").inc()


def pool_full(app: str) -> None:
    """Count work refused by the full plugin pool."""
    POOL_FULL.labels(app).inc()


def unwaited(app: str, reason: str) -> None:
    """Count a callback answered without waiting for its plugins (``reason``: late or crowded)."""
    _child(UNWAITED, app, reason).inc()


def token_fetched(app: str, ok: bool) -> None:
    """Count an access token fetched from WeCom."""
    TOKEN_FETCHES.labels(app, "ok" if ok else "failed").inc()


def stream_polled(app: str) -> None:
    """Count an AI bot stream refresh poll."""
    _child(STREAM_POLLS, app).inc()


def longconn_frame(bot: str, outcome: str) -> None:
    """Count what became of one frame sent on the long connection."""
    _child(LONGCONN_FRAMES, bot, outcome).inc()


def longconn_ended(bot: str, reason: str) -> None:
    """Count a long connection that ended (or never opened), by why."""
    _child(LONGCONN_CONNECTIONS, bot, reason).inc()


class _QueueCollector:
    """``wechatbot_jobs_waiting``: read from the queue at each scrape, the same for every worker."""

    def __init__(self, waiting: Callable[[], int | None]) -> None:
        self.waiting = waiting

    def collect(self) -> Iterable[GaugeMetricFamily]:
        count = self.waiting()
        if count is not None:
            yield GaugeMetricFamily("wechatbot_jobs_waiting", "Durable jobs waiting in the queue.", value=count)


def _registry() -> CollectorRegistry:
    """Every worker's series (multiprocess mode), or this process's own."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessCollector())
    return registry


def sample(name: str, **labels: str) -> float:
    """The current value of one series (``wechatbot_callbacks_total``, ``app="wecom"`` …), 0 when unseen."""
    return _registry().get_sample_value(name, labels) or 0.0


def render(jobs_waiting: Callable[[], int | None] | None = None) -> tuple[bytes, str]:
    """The whole host's series in Prometheus text format, and its Content-Type.

    ``jobs_waiting`` reads the queue's length (``None`` when it cannot).
    """
    registry = _registry()
    if jobs_waiting is not None:
        registry.register(_QueueCollector(jobs_waiting))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _ProcessCollector:
    """This process's own series (no multiprocess directory)."""

    def collect(self) -> Iterable:
        return PROCESS_REGISTRY.collect()
