"""The self-built app channel (自建应用, ``type = app``): XML messages, XML passive replies.

WeCom seals XML in an XML envelope (a JSON envelope also arrives from some
set-ups; the answer then goes back in JSON). A passive answer carries one
reply of at most 2048 bytes of text or 8 articles, and only to messages and
the events that show one; anything else is pushed through ``message/send``.
"""
from __future__ import annotations

from ..wecom.callbacks import parse_app_callback
from ..wecom.messages import Message
from ..wecom.replies import Reply
from .base import Channel


class AppChannel(Channel):
    """``[wecom] type = app``."""

    type = "app"
    envelope = None
    push_via = "message_send"

    def parse(self, plaintext: str) -> Message:
        # Never raises: a suite's InfoType callback is a SuiteEvent, anything unreadable an UnknownCallback.
        return parse_app_callback(plaintext)

    def dump(self, message: Message) -> str:
        import xmltodict  # only deferred jobs need it: kept out of the workers' memory until then

        return xmltodict.unparse({"xml": message.raw}, full_document=False)

    def can_answer_passively(self, reply: Reply, message: Message) -> bool:
        return reply.fits_passive and message.accepts_passive_reply

    def render_passive(self, reply: Reply, message: Message, now: int) -> str:
        return reply.to_xml(to_user=message.from_user, from_user=message.to_user, create_time=now)
