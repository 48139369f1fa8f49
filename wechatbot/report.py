"""What the host says about each callback: one INFO line and its counts.

The callback view calls :func:`answered` or :func:`refused` once per callback,
so the log and ``/metrics`` always agree. The INFO line names the endpoint,
the kind of message, the user, which plugin answered, how the answer went and
how long it took; in JSON those are fields of their own. It never holds the
message's content.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import metrics
from .decision import Route

if TYPE_CHECKING:
    from .pipeline import Answer

log = logging.getLogger("wechatbot.callback")

#: How an answer went, in the words of the log line.
HOW = {Route.PASSIVE: "passive", Route.STREAM: "stream", Route.PUSH_NOW: "pushed", Route.PUSH_LATER: "late",
       Route.EMPTY: "empty"}
RETRY_PLUGIN = "(retry)"  # what the pipeline names as the answerer of a retry


def kind_of(message: object) -> str:
    """``text``, ``image`` … or ``event:click`` and the like."""
    return f"event:{message.event}" if message.is_event else message.type  # type: ignore[attr-defined]


def answered(section: str, answer: Answer, seconds: float) -> None:
    """Log and count one callback the pipeline answered (with a reply or empty)."""
    message = answer.message
    kind = kind_of(message)
    how = HOW.get(answer.route, answer.route.value)
    if answer.plugin == RETRY_PLUGIN:
        outcome, plugin = "retry", None
    elif answer.route is Route.PUSH_LATER:
        outcome, plugin = "deferred", None  # whether a plugin answers is known only later
    else:
        outcome, plugin = ("answered", answer.plugin) if answer.plugin else ("empty", None)
    metrics.callback_done(section, kind, outcome, seconds)
    if log.isEnabledFor(logging.INFO):
        ms = round(seconds * 1000, 1)
        by = f"answered by {plugin}" if plugin else {"retry": "a retry", "deferred": "plugins still busy"}.get(outcome, "no reply")
        log.info("[%s] %s from %s: %s (%s) in %.1f ms", section, kind, message.from_user, by, how, ms,
                 extra={"fields": {"app": section, "kind": kind, "user": message.from_user, "plugin": plugin,
                                   "how": how, "outcome": outcome, "ms": ms}})


def refused(section: str, reason: str, seconds: float) -> None:
    """Count a callback refused before it reached the plugins (the view logs why)."""
    metrics.callback_done(section, "", "refused", seconds, reason=reason)


def failed(section: str, seconds: float) -> None:
    """Count a callback that raised out of the pipeline (the app's error handler logs it)."""
    metrics.callback_done(section, "", "error", seconds)
