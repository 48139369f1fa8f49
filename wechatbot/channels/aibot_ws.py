"""The AI bot on its long connection (``type = aibot``, ``mode = websocket``): JSON frames, no HTTP answer.

Its messages are the AI bot's JSON, read by the same parser as its HTTP
callbacks. Nothing is ever answered passively (there is no HTTP request):
every reply leaves as a frame, and the outbox's pushes go as
``aibot_send_msg`` through whichever process holds the connection.
"""
from __future__ import annotations

import json

from ..wecom.aibot import parse_aibot
from ..wecom.messages import Message
from ..wecom.replies import Reply, ReplyFormError
from .base import Channel


class AibotWebSocketChannel(Channel):
    """``[wecom] type = aibot`` with ``mode = websocket``."""

    type = "aibot"
    envelope = "json"
    push_via = "aibot_ws"
    #: An iterator reply streams, frame by frame.
    streams = True

    def parse(self, plaintext: str) -> Message:
        return parse_aibot(plaintext)

    def dump(self, message: Message) -> str:
        return json.dumps(message.raw, ensure_ascii=False)

    def can_answer_passively(self, reply: Reply, message: Message) -> bool:
        return False

    def render_passive(self, reply: Reply, message: Message, now: int) -> str:
        raise ReplyFormError("a long-connection bot has no passive answer: its replies go as frames")
