"""Calling plugins one by one, so that one failing plugin never silences the others.

pluggy stops calling the remaining implementations as soon as one raises, so the
host walks the implementations itself (public pluggy API), in pluggy's order,
timing and isolating each one.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

import pluggy

from . import metrics
from .plugins import call_order
from .wecom.replies import Reply, ReplyError, TextReply, as_reply

log = logging.getLogger("wechatbot.dispatch")

SLOW_PLUGIN_SECONDS = 3.0

ContextFor = Callable[[str], Any]


def _call(impl: Any, kwargs: Mapping[str, Any]) -> Any:
    return impl.function(*[kwargs[name] for name in impl.argnames])


def hook_for(message: Any) -> str:
    """The hook that answers ``message``: ``handle_event`` or ``handle_message``."""
    return "handle_event" if message.is_event else "handle_message"


def first_reply(pm: pluggy.PluginManager, message: Any, context_for: ContextFor, chain: list[Any] | None = None) -> tuple[str, Reply] | None:
    """Ask the plugins in order; return ``(plugin name, reply)`` of the first that answers.

    ``chain`` is the implementations to ask (default: all of the hook's, in
    call order). A plugin that raises is logged with its traceback, reported
    through the ``plugin_error`` hook and skipped. A plugin that raises
    ``ReplyError`` answers with that error's text.
    """
    hook_name = hook_for(message)
    arg = "event" if message.is_event else "message"
    for impl in call_order(pm, hook_name) if chain is None else chain:
        name = impl.plugin_name
        context = context_for(name)
        started = time.perf_counter()
        failed = False
        try:
            result = _call(impl, {arg: message, "context": context})
            reply = as_reply(result)
        except ReplyError as exc:
            return name, TextReply(str(exc))
        except Exception as exc:
            failed = True
            log.exception("plugin %s failed in %s for %s from %s", name, hook_name, message.type, message.from_user)
            notify_all(pm, "plugin_error", context_for, plugin_name=name, hook_name=hook_name, exception=exc, message=message)
            continue
        finally:
            elapsed = time.perf_counter() - started
            metrics.plugin_called(name, elapsed, failed)
            if elapsed > SLOW_PLUGIN_SECONDS:
                log.warning("plugin %s took %.1f s in %s", name, elapsed, hook_name)
        if reply is not None:
            log.debug("plugin %s answered %s with %s", name, message.type, reply.msg_type)
            return name, reply
    return None


def notify_all(pm: pluggy.PluginManager, hook: str, context_for: ContextFor, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call every implementation of ``hook``, isolating failures; return (name, result) pairs."""
    results = []
    for impl in call_order(pm, hook):
        name = impl.plugin_name
        try:
            results.append((name, _call(impl, {**kwargs, "context": context_for(name)})))
        except Exception:
            log.exception("plugin %s failed in %s", name, hook)
    return results
