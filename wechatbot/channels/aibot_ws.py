"""The AI bot on its long connection (``type = aibot``, ``mode = websocket``): JSON frames, no HTTP answer.

Its messages are the AI bot's JSON, read exactly as its HTTP callbacks are
(:class:`~.aibot.AibotChannel`). Nothing is ever answered passively (there is
no HTTP request): every reply leaves as a frame, and the outbox's pushes go
as ``aibot_send_msg`` through whichever process holds the connection.
"""
from __future__ import annotations

from ..wecom.messages import Message
from ..wecom.replies import Reply, ReplyFormError
from .aibot import AibotChannel


class AibotWebSocketChannel(AibotChannel):
    """``[wecom] type = aibot`` with ``mode = websocket``."""

    push_via = "aibot_ws"

    def can_answer_passively(self, reply: Reply, message: Message) -> bool:
        return False

    def render_passive(self, reply: Reply, message: Message, now: int) -> str:
        raise ReplyFormError("a long-connection bot has no passive answer: its replies go as frames")
