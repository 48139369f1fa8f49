"""Every callback answered in time, each handled once, no reply lost.

For each callback: a retry (same identity, see ``dedup``) never runs the
plugins again and gets the first arrival's reply; the plugins run in a bounded
thread pool and the HTTP answer waits at most ``reply_deadline`` seconds for
them; a reply that comes later is pushed through ``message/send``, as a
durable job (``jobs``) that survives the worker's death.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Callable

from .dedup import Dedup, callback_key
from .jobs import Jobs, queue_for
from .wecom.messages import Message, parse_message
from .process import current_pid
from .wecom.replies import Reply, TextReply, as_reply

if TYPE_CHECKING:
    from .api import WeComAPI
    from .bot import Bot
    from .config import Config
    from .context import PluginContext
    from .store import Store

log = logging.getLogger("wechatbot.delivery")

# Held only while starting a process's background threads.
_START_LOCK = threading.Lock()


class BoundedPool:
    """A thread pool that refuses work instead of queueing without bound."""

    def __init__(self, workers: int, queue: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="wechatbot-plugin")
        self.slots = threading.BoundedSemaphore(max(1, workers) + max(0, queue))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future | None:
        """Run ``fn(*args)`` in the pool; ``None`` when the pool and its queue are full."""
        if not self.slots.acquire(blocking=False):
            return None
        future = self.executor.submit(fn, *args)
        future.add_done_callback(lambda _: self.slots.release())
        return future


class Delivery:
    """Dedup, deadline and late delivery for all the apps of one host."""

    def __init__(self, config: Config, store: Store, bots: dict[str, Bot]) -> None:
        self.config = config
        self.bots = bots
        self.dedup = Dedup(store)
        self.deadline = config.reply_deadline
        self.pool = BoundedPool(config.deferred_workers, config.deferred_queue)
        self.jobs = Jobs(store, queue_for(config.store, config.queue), self.run_job,
                         lease=config.job_lease, workers=max(1, config.deferred_workers // 4))
        self.stats: Counter[str] = Counter()
        self._pid: int | None = None

    def start(self) -> None:
        """Start this process's job consumer and dedup writer (again after a fork)."""
        with _START_LOCK:
            if self._pid != current_pid():
                self.jobs.start()
                self.dedup.start()
                self._pid = current_pid()

    def answer(self, bot: Bot, message: Message, plaintext: str) -> tuple[str | None, str | None]:
        """The plaintext reply XML for a callback (``None``: answer empty) and who answered."""
        if self._pid != current_pid():  # forked after create_app (gunicorn --preload)
            self.start()
        key = callback_key(bot.app.name, message, plaintext)
        if not self.dedup.claim(key):
            self.stats["retries"] += 1
            log.info("[%s] retry of %s: plugins not run again", bot.app.section, key)
            return self.dedup.wait_for_answer(key, self.deadline), "(retry)"
        started = time.monotonic()
        plugin, reply = bot.ask_plugins(message, "inline")
        if reply is None and bot.has_slow_plugins(message):
            return self._answer_from_pool(bot, message, plaintext, key, self.deadline - (time.monotonic() - started))
        if time.monotonic() - started > self.deadline:
            # An inline plugin overran: WeCom has stopped waiting, so push instead.
            self.stats["late"] += 1
            log.warning("[%s] inline plugin %s overran reply_deadline; its reply is pushed", bot.app.section, plugin)
            self.dedup.deferred(key)
            if reply is not None:
                self.push_later(bot, reply, message)
            return None, None
        xml = bot.passive_xml(reply, message)
        self.dedup.answered(key, xml)
        return xml, plugin

    def _answer_from_pool(self, bot: Bot, message: Message, plaintext: str, key: str, wait: float) -> tuple[str | None, str | None]:
        """Run the plugins that may block in the pool; wait for them at most ``wait`` seconds."""
        future = self.pool.submit(bot.ask_plugins, message, "rest")
        if future is None:
            self.stats["overflow"] += 1
            log.warning("[%s] plugin pool full: %s from %s answered empty and queued", bot.app.section, message.type, message.from_user)
            self.jobs.submit(self._record(bot, plaintext), key)
            self.dedup.deferred(key)
            return None, None
        try:
            plugin, reply = future.result(timeout=max(0.0, wait))
        except FutureTimeout:
            self.stats["deferred"] += 1
            log.info("[%s] plugins still busy after %.1f s: reply for %s will be pushed", bot.app.section, self.deadline, message.from_user)
            self.jobs.adopt(self._record(bot, plaintext), key)
            self.dedup.deferred(key)
            future.add_done_callback(lambda done: self._finish_late(bot, message, key, done))
            return None, None
        xml = bot.passive_xml(reply, message)
        self.dedup.answered(key, xml)
        return xml, plugin

    @staticmethod
    def _record(bot: Bot, plaintext: str, **extra: Any) -> dict:
        return {"app": bot.app.name, "plaintext": plaintext, "kind": "dispatch", **extra}

    def _finish_late(self, bot: Bot, message: Message, key: str, future: Future) -> None:
        try:
            _, reply = future.result()
            if reply is not None:
                self.push(bot, reply, message)
        except Exception:
            log.exception("[%s] late reply for %s could not be delivered", bot.app.section, message.from_user)
        finally:
            self.jobs.finish(key)

    def push(self, bot: Bot, reply: Reply, message: Message) -> None:
        """Send a reply through the WeCom API now."""
        send_reply(bot.api, reply, message)
        self.stats["pushed"] += 1
        log.info("[%s] pushed %s reply to %s", bot.app.section, reply.msg_type, message.from_user)

    def push_later(self, bot: Bot, reply: Reply, message: Message) -> None:
        """Push a reply a passive answer cannot carry, without holding up the answer."""
        future = self.pool.submit(self.push, bot, reply, message)
        if future is None:
            self.stats["overflow"] += 1
            log.error("[%s] plugin pool full: %s reply to %s not pushed", bot.app.section, reply.msg_type, message.from_user)

    def defer(self, context: PluginContext, func: Callable[..., Any], message: Message, *args: Any) -> None:
        """Queue ``func(message, context, *args)`` as a durable job (``context.defer``)."""
        target = f"{func.__module__}:{func.__qualname__}"
        if "<" in target:
            raise ValueError(f"context.defer needs a module-level function, not {target}")
        record = self._record(self.bots[context.app_name], _message_xml(message), kind="call",
                              plugin=context.plugin_name, func=target, args=list(args))
        self.jobs.submit(record)
        self.stats["deferred"] += 1

    def run_job(self, record: dict) -> None:
        """Run one durable job: the plugins (or a deferred function), then push the reply."""
        bot = self.bots[record["app"]]
        message = parse_message(record["plaintext"])
        if record["kind"] == "call":
            module, _, name = record["func"].partition(":")
            func: Any = importlib.import_module(module)
            for part in name.split("."):
                func = getattr(func, part)
            try:
                reply = as_reply(func(message, bot.context_for(record["plugin"]), *record.get("args", [])))
            except Exception as exc:
                # The job is done either way; tell the plugins' plugin_error hooks, as for a handler.
                log.exception("[%s] deferred %s of plugin %s failed", bot.app.section, record["func"], record["plugin"])
                bot.notify("plugin_error", plugin_name=record["plugin"], hook_name="defer", exception=exc, message=message)
                return
        else:
            _, reply = bot.ask_plugins(message, "rest")
        if reply is not None:
            self.push(bot, reply, message)


def _message_xml(message: Message) -> str:
    import xmltodict

    return xmltodict.unparse({"xml": message.raw}, full_document=False)


def send_reply(api: WeComAPI, reply: Reply, message: Message) -> list[dict]:
    """Push ``reply`` to the sender of ``message`` through the WeCom API.

    Long texts go in parts; a template-card update goes to its own API with
    the event's ResponseCode, for the user who clicked.
    """
    if isinstance(reply, TextReply):
        return api.send_text(message.from_user, reply.content)
    if hasattr(reply, "to_update_body"):
        body = reply.to_update_body(str(message.raw.get("ResponseCode", "")), int(api.agent_id or 0), userids=[message.from_user])
        return [api.update_template_card(body)]
    body = reply.to_send_body()
    msgtype = body.pop("msgtype")
    return [api.send(msgtype, body[msgtype], touser=message.from_user)]
