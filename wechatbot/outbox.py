"""The only code that sends replies: everything a passive answer does not carry.

A channel names its way of pushing (``Channel.push_via``); :data:`SENDERS`
maps that name to the function that does it. Today that is the app's
``message/send`` (long texts in parts, template-card updates to their own
API); each new way is one more function in the table.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from . import metrics
from .longconn.push import send_via_long_connection
from .pool import BoundedPool
from .wecom.messages import Message
from .wecom.replies import Reply, TextReply

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


#: How each ``Channel.push_via`` name pushes a reply.
SENDERS: dict[str, Sender] = {
    "message_send": send_via_message_api,
    "aibot_ws": send_via_long_connection,
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
