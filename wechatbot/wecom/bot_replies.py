"""Replies for the AI bot (D:101031, D:101032, D:101138) and the group robot (D:99399).

The AI bot answers in plaintext JSON: a ``stream`` (the only passive text it
allows for a user's message), a ``template_card``, both together
(``stream_with_template_card``), a ``text`` or card for ``enter_chat``, and
``update_template_card`` for a card click. A late answer goes once through the
message's ``response_url`` as ``markdown``. The group robot answers in XML:
text with mentions, or markdown; late answers go through its webhook.

Each reply checks WeCom's documented limits when it is built or rendered and
raises :class:`BotReplyError` naming the limit, instead of letting WeCom cut
or refuse it. Texts are measured in UTF-8 bytes and never cut inside a
character (:func:`cut_utf8`). ``replies`` re-exports everything here.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import WechatbotError
from .limits import (
    FEEDBACK_ID_LIMIT,
    GROUP_MARKDOWN_LIMIT,
    GROUP_TEXT_LIMIT,
    RESPONSE_URL_MARKDOWN_LIMIT,
    STREAM_CONTENT_LIMIT,
    STREAM_IMAGE_BYTES,
    STREAM_IMAGE_LIMIT,
)
from .replies import Reply, ReplyFormError, _cdata

__all__ = [
    "STREAM_CONTENT_LIMIT",
    "STREAM_IMAGE_LIMIT",
    "STREAM_IMAGE_BYTES",
    "FEEDBACK_ID_LIMIT",
    "RESPONSE_URL_MARKDOWN_LIMIT",
    "GROUP_TEXT_LIMIT",
    "GROUP_MARKDOWN_LIMIT",
    "BotReplyError",
    "cut_utf8",
    "StreamImage",
    "StreamReply",
    "TemplateCardReply",
    "StreamWithTemplateCardReply",
    "GroupTextReply",
    "check_template_card",
    "markdown_body",
    "group_markdown_xml",
]

# Template card limits (D:101032).
CARD_TYPES = ("text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction")
_CARD_LIST_LIMITS = {
    "button_list": 6,
    "horizontal_content_list": 6,
    "jump_list": 3,
    "vertical_content_list": 4,
    "select_list": 3,
}
_KEY_FIELDS = ("task_id", "question_key", "key", "event_key")
_KEY_LIMIT = 1024
_OPTION_LIMIT = {"vote_interaction": 20, "multiple_interaction": 10}


class BotReplyError(WechatbotError, ValueError):
    """A bot reply breaks one of WeCom's documented limits; the message says which."""


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def cut_utf8(text: str, limit: int) -> tuple[str, str]:
    """``(head, rest)`` with ``head + rest == text`` and ``head`` at most ``limit``
    UTF-8 bytes, cut at a character boundary (never inside one)."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, ""
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte: step back to the character's start
        end -= 1
    head = data[:end].decode("utf-8", "surrogatepass")
    return head, text[len(head):]


def _check_bytes(what: str, text: str, limit: int) -> None:
    size = _utf8_len(text)
    if size > limit:
        raise BotReplyError(f"{what} is {size} UTF-8 bytes; WeCom takes at most {limit}")


@dataclass(frozen=True)
class StreamImage:
    """A JPG or PNG shown under a finished stream (given as its bytes)."""

    data: bytes

    def __post_init__(self) -> None:
        if not (self.data.startswith(b"\xff\xd8\xff") or self.data.startswith(b"\x89PNG\r\n\x1a\n")):
            raise BotReplyError("a stream image must be a JPG or PNG file")
        if len(self.data) > STREAM_IMAGE_BYTES:
            raise BotReplyError(f"a stream image is {len(self.data)} bytes; WeCom takes at most {STREAM_IMAGE_BYTES}")

    def to_json(self) -> dict:
        return {
            "msgtype": "image",
            "image": {"base64": base64.b64encode(self.data).decode("ascii"), "md5": hashlib.md5(self.data).hexdigest()},
        }


class _BotOnly(Reply):
    """A reply that only the bots can show: an app pushes it or refuses it."""

    @property
    def fits_passive(self) -> bool:
        return False

    def to_xml(self, to_user: str, from_user: str, create_time: int | None = None) -> str:
        raise ReplyFormError(f"{type(self).__name__} is an AI bot reply; an app cannot show it")

    def to_send_body(self) -> dict:
        raise ReplyFormError(f"{type(self).__name__} is an AI bot reply; message/send cannot carry it")


@dataclass
class StreamReply(_BotOnly):
    """One frame of a stream: the whole text so far (each frame replaces the last).

    ``stream_id`` is chosen by the host on the first frame; ``images`` and a
    ``feedback_id`` may go only where WeCom allows them (images on the
    finishing frame, feedback on the first).
    """

    content: str = ""
    finish: bool = True
    stream_id: str = ""
    images: list[StreamImage] = field(default_factory=list)
    feedback_id: str | None = None
    msg_type: ClassVar[str] = "stream"

    def _stream(self) -> dict:
        if not self.stream_id:
            raise BotReplyError("a stream reply needs its stream id")
        _check_bytes("the stream's content", self.content, STREAM_CONTENT_LIMIT)
        stream: dict[str, Any] = {"id": self.stream_id, "finish": bool(self.finish), "content": self.content}
        if self.images:
            if not self.finish:
                raise BotReplyError("stream images may go only on the frame that finishes the stream")
            if len(self.images) > STREAM_IMAGE_LIMIT:
                raise BotReplyError(f"a stream shows at most {STREAM_IMAGE_LIMIT} images, not {len(self.images)}")
            stream["msg_item"] = [image.to_json() for image in self.images]
        if self.feedback_id:
            _check_bytes("feedback id", self.feedback_id, FEEDBACK_ID_LIMIT)
            stream["feedback"] = {"id": self.feedback_id}
        return stream

    def to_json(self) -> dict:
        """The plaintext JSON reply WeCom reads."""
        return {"msgtype": "stream", "stream": self._stream()}


def check_template_card(card: Any) -> dict:
    """Check a template card against D:101032's limits; return it unchanged.

    Raises :class:`BotReplyError` for an unknown card type, a missing
    required part, too many buttons, options or list entries, or a key over
    1024 bytes.
    """
    if not isinstance(card, dict):
        raise BotReplyError(f"a template card must be a dict, not {type(card).__name__}")
    kind = card.get("card_type")
    if kind not in CARD_TYPES:
        raise BotReplyError(f"template card card_type must be one of {', '.join(CARD_TYPES)}, not {kind!r}")
    if kind == "text_notice" and not card.get("card_action"):
        raise BotReplyError("a text_notice card needs card_action")
    if kind == "news_notice" and not (card.get("card_image") or card.get("image_text_area")):
        raise BotReplyError("a news_notice card needs card_image or image_text_area")
    if kind in ("button_interaction", "vote_interaction", "multiple_interaction") and not card.get("task_id"):
        raise BotReplyError(f"a {kind} card needs a task_id (the click comes back with it)")
    for name, limit in _CARD_LIST_LIMITS.items():
        items = card.get(name)
        if items is not None and (not isinstance(items, list) or len(items) > limit):
            raise BotReplyError(f"template card {name} takes a list of at most {limit} entries")
    option_limit = _OPTION_LIMIT.get(kind)
    if option_limit:
        lists = [card.get("checkbox") or {}] + list(card.get("select_list") or [])
        for holder in lists:
            options = holder.get("option_list") if isinstance(holder, dict) else None
            if options is not None and len(options) > option_limit:
                raise BotReplyError(f"a {kind} card takes at most {option_limit} options per question")
    _check_keys(card)
    return card


def _check_keys(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _KEY_FIELDS and isinstance(item, str):
                _check_bytes(f"template card {key}", item, _KEY_LIMIT)
            _check_keys(item)
    elif isinstance(value, list):
        for item in value:
            _check_keys(item)


@dataclass
class TemplateCardReply(Reply):
    """A template card: for the AI bot (answer to a message or ``enter_chat``,
    or late through ``response_url`` in single chats) and for an app's
    ``message/send``. ``template_card`` is the card as D:101032 shows it."""

    template_card: dict
    msg_type: ClassVar[str] = "template_card"

    def __post_init__(self) -> None:
        check_template_card(self.template_card)

    @property
    def fits_passive(self) -> bool:
        return False  # an app has no passive template card: it is sent instead

    def to_xml(self, to_user: str, from_user: str, create_time: int | None = None) -> str:
        raise ReplyFormError("an app has no passive template card; it goes through message/send")

    def to_send_body(self) -> dict:
        return {"msgtype": "template_card", "template_card": self.template_card}

    def to_json(self) -> dict:
        """The AI bot's plaintext JSON reply (also the body for ``response_url``)."""
        return {"msgtype": "template_card", "template_card": self.template_card}


@dataclass
class StreamWithTemplateCardReply(_BotOnly):
    """A stream and a template card in one answer to a user's message."""

    content: str
    template_card: dict
    finish: bool = True
    stream_id: str = ""
    feedback_id: str | None = None
    msg_type: ClassVar[str] = "stream_with_template_card"

    def __post_init__(self) -> None:
        check_template_card(self.template_card)

    def to_json(self) -> dict:
        stream = StreamReply(self.content, self.finish, self.stream_id, feedback_id=self.feedback_id)._stream()
        return {"msgtype": "stream_with_template_card", "stream": stream, "template_card": self.template_card}


def markdown_body(content: str, feedback_id: str | None = None) -> dict:
    """The body of a markdown answer through ``response_url`` (D:101138)."""
    _check_bytes("a response_url markdown", content, RESPONSE_URL_MARKDOWN_LIMIT)
    markdown: dict[str, Any] = {"content": content}
    if feedback_id:
        _check_bytes("feedback id", feedback_id, FEEDBACK_ID_LIMIT)
        markdown["feedback"] = {"id": feedback_id}
    return {"msgtype": "markdown", "markdown": markdown}


def _xml_list(name: str, items: list[str]) -> str:
    return f"<{name}>" + "".join(f"<Item>{_cdata(i)}</Item>" for i in items) + f"</{name}>" if items else ""


@dataclass
class GroupTextReply(Reply):
    """A group robot text that @-mentions members: ``mentioned_list`` holds
    user ids (``"@all"`` for everyone), ``mentioned_mobile_list`` phone
    numbers. ``visible_to_user`` limits who sees a passive answer."""

    content: str
    mentioned_list: list[str] = field(default_factory=list)
    mentioned_mobile_list: list[str] = field(default_factory=list)
    visible_to_user: list[str] = field(default_factory=list)
    msg_type: ClassVar[str] = "text"
    push_api: ClassVar[str] = "webhook/send"

    def __post_init__(self) -> None:
        if not self.content:
            raise BotReplyError("a group robot text needs content (WeCom refuses an empty one)")
        _check_bytes("a group robot text", self.content, GROUP_TEXT_LIMIT)

    def to_group_xml(self) -> str:
        """The plaintext passive reply of the group robot."""
        visible = f"<VisibleToUser>{_cdata('|'.join(self.visible_to_user))}</VisibleToUser>" if self.visible_to_user else ""
        return (
            "<xml><MsgType>text</MsgType>" + visible + f"<Text><Content>{_cdata(self.content)}</Content>"
            + _xml_list("MentionedList", self.mentioned_list)
            + _xml_list("MentionedMobileList", self.mentioned_mobile_list) + "</Text></xml>"
        )

    def to_webhook_body(self) -> dict:
        """The ``webhook/send`` body."""
        text: dict[str, Any] = {"content": self.content}
        if self.mentioned_list:
            text["mentioned_list"] = list(self.mentioned_list)
        if self.mentioned_mobile_list:
            text["mentioned_mobile_list"] = list(self.mentioned_mobile_list)
        return {"msgtype": "text", "text": text}

    def _xml_body(self) -> str:
        return f"<Content>{_cdata(self.content)}</Content>"

    def to_send_body(self) -> dict:
        return {"msgtype": "text", "text": {"content": self.content}}


def group_markdown_xml(content: str) -> str:
    """The group robot's plaintext passive markdown reply."""
    _check_bytes("a group robot markdown", content, GROUP_MARKDOWN_LIMIT)
    return f"<xml><MsgType>markdown</MsgType><Markdown><Content>{_cdata(content)}</Content></Markdown></xml>"
