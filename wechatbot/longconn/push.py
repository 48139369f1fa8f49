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


def send_via_long_connection(endpoint: Endpoint, reply: Reply, message: Message) -> list[dict]:
    """Push ``reply`` to the conversation of ``message`` as ``aibot_send_msg`` frames.

    The frames go into the bot's outbox in the store; the process holding the
    connection sends them. Returns the frames.
    """
    frames = push_frames(reply, message)
    for frame in frames:
        protocol.check_reply(frame)
        hand_over(endpoint.store, endpoint.config.bot_id, frame, conversation(message))
    return frames
