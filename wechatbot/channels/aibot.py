"""The AI bot channel (智能机器人, ``type = aibot``): JSON callbacks, JSON answers, streams.

What the AI bot shows in a passive answer (D:101031):

* to a user's message: a ``stream`` (a text or markdown answer is a finished
  stream: the only passive text WeCom allows there), a ``template_card``, or
  both (``stream_with_template_card``); an iterator reply streams;
* to ``enter_chat``: a ``text`` or a ``template_card``;
* to ``template_card_event``: ``update_template_card`` with the card's task id;
* to a refresh poll: the stream's current text (the pipeline answers those);
* to ``feedback_event`` and every other event: nothing.

Anything else goes once through the message's ``response_url`` (one use,
1 hour): a text or markdown as ``markdown``, a card as ``template_card``.
"""
from __future__ import annotations

import json

from ..streams import fit_stream, new_stream_id
from ..wecom.aibot import EnterChatEvent, parse_aibot
from ..wecom.bot_replies import StreamReply, StreamWithTemplateCardReply, TemplateCardReply, markdown_body
from ..wecom.callbacks import parse_or_unknown
from ..wecom.messages import Message, TemplateCardEvent
from ..wecom.replies import MarkdownReply, Reply, ReplyFormError, TemplateCardUpdateReply, TextReply
from .base import Channel

#: Replies whose text a finished stream shows.
_TEXTS = (TextReply, MarkdownReply)


def _text_of(reply: Reply) -> str | None:
    return reply.content if isinstance(reply, _TEXTS) else None


class AibotChannel(Channel):
    """``[wecom] type = aibot``."""

    type = "aibot"
    envelope = "json"
    push_via = "response_url"
    streams = True

    def parse(self, plaintext: str) -> Message:
        return parse_or_unknown(plaintext, parse_aibot)

    def dump(self, message: Message) -> str:
        return json.dumps(message.raw, ensure_ascii=False)

    def can_answer_passively(self, reply: Reply, message: Message) -> bool:
        if message.is_stream_refresh:
            return isinstance(reply, StreamReply)
        if isinstance(message, EnterChatEvent):
            return isinstance(reply, (TextReply, TemplateCardReply))
        if isinstance(message, TemplateCardEvent):
            return isinstance(reply, TemplateCardUpdateReply)
        if message.is_event:
            return False
        return isinstance(reply, (TextReply, MarkdownReply, StreamReply, TemplateCardReply, StreamWithTemplateCardReply))

    def render_passive(self, reply: Reply, message: Message, now: int) -> str:
        return json.dumps(self.passive_json(reply, message), ensure_ascii=False)

    def passive_json(self, reply: Reply, message: Message) -> dict:
        """The plaintext JSON answer for ``reply`` (one ``can_answer_passively`` allows)."""
        if isinstance(message, EnterChatEvent) and isinstance(reply, TextReply):
            return {"msgtype": "text", "text": {"content": reply.content}}
        if isinstance(message, TemplateCardEvent) and isinstance(reply, TemplateCardUpdateReply):
            return reply.to_aibot_json(message.task_id)
        text = _text_of(reply)
        if text is not None:
            # What does not fit goes through response_url (see overflow).
            return StreamReply(fit_stream(text)[0], finish=True, stream_id=new_stream_id()).to_json()
        if isinstance(reply, (StreamReply, StreamWithTemplateCardReply)) and not reply.stream_id:
            reply.stream_id = new_stream_id()
        return reply.to_json()  # type: ignore[attr-defined]

    def overflow(self, reply: Reply) -> str:  # type: ignore[override]
        """The part of a text reply a finished stream cannot show (goes through ``response_url``)."""
        text = _text_of(reply)
        return fit_stream(text)[1] if text is not None else ""

    @staticmethod
    def push_body(reply: Reply) -> dict:
        """The ``response_url`` body for a reply that could not go passively."""
        text = _text_of(reply)
        if text is not None:
            return markdown_body(text)
        if isinstance(reply, TemplateCardReply):
            return reply.to_json()
        if isinstance(reply, (StreamReply, StreamWithTemplateCardReply)):
            return markdown_body(reply.content)
        raise ReplyFormError(f"the AI bot cannot send a {type(reply).__name__} through response_url")
