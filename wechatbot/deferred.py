"""Work that outlives the HTTP answer: the durable job records, and what a job does.

Three kinds of job: ``dispatch`` runs the plugins that could not answer within
``reply_deadline`` (or found the pool full), ``call`` runs a function a plugin
handed to ``context.defer``; either way the reply goes to the outbox. A record
holds the message as its channel's plaintext, so any process can run it.
``push`` tries again a push that failed for a passing reason (see ``outbox``).
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Callable

from . import logs, metrics
from .wecom.replies import as_reply

if TYPE_CHECKING:
    from .endpoint import Endpoint
    from .outbox import Outbox

log = logging.getLogger("wechatbot.deferred")


def dispatch_record(endpoint_name: str, plaintext: str) -> dict:
    """A job that runs an endpoint's plugins (those off the request thread) for one callback."""
    return {"endpoint": endpoint_name, "plaintext": plaintext, "kind": "dispatch", "request_id": logs.current_request_id()}


def call_record(endpoint_name: str, plaintext: str, plugin: str, func: Callable[..., Any], args: list) -> dict:
    """A job that runs ``func(message, context, *args)`` for ``plugin`` (``context.defer``)."""
    target = f"{func.__module__}:{func.__qualname__}"
    if "<" in target:
        raise ValueError(f"context.defer needs a module-level function, not {target}")
    return {"endpoint": endpoint_name, "plaintext": plaintext, "kind": "call", "plugin": plugin, "func": target, "args": args,
            "request_id": logs.current_request_id()}


def run_job(record: dict, endpoint: Endpoint, outbox: Outbox) -> None:
    """Run one durable job for ``endpoint``, then push its reply (if any) through ``outbox``.

    Its log lines carry the id of the callback it came from.
    """
    logs.begin_request(record.get("request_id"))
    try:
        _run(record, endpoint, outbox)
    finally:
        logs.end_request()


def _run(record: dict, endpoint: Endpoint, outbox: Outbox) -> None:
    if record["kind"] == "push":  # a push that failed, tried again
        outbox.retry_push(endpoint, record)
        return
    message = endpoint.channel.parse(record["plaintext"])
    if record["kind"] == "call":
        module, _, name = record["func"].partition(":")
        func: Any = importlib.import_module(module)
        for part in name.split("."):
            func = getattr(func, part)
        try:
            reply = as_reply(func(message, endpoint.context_for(record["plugin"]), *record.get("args", [])))
        except Exception as exc:
            # The job is done either way; tell the plugins' plugin_error hooks, as for a handler.
            log.exception("[%s] deferred %s of plugin %s failed", endpoint.section, record["func"], record["plugin"])
            endpoint.notify("plugin_error", plugin_name=record["plugin"], hook_name="defer", exception=exc, message=message)
            return
        if reply is not None:
            outbox.push(endpoint, reply, message, record["plugin"])
        return
    plugin, reply = endpoint.ask_later(message)
    if reply is None:
        metrics.late_reply(endpoint.section, "none")
        return
    sent = outbox.push(endpoint, reply, message, plugin)
    metrics.late_reply(endpoint.section, "pushed" if sent is not None else "failed")
