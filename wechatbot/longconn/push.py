"""The outbox's way to push a reply over the long connection, from any process."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..wecom.messages import Message
from ..wecom.replies import Reply
from . import protocol
from .holder import hand_over
from .render import conversation, push_frames

if TYPE_CHECKING:
    from ..endpoint import Endpoint


def send_via_long_connection(endpoint: Endpoint, reply: Reply, message: Message, plugin: str | None = None) -> list[dict]:
    """Push ``reply`` to the conversation of ``message`` as ``aibot_send_msg`` frames.

    The frames are written down in the store and go into the bot's outbox; the
    process holding the connection sends them, tries them again while WeCom is
    busy or the connection is down (for ``push_retry_for``), and reports those
    that fail for good to ``plugin_error`` on behalf of ``plugin``. Returns the frames.
    """
    frames = push_frames(reply, message)
    meta = {"plugin": plugin, "body": message.raw}
    for frame in frames:
        protocol.check_reply(frame)
        hand_over(endpoint.store, endpoint.config.bot_id, frame, conversation(message), meta,
                  endpoint.host_config.push_retry_for)
    return frames
