"""The only code that sends replies: everything a passive answer does not carry.

A channel names its way of pushing (``Channel.push_via``); :data:`SENDERS`
maps that name to the function that does it: the app's ``message/send``
(long texts in parts, template-card updates to their own API), the AI bot
message's one-use ``response_url`` and the group robot's ``WebhookUrl``;
each new way is one more function in the table.
Scheduled pushes go to explicit targets instead (:meth:`Outbox.push_to`).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import metrics
from .pool import BoundedPool
from .wecom.messages import Message
from .wecom.bot_replies import cut_utf8
from .wecom.limits import RESPONSE_URL_MARKDOWN_LIMIT
from .wecom.replies import ChunkedReply, MarkdownReply, Reply, TextReply

if TYPE_CHECKING:
    from .endpoint import Endpoint
    from .api.hints import WeComError
    from .jobs import Jobs
    from .schedules import Target

log = logging.getLogger("wechatbot.outbox")

#: ``(endpoint, reply, message, plugin)``: ``plugin`` made the reply (the long connection reports its failures later).
Sender = Callable[["Endpoint", Reply, Message, "str | None"], list]

#: The longest pause between two attempts at a failed push, in seconds.
MAX_RETRY_PAUSE = 120.0
#: Seconds between two "pushes still failing" lines.
REMIND_EVERY = 60.0


class PushTrouble:
    """Pushes failing for a passing reason are a state of an endpoint, said in few lines.

    While WeCom's API is down every push fails, and each is tried again
    several times: one line when an endpoint's pushes start failing, at most
    one a minute while they do, one when a push goes through again. Each
    failed attempt is a DEBUG line, and an attempt that began before the
    last push that went through (a request that timed out after the API
    came back) does not start a new outage.
    """

    def __init__(self, remind_every: float = REMIND_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.remind_every = remind_every
        self._clock = clock
        self._lock = threading.Lock()
        #: Per endpoint section: [failing since, next reminder, attempts failed].
        self._failing: dict[str, list[float]] = {}
        #: Per endpoint section: when the last push that went through began.
        self._ok_since: dict[str, float] = {}

    def now(self) -> float:
        """The clock the attempts' start times are read on."""
        return self._clock()

    def failed(self, section: str, exc: Exception, retry_for: float, began: float) -> None:
        """An attempt that began at ``began`` (:meth:`now`) failed for a passing reason."""
        now = self._clock()
        with self._lock:
            state = self._failing.get(section)
            if state is None and began < self._ok_since.get(section, float("-inf")):
                return  # older than the last push that went through: not a new outage
            if state is None:
                self._failing[section] = [now, now + self.remind_every, 1]
                first = True
            else:
                state[2] += 1
                first = False
                if now < state[1]:
                    return
                state[1] = now + self.remind_every
                since, attempts = state[0], int(state[2])
        if first:
            log.warning("[%s] pushes are failing (%s): each is tried again, with growing pauses, for up to %.0f s; "
                        "said again at most once a minute while it lasts", section, exc, retry_for)
        else:
            log.warning("[%s] pushes still failing after %.0f s (%s); %d attempts failed so far",
                        section, now - since, exc, attempts)

    def succeeded(self, section: str, began: float) -> None:
        """An attempt that began at ``began`` went through."""
        if began > self._ok_since.get(section, float("-inf")):
            self._ok_since[section] = began
        if section not in self._failing:
            return
        with self._lock:
            state = self._failing.pop(section, None)
        if state is not None:
            log.warning("[%s] pushes go through again after %.0f s; %d attempts had failed meanwhile",
                        section, self._clock() - state[0], int(state[2]))


def send_via_message_api(endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None = None) -> list[dict]:
    """Push ``reply`` to the sender of ``message`` through the app's ``message/send``.

    Long texts go in parts; a template-card update goes to its own API with
    the event's ResponseCode, for the user who clicked.
    """
    api = endpoint.api
    if isinstance(reply, TextReply):
        return api.send_text(message.from_user, reply.content)
    if hasattr(reply, "to_update_body"):
        body = reply.to_update_body(str(message.raw.get("ResponseCode", "")), int(api.agent_id or 0), userids=[message.from_user])
        return [api.update_template_card(body)]
    body = reply.to_send_body()
    msgtype = body.pop("msgtype")
    return [api.send(msgtype, body[msgtype], touser=message.from_user)]


def _joined(reply: Reply) -> Reply | None:
    return reply.joined() if isinstance(reply, ChunkedReply) else reply


def _post_retrying(url: str, body: dict, attempts: int = 3, pause: float = 0.5) -> dict:
    """POST to a callback's URL, again after a network failure (WeCom's errcodes are final)."""
    # Imported here: the HTTP client (requests) stays out of the workers' memory until a push needs it.
    from .api.bot_push import post_to_url
    from .api.hints import WeComNetworkError

    for attempt in range(attempts):
        try:
            return post_to_url(url, body)
        except WeComNetworkError:
            if attempt == attempts - 1:
                raise
            time.sleep(pause * 2 ** attempt)
    raise AssertionError("unreachable")


def send_via_response_url(endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None = None) -> list[dict]:
    """Push ``reply`` once through the AI bot message's ``response_url`` (one use, 1 hour).

    A text or markdown goes as markdown (cut at 20480 bytes, never inside a
    character: the URL takes one answer), a template card as itself.
    """
    from .channels.aibot import AibotChannel

    reply = _joined(reply)
    url = getattr(message, "response_url", "")
    if reply is None:
        return []
    if not url:
        raise ValueError(f"{message.type} from {message.from_user} has no response_url: its late reply cannot be sent")
    text = getattr(reply, "content", None)
    if isinstance(reply, (TextReply, MarkdownReply)) and text is not None:
        head, lost = cut_utf8(text, RESPONSE_URL_MARKDOWN_LIMIT)
        if lost:
            log.warning("[%s] response_url takes %d bytes: %d characters of the reply to %s are not sent",
                        endpoint.section, RESPONSE_URL_MARKDOWN_LIMIT, len(lost), message.from_user)
        reply = MarkdownReply(head)
    return [_post_retrying(url, AibotChannel.push_body(reply))]


def send_via_long_connection(endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None = None) -> list[dict]:
    """Push ``reply`` as frames on the AI bot's long connection (:mod:`wechatbot.longconn.push`).

    The holder of the connection retries and reports them (they are written down in the store).
    Imported on first use, so that hosts without a long connection never load websockets.
    """
    from .longconn.push import send_via_long_connection as send

    return send(endpoint, reply, message, plugin)


def send_via_webhook(endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None = None) -> list[dict]:
    """Push ``reply`` through the group robot callback's ``WebhookUrl``; long texts in parts."""
    from .channels.group_robot import GroupRobotChannel

    reply = _joined(reply)
    url = getattr(message, "webhook_url", "").strip()
    if reply is None:
        return []
    if not url:
        raise ValueError(f"{message.type} from {message.from_user} has no WebhookUrl: its late reply cannot be sent")
    return [_post_retrying(url, body) for body in GroupRobotChannel.push_bodies(reply)]


def send_to_targets(endpoint: Endpoint, reply: Reply, targets: Iterable[Target]) -> int:
    """Send ``reply`` to every target (a scheduled push); returns how many API calls it took.

    Users, departments and tags go in one ``message/send`` (the endpoint's
    app API), each app chat through ``appchat/send``, each group robot through
    its webhook. A target the endpoint cannot reach is a clear error.
    """
    from .api import webhook_send

    api = (lambda: endpoint.api) if endpoint.config.secret else None
    body = reply.to_send_body()
    groups: dict[str, list[str]] = {"user": [], "department": [], "tag": []}
    calls = 0
    for target in targets:
        if target.kind in groups:
            groups[target.kind].append(target.value)
        elif target.kind == "webhook":
            webhook_send(target.value, body, endpoint.config.api_base)
            calls += 1
        else:
            if api is None:
                raise ValueError(f"push to {target} needs the app API (secret) on the endpoint")
            api().post("appchat/send", {"chatid": target.value, **body})
            calls += 1
    if any(groups.values()):
        if api is None:
            raise ValueError("pushes to users, departments and tags need the app API (secret) on the endpoint")
        msgtype = body.pop("msgtype")
        api().send(msgtype, body[msgtype], touser=groups["user"] or None, toparty=groups["department"] or None,
                   totag=groups["tag"] or None)
        calls += 1
    return calls


#: How each ``Channel.push_via`` name pushes a reply.
SENDERS: dict[str, Sender] = {
    "message_send": send_via_message_api,
    "aibot_ws": send_via_long_connection,
    "response_url": send_via_response_url,
    "webhook": send_via_webhook,
}


class Outbox:
    """Pushes replies now (:meth:`push`) or off the request thread (:meth:`push_soon`).

    A push that fails for a passing reason (network, HTTP 5xx, WeCom busy,
    rate limits) is tried again as a durable job, after pauses that grow from
    ``retry_base`` seconds, for up to ``retry_for`` seconds; one that fails
    for good, or cannot be made at all (a message without ``response_url`` or
    ``WebhookUrl``, a reply the channel cannot push), is logged once with its
    hint, counted (``wechatbot_pushes{outcome="failed"}``) and reported to the
    plugins' ``plugin_error`` hook (hook name ``push``).
    """

    def __init__(self, pool: BoundedPool, jobs: Jobs | None = None, retry_for: float = 600.0,
                 retry_base: float = 5.0) -> None:
        self.pool = pool
        self.jobs = jobs
        self.retry_for = retry_for
        self.retry_base = retry_base
        self.trouble = PushTrouble()

    def push(self, endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None = None) -> list | None:
        """Send ``reply`` to the sender of ``message`` now; the API's answers, or None when it failed.

        A failure is not raised: it is retried later or reported (see the class).
        """
        return self._attempt(endpoint, reply, message, plugin, attempt=1, first_try=time.time())

    def retry_push(self, endpoint: Endpoint, record: dict) -> None:
        """Run a durable push job (``kind = "push"``): one more attempt at a failed push."""
        reply, message = decode(record["reply"]), decode(record["message"])
        self._attempt(endpoint, reply, message, record.get("plugin"), record["attempt"] + 1, record["first_try"])

    def _attempt(self, endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None, attempt: int,
                 first_try: float) -> list | None:
        from .api.hints import WeComError  # the API client (requests) loads with the first push

        began = self.trouble.now()
        try:
            sent = SENDERS[endpoint.channel.push_via](endpoint, reply, message, plugin)
        except (WeComError, ValueError) as exc:  # ValueError: no URL to push to, or no form for the channel
            self._failed(endpoint, reply, message, plugin, attempt, first_try, exc, began)
            return None
        metrics.pushed(endpoint.section, ok=True)
        self.trouble.succeeded(endpoint.section, began)
        log.info("[%s] pushed %s reply to %s%s", endpoint.section, reply.msg_type, message.from_user,
                 f" (attempt {attempt})" if attempt > 1 else "")
        return sent

    def push_to(self, endpoint: Endpoint, reply: Reply, targets: Iterable[Target]) -> None:
        """Send ``reply`` to users, departments, tags, app chats or group robots (a scheduled push)."""
        targets = list(targets)
        try:
            send_to_targets(endpoint, reply, targets)
        except Exception:
            metrics.pushed(endpoint.section, ok=False)
            raise
        metrics.pushed(endpoint.section, ok=True)
        log.info("[%s] pushed %s to %s", endpoint.section, reply.msg_type, ", ".join(str(t) for t in targets))

    def _failed(self, endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None, attempt: int,
                first_try: float, exc: WeComError | ValueError, began: float) -> None:
        from .api.hints import is_transient

        delay = min(self.retry_base * 2 ** (attempt - 1), MAX_RETRY_PAUSE)
        if is_transient(exc) and self.jobs is not None and time.time() + delay - first_try <= self.retry_for:
            try:
                record = {"kind": "push", "endpoint": endpoint.name, "plugin": plugin, "attempt": attempt,
                          "first_try": first_try, "reply": encode(reply), "message": encode(message)}
                json.dumps(record)
            except (TypeError, ValueError):
                record = None  # a reply this process cannot write down: reported below
            if record is not None:
                self.jobs.submit_later(record, delay)
                metrics.push_retried(endpoint.section)
                self.trouble.failed(endpoint.section, exc, self.retry_for, began)
                log.debug("[%s] %s reply to %s not pushed (%s); trying again in %.0f s (attempt %d)",
                          endpoint.section, reply.msg_type, message.from_user, exc, delay, attempt + 1)
                return
        metrics.pushed(endpoint.section, ok=False)
        gave_up = f" after {attempt} attempts over {time.time() - first_try:.0f} s" if is_transient(exc) else ""
        log.error("[%s] %s reply to %s could not be pushed%s: %s", endpoint.section, reply.msg_type,
                  message.from_user, gave_up, exc)
        endpoint.notify("plugin_error", plugin_name=plugin or "wechatbot", hook_name="push", exception=exc, message=message)

    def push_soon(self, endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None = None) -> None:
        """Push ``reply`` from the pool, without holding up the HTTP answer."""
        future = self.pool.submit(self._push_logged, endpoint, reply, message, plugin)
        if future is None:
            metrics.pool_full(endpoint.section)
            log.error("[%s] plugin pool full: %s reply to %s not pushed", endpoint.section, reply.msg_type, message.from_user)

    def _push_logged(self, endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None = None) -> None:
        try:
            self.push(endpoint, reply, message, plugin)
        except Exception:
            log.exception("[%s] %s reply to %s could not be pushed", endpoint.section, reply.msg_type, message.from_user)


# A reply and its message written down for a durable push job: dataclasses of
# wechatbot's own modules, field by field, and nothing else (no pickle).

def encode(value: Any) -> Any:
    """``value`` as JSON-ready data; wechatbot dataclasses keep their class name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}}
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    return value


def decode(data: Any) -> Any:
    """The value :func:`encode` wrote; only dataclasses from ``wechatbot`` modules are rebuilt."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    values = {key: decode(item) for key, item in data.items() if key != "__dataclass__"}
    target = data.get("__dataclass__")
    if target is None:
        return values
    module, _, name = str(target).partition(":")
    if module != "wechatbot" and not module.startswith("wechatbot."):
        raise ValueError(f"a push job names {target!r}, which is not one of wechatbot's classes")
    cls: Any = importlib.import_module(module)
    for part in name.split("."):
        cls = getattr(cls, part)
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"a push job names {target!r}, which is not a dataclass")
    return cls(**values)
