"""Typed AI bot (智能机器人) callbacks, built from the decrypted JSON (D:100719, D:101027).

The AI bot sends every message and event as a small JSON object: ``msgid``,
``aibotid``, ``chatid`` (groups only), ``chattype`` (single or group),
``from.userid`` (plus ``from.corpid`` for bots outside the corp),
``response_url`` and ``msgtype`` with a body of that name. This module turns it
into the same classes an app's XML becomes (:class:`~.messages.TextMessage`,
:class:`~.messages.Event`, …), each also an :class:`AibotCallback` carrying the
bot's own fields, so that a plugin written for apps answers the bot unchanged.

:func:`message_from_json` is a pure function of the parsed dict: the HTTP
callback and the WebSocket long connection read frames with it alike. Anything
it does not know (a future ``msgtype``, a new event) still becomes a
:class:`~.messages.Message` or :class:`~.messages.Event` with everything in
``raw``: a callback that decrypted is never refused for its content.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .messages import (
    Event,
    FileMessage,
    ImageMessage,
    Message,
    MessageParseError,
    SelectedItem,
    TemplateCardEvent,
    TextMessage,
    VideoMessage,
    VoiceMessage,
)

__all__ = [
    "AibotCallback",
    "Quote",
    "MixedItem",
    "AibotTextMessage",
    "AibotImageMessage",
    "AibotMixedMessage",
    "AibotVoiceMessage",
    "AibotFileMessage",
    "AibotVideoMessage",
    "AibotMessage",
    "StreamRefresh",
    "AibotEvent",
    "EnterChatEvent",
    "AibotTemplateCardEvent",
    "FeedbackEvent",
    "message_from_json",
    "parse_aibot",
    "split_mention",
]


def _str(d: Any, key: str) -> str:
    value = d.get(key) if isinstance(d, dict) else None
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _dict(d: Any, key: str) -> dict:
    value = d.get(key) if isinstance(d, dict) else None
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _int(d: Any, key: str) -> int | None:
    value = d.get(key) if isinstance(d, dict) else None
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        return None


def _reason(value: Any) -> int | None:
    """One inaccurate-reason code: a small non-negative integer, or a string of ASCII digits ("²" is a digit too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**9 else None
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None


# A group message starts with the bot's mention: "@RobotA hello". WeCom puts a
# space (often U+2005, a four-per-em space) after the name.
_LEADING_MENTION = re.compile(r"\A\s*@(\S+?)[\s\u2005]+", re.UNICODE)


def split_mention(text: str) -> tuple[str | None, str]:
    """``(name, rest)``: the leading ``@name`` of a group text and the text after it.

    ``name`` is None when the text does not start with a mention (then
    ``rest`` is the text unchanged). Only the first mention is taken: it is
    the one WeCom puts there for the bot; later ones are the user's.
    """
    match = _LEADING_MENTION.match(text)
    if not match or not text[match.end():].strip():
        return None, text
    return match.group(1), text[match.end():]


@dataclass
class Quote:
    """The message a user quoted: its type and, when it has them, text or URL."""

    type: str = ""
    content: str = ""
    url: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class MixedItem:
    """One part of a mixed (图文混排) message: ``type`` "text" (content) or "image" (url)."""

    type: str = ""
    content: str = ""
    url: str = ""


@dataclass
class AibotCallback:
    """The fields every AI bot callback carries, beside the app message's.

    ``chat_type`` is "single" or "group"; ``chat_id`` is set in groups only.
    ``response_url`` (one use, valid 1 hour, plain JSON) takes one late
    answer; ``from_corp_id`` is set for bots used outside their own corp.
    """

    aibot_id: str = ""
    chat_id: str = ""
    chat_type: str = ""
    response_url: str = ""
    from_corp_id: str = ""

    channel: ClassVar[str] = "aibot"

    @property
    def is_group(self) -> bool:
        """Whether this came from a group chat (the bot was @-mentioned)."""
        return self.chat_type == "group"


def _quote(raw: dict) -> Quote | None:
    quote = raw.get("quote")
    if not isinstance(quote, dict):
        return None
    kind = _str(quote, "msgtype")
    body = _dict(quote, kind)
    content = _str(body, "content")
    if kind == "mixed":
        content = "\n".join(i.content for i in _mixed_items(body) if i.content)
    return Quote(type=kind, content=content, url=_str(body, "url"), raw=quote)


def _mixed_items(body: dict) -> list[MixedItem]:
    items = []
    for item in _list(body.get("msg_item")):
        if not isinstance(item, dict):
            continue
        kind = _str(item, "msgtype")
        part = _dict(item, kind)
        items.append(MixedItem(type=kind, content=_str(part, "content"), url=_str(part, "url")))
    return items


@dataclass
class AibotTextMessage(TextMessage, AibotCallback):
    """A text. In a group ``content`` is the text after the bot's leading
    ``@name`` (kept in ``mention``); ``raw_content`` is the text as sent."""

    quote: Quote | None = None
    mention: str | None = None
    raw_content: str = ""


@dataclass
class AibotImageMessage(ImageMessage, AibotCallback):
    """An image (single chats only). ``url`` points to an encrypted file that
    stays valid for 5 minutes: fetch it with ``context.download_bot_file``.
    ``pic_url`` is the same URL, for plugins written for apps. On the long
    connection ``aeskey`` is the file's own key (empty in callback mode, where
    the bot's EncodingAESKey decrypts it)."""

    url: str = ""
    aeskey: str = ""


@dataclass
class AibotMixedMessage(Message, AibotCallback):
    """Text and images mixed (图文混排): ``items`` in order; ``content`` the
    texts joined by newlines (the leading ``@name`` removed in groups)."""

    type: str = "mixed"
    items: list[MixedItem] = field(default_factory=list)
    content: str = ""
    quote: Quote | None = None
    mention: str | None = None

    @property
    def image_urls(self) -> list[str]:
        """The URLs of the images, in order."""
        return [item.url for item in self.items if item.type == "image" and item.url]


@dataclass
class AibotVoiceMessage(VoiceMessage, AibotCallback):
    """A voice message, already turned into text by WeCom: ``content``."""

    content: str = ""


@dataclass
class AibotFileMessage(FileMessage, AibotCallback):
    """A file (single chats, at most 100 MB); ``url`` is encrypted, valid 5 minutes
    (``aeskey``: its own key on the long connection)."""

    url: str = ""
    aeskey: str = ""


@dataclass
class AibotVideoMessage(VideoMessage, AibotCallback):
    """A video (single chats); ``url`` is encrypted, valid 5 minutes
    (``aeskey``: its own key on the long connection)."""

    url: str = ""
    aeskey: str = ""


@dataclass
class AibotMessage(Message, AibotCallback):
    """An AI bot message of a type this module does not model; all of it is in ``raw``."""


@dataclass
class StreamRefresh(Message, AibotCallback):
    """WeCom asking for the current text of a stream the host started (``msgtype: stream``)."""

    type: str = "stream"
    stream_id: str = ""
    is_stream_refresh: ClassVar[bool] = True


@dataclass
class AibotEvent(Event, AibotCallback):
    """An AI bot event; also what an unknown ``eventtype`` becomes. ``event``
    is the eventtype; ``detail`` its own object (``event.<eventtype>``)."""

    detail: dict = field(default_factory=dict, repr=False)


@dataclass
class EnterChatEvent(AibotEvent):
    """The user opened the single chat for the first time today. Answer with
    a text or a template card; without an answer none comes again that day."""

    event: str = "enter_chat"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class AibotTemplateCardEvent(TemplateCardEvent, AibotCallback):
    """A template card button, vote or selection (sent once; answer within 5 s
    with ``TemplateCardUpdateReply`` carrying the same ``task_id``)."""

    detail: dict = field(default_factory=dict, repr=False)


@dataclass
class FeedbackEvent(AibotEvent):
    """The user rated an answer. ``feedback_id`` is the id the host set on the
    stream; ``feedback_type`` 1 accurate, 2 inaccurate, 3 cancelled;
    ``reasons`` the inaccurate reasons (1–4). Answered empty: WeCom accepts
    nothing else."""

    event: str = "feedback_event"
    feedback_id: str = ""
    feedback_type: int | None = None
    content: str = ""
    reasons: list[int] = field(default_factory=list)
    accepts_passive_reply: ClassVar[bool] = False


def _common(raw: dict) -> dict[str, Any]:
    sender = _dict(raw, "from")
    return {
        "type": _str(raw, "msgtype"),
        "from_user": _str(sender, "userid"),
        "from_corp_id": _str(sender, "corpid"),
        "to_user": _str(raw, "aibotid"),
        "create_time": _int(raw, "create_time") or 0,
        "msg_id": _str(raw, "msgid") or None,
        "aibot_id": _str(raw, "aibotid"),
        "chat_id": _str(raw, "chatid"),
        "chat_type": _str(raw, "chattype"),
        "response_url": _str(raw, "response_url"),
        "raw": raw,
    }


def _text_fields(text: str, chat_type: str) -> tuple[str, str | None]:
    if chat_type != "group":
        return text, None
    mention, rest = split_mention(text)
    return rest, mention


def _event(common: dict[str, Any], raw: dict) -> Message:
    body = _dict(raw, "event")
    kind = _str(body, "eventtype")
    detail = _dict(body, kind)
    common = {**common, "event": kind.lower()}
    if kind == "template_card_event":
        items = []
        selected = _dict(detail, "selected_items")
        for item in _list(selected.get("selected_item")):
            if isinstance(item, dict):
                ids = _list(_dict(item, "option_ids").get("option_id"))
                items.append(SelectedItem(question_key=_str(item, "question_key"), option_ids=[str(i) for i in ids]))
        return AibotTemplateCardEvent(
            **common, event_key=_str(detail, "event_key") or None, task_id=_str(detail, "task_id"),
            card_type=_str(detail, "card_type"), selected_items=items, detail=detail,
        )
    if kind == "feedback_event":
        reasons = [r for r in map(_reason, _list(detail.get("inaccurate_reason_list"))) if r is not None]
        return FeedbackEvent(
            **common, detail=detail, feedback_id=_str(detail, "id"), feedback_type=_int(detail, "type"),
            content=_str(detail, "content"), reasons=reasons,
        )
    if kind == "enter_chat":
        return EnterChatEvent(**common, detail=detail)
    return AibotEvent(**common, detail=detail)


def message_from_json(raw: dict) -> Message:
    """Build the typed message from a decrypted AI bot callback (a dict).

    Pure: the same dict always gives the same message. Unknown message types
    become :class:`AibotMessage`, unknown events :class:`AibotEvent`; ``raw``
    always holds the whole dict. Raises :class:`MessageParseError` only when
    ``raw`` is not a dict.
    """
    if not isinstance(raw, dict):
        raise MessageParseError(f"an AI bot callback must be a JSON object, not {type(raw).__name__}")
    common = _common(raw)
    kind = common["type"]
    body = _dict(raw, kind)
    if kind == "event":
        return _event(common, raw)
    if kind == "text":
        text = _str(body, "content")
        content, mention = _text_fields(text, common["chat_type"])
        return AibotTextMessage(**common, content=content, raw_content=text, mention=mention, quote=_quote(raw))
    if kind == "image":
        url = _str(body, "url")
        return AibotImageMessage(**common, url=url, pic_url=url, aeskey=_str(body, "aeskey"))
    if kind == "mixed":
        items = _mixed_items(body)
        text = "\n".join(item.content for item in items if item.type == "text" and item.content)
        content, mention = _text_fields(text, common["chat_type"])
        return AibotMixedMessage(**common, items=items, content=content, mention=mention, quote=_quote(raw))
    if kind == "voice":
        return AibotVoiceMessage(**common, content=_str(body, "content"))
    if kind == "file":
        return AibotFileMessage(**common, url=_str(body, "url"), aeskey=_str(body, "aeskey"))
    if kind == "video":
        return AibotVideoMessage(**common, url=_str(body, "url"), aeskey=_str(body, "aeskey"))
    if kind == "stream":
        return StreamRefresh(**common, stream_id=_str(body, "id"))
    return AibotMessage(**common)


def parse_aibot(plaintext: str | bytes) -> Message:
    """Parse a decrypted AI bot callback (JSON text) into a typed message.

    Raises :class:`MessageParseError` when the text is not a JSON object.
    """
    try:
        raw = json.loads(plaintext)
    except (ValueError, RecursionError) as exc:
        raise MessageParseError(f"AI bot callback is not valid JSON: {exc}") from None
    return message_from_json(raw)
