"""Plugins' replies as long-connection frames: a pure function of the reply and the message.

A reply to a user's message goes back as ``aibot_respond_msg`` on the
callback's ``req_id``; a text becomes a finished stream (the bot has no plain
text reply), text beyond a stream's 20480 bytes follows as markdown pushes.
``enter_chat`` is answered with ``aibot_respond_welcome_msg`` and a card click
with ``aibot_respond_update_msg``. Anything pushed later, or to an event that
takes no answer of its own, goes as ``aibot_send_msg`` to the conversation.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..streams import fit_stream, new_stream_id
from ..wecom.bot_replies import StreamReply, StreamWithTemplateCardReply, TemplateCardReply, cut_utf8
from ..wecom.limits import RESPONSE_URL_MARKDOWN_LIMIT
from ..wecom.messages import Message
from ..wecom.replies import ChunkedReply, MarkdownReply, Reply, ReplyFormError, TemplateCardUpdateReply, TextReply
from . import protocol

Frame = dict[str, Any]


def conversation(message: Message) -> str:
    """The conversation of a message: the group's chat id, else the sender."""
    return getattr(message, "chat_id", "") or message.from_user


def stream_body(stream_id: str, content: str, finish: bool) -> dict[str, Any]:
    """The body of one stream frame: the whole text so far."""
    return {"msgtype": "stream", "stream": {"id": stream_id, "content": content, "finish": finish}}


def push_frames(reply: Reply, message: Message) -> list[Frame]:
    """``aibot_send_msg`` frames that push ``reply`` to the conversation of ``message``."""
    chat_id = conversation(message)
    return [protocol.frame(protocol.SEND, protocol.new_req_id(protocol.SEND), {"chatid": chat_id, **body})
            for body in _push_bodies(reply)]


def _push_bodies(reply: Reply) -> list[dict[str, Any]]:
    if isinstance(reply, ChunkedReply):
        joined = reply.joined()
        return _push_bodies(joined) if joined is not None else []
    if isinstance(reply, (TextReply, MarkdownReply, StreamReply, StreamWithTemplateCardReply)):
        return _markdown_parts(reply.content)
    if isinstance(reply, TemplateCardReply):
        return [reply.to_json()]
    body = _media_body(reply)
    if body is None:
        raise ReplyFormError(f"the AI bot cannot show a {type(reply).__name__} (msgtype {reply.msg_type!r})")
    return [body]


def _markdown_parts(text: str) -> list[dict[str, Any]]:
    parts = []
    while text:
        head, text = cut_utf8(text, RESPONSE_URL_MARKDOWN_LIMIT)
        parts.append({"msgtype": "markdown", "markdown": {"content": head}})
    return parts


def _media_body(reply: Reply) -> dict[str, Any] | None:
    """An image, voice or video reply by media_id, the shape both the app and the bot use."""
    if reply.msg_type not in ("image", "voice", "video", "file"):
        return None
    try:
        return reply.to_send_body()
    except (NotImplementedError, ReplyFormError):
        return None


def reply_frames(reply: Reply, message: Message, req_id: str) -> list[Frame]:
    """The frames that answer ``message`` (which arrived with ``req_id``) with ``reply``.

    A :class:`ChunkedReply` is not handled here: it streams as it is written.
    """
    if message.is_event:
        return _event_frames(reply, message, req_id)
    if isinstance(reply, TextReply):
        content, rest = fit_stream(reply.content)
        frames = [protocol.frame(protocol.RESPOND, req_id, stream_body(new_stream_id(), content, True))]
        return frames + (push_frames(TextReply(rest), message) if rest else [])
    if isinstance(reply, (StreamReply, StreamWithTemplateCardReply)):
        if not reply.stream_id:
            reply = replace(reply, stream_id=new_stream_id())
        return [protocol.frame(protocol.RESPOND, req_id, reply.to_json())]
    if isinstance(reply, MarkdownReply):
        return [protocol.frame(protocol.RESPOND, req_id, {"msgtype": "markdown", "markdown": {"content": reply.content}})]
    if isinstance(reply, TemplateCardReply):
        return [protocol.frame(protocol.RESPOND, req_id, reply.to_json())]
    body = _media_body(reply)
    if body is not None:
        return [protocol.frame(protocol.RESPOND, req_id, body)]
    return push_frames(reply, message)


def _event_frames(reply: Reply, message: Message, req_id: str) -> list[Frame]:
    event = message.event
    if event == "enter_chat" and isinstance(reply, (TextReply, MarkdownReply)):
        return [protocol.frame(protocol.RESPOND_WELCOME, req_id, {"msgtype": "text", "text": {"content": reply.content}})]
    if event == "enter_chat" and isinstance(reply, TemplateCardReply):
        return [protocol.frame(protocol.RESPOND_WELCOME, req_id, reply.to_json())]
    if event == "template_card_event" and isinstance(reply, TemplateCardUpdateReply):
        return [protocol.frame(protocol.RESPOND_UPDATE, req_id, reply.to_aibot_json(getattr(message, "task_id", "")))]
    if event == "feedback_event":
        return []  # WeCom takes no answer to a rating
    return push_frames(reply, message)
