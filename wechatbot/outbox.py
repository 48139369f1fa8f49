"""The only code that sends replies: everything a passive answer does not carry.

A channel names its way of pushing (``Channel.push_via``); :data:`SENDERS`
maps that name to the function that does it: the app's ``message/send``
(long texts in parts, template-card updates to their own API), the AI bot
message's one-use ``response_url`` and the group robot's ``WebhookUrl``;
each new way is one more function in the table.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from . import metrics
from .longconn.push import send_via_long_connection
from .pool import BoundedPool
from .wecom.messages import Message
from .api.bot_push import post_to_url
from .api.hints import WeComNetworkError
from .wecom.bot_replies import cut_utf8
from .wecom.limits import RESPONSE_URL_MARKDOWN_LIMIT
from .wecom.replies import ChunkedReply, MarkdownReply, Reply, TextReply

if TYPE_CHECKING:
    from .endpoint import Endpoint

log = logging.getLogger("wechatbot.outbox")

Sender = Callable[["Endpoint", Reply, Message], list]


def send_via_message_api(endpoint: Endpoint, reply: Reply, message: Message) -> list[dict]:
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
    for attempt in range(attempts):
        try:
            return post_to_url(url, body)
        except WeComNetworkError:
            if attempt == attempts - 1:
                raise
            time.sleep(pause * 2 ** attempt)
    raise AssertionError("unreachable")


def send_via_response_url(endpoint: Endpoint, reply: Reply, message: Message) -> list[dict]:
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


def send_via_webhook(endpoint: Endpoint, reply: Reply, message: Message) -> list[dict]:
    """Push ``reply`` through the group robot callback's ``WebhookUrl``; long texts in parts."""
    from .channels.group_robot import GroupRobotChannel

    reply = _joined(reply)
    url = getattr(message, "webhook_url", "").strip()
    if reply is None:
        return []
    if not url:
        raise ValueError(f"{message.type} from {message.from_user} has no WebhookUrl: its late reply cannot be sent")
    return [_post_retrying(url, body) for body in GroupRobotChannel.push_bodies(reply)]


#: How each ``Channel.push_via`` name pushes a reply.
SENDERS: dict[str, Sender] = {
    "message_send": send_via_message_api,
    "aibot_ws": send_via_long_connection,
    "response_url": send_via_response_url,
    "webhook": send_via_webhook,
}


class Outbox:
    """Pushes replies now (:meth:`push`) or off the request thread (:meth:`push_soon`)."""

    def __init__(self, pool: BoundedPool) -> None:
        self.pool = pool

    def push(self, endpoint: Endpoint, reply: Reply, message: Message) -> list[dict]:
        """Send ``reply`` to the sender of ``message`` now; return the API's answers."""
        try:
            sent = SENDERS[endpoint.channel.push_via](endpoint, reply, message)
        except Exception:
            metrics.pushed(endpoint.section, ok=False)
            raise
        metrics.pushed(endpoint.section, ok=True)
        log.info("[%s] pushed %s reply to %s", endpoint.section, reply.msg_type, message.from_user)
        return sent

    def push_soon(self, endpoint: Endpoint, reply: Reply, message: Message) -> None:
        """Push ``reply`` from the pool, without holding up the HTTP answer."""
        future = self.pool.submit(self._push_logged, endpoint, reply, message)
        if future is None:
            metrics.pool_full(endpoint.section)
            log.error("[%s] plugin pool full: %s reply to %s not pushed", endpoint.section, reply.msg_type, message.from_user)

    def _push_logged(self, endpoint: Endpoint, reply: Reply, message: Message) -> None:
        try:
            self.push(endpoint, reply, message)
        except Exception:
            log.exception("[%s] %s reply to %s could not be pushed", endpoint.section, reply.msg_type, message.from_user)
