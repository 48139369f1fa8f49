"""Typed inbound WeCom messages and events, built from the decrypted XML.

WeCom pushes every message and event as a small ``<xml>`` document. This
module turns that document into a dataclass a plugin can match on
(``isinstance(msg, TextMessage)``), while keeping the whole parsed document
in ``raw`` so that nothing WeCom sends is lost: fields this module does not
know about, message types added later and events from other WeCom products
all reach the plugins unchanged, and the host computes its retry dedup key
from ``raw``.

Parsing refuses any DOCTYPE (and so any entity declaration): the plaintext
comes from WeCom after decryption, but a parser that expands entities is a
liability we do not need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar
from xml.parsers import expat

from ..errors import WechatbotError
from .limits import StructureGuard, TooComplex, XML_ILLEGAL_CHARS, count_markup


__all__ = [
    "MessageParseError",
    "MessageRefused",
    "parse_xml",
    "parse_message",
    "message_from_dict",
    "Message",
    "TextMessage",
    "MediaMessage",
    "ImageMessage",
    "VoiceMessage",
    "VideoMessage",
    "FileMessage",
    "LocationMessage",
    "LinkMessage",
    "Event",
    "SubscribeEvent",
    "UnsubscribeEvent",
    "EnterAgentEvent",
    "LocationEvent",
    "ClickEvent",
    "ViewEvent",
    "ViewMiniprogramEvent",
    "ScanCodeEvent",
    "ScanCodePushEvent",
    "ScanCodeWaitMsgEvent",
    "PicEvent",
    "PicSysPhotoEvent",
    "PicPhotoOrAlbumEvent",
    "PicWeixinEvent",
    "LocationSelectEvent",
    "BatchJobResultEvent",
    "ChangeContactEvent",
    "OpenApprovalChangeEvent",
    "TaskCardClickEvent",
    "SelectedItem",
    "TemplateCardEvent",
    "TemplateCardMenuEvent",
]


class MessageParseError(WechatbotError, ValueError):
    """The decrypted plaintext is not a WeCom message we can read."""


class MessageRefused(MessageParseError):
    """The plaintext is hostile (a DOCTYPE, absurd structure): refused, even after it decrypted.

    Every other unreadable plaintext is answered 200 as an unknown callback.
    """


# ---------------------------------------------------------------------------
# XML → dict


# Only the prolog (before the root element) may hold a DOCTYPE; looking there
# alone keeps a user's text such as "<!DOCTYPE html>" inside CDATA legal.
_ROOT_START = re.compile(r"<[A-Za-z_]")
_DOCTYPE = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


def _refuse_doctype(*_args: object) -> None:
    raise MessageRefused("a DOCTYPE is not allowed in a WeCom message")


def _push(item: dict | None, key: str, value: Any) -> dict:
    """Add a child to an element's dict; a repeated name becomes a list."""
    if item is None:
        item = {}
    if key in item:
        existing = item[key]
        if isinstance(existing, list):
            existing.append(value)
        else:
            item[key] = [existing, value]
    else:
        item[key] = value
    return item


def _xml_to_dict(xml: str) -> Any:
    """XML to nested dicts the way xmltodict does it, in one expat pass.

    An element with children becomes a dict, a repeated child a list, text a
    str (kept exactly, whitespace included), an empty element None,
    attributes ``@name`` keys and text beside children ``#text``. The
    newlines between child elements are layout and are dropped. This runs on
    every callback, so it is written out here rather than going through
    xmltodict's general machinery (about three times slower).
    """
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _refuse_doctype
    guard = StructureGuard()
    stack: list[tuple[dict | None, list[str]]] = []
    item: dict | None = None
    data: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal item, data
        guard.enter(name, attrs)
        stack.append((item, data))
        item = {"@" + key: value for key, value in attrs.items()} if attrs else None
        data = []

    def end(name: str) -> None:
        nonlocal item, data
        text = "".join(data) if data else None
        element = item
        item, data = stack.pop()
        guard.leave()
        if element is not None:
            if text and text.strip():
                element["#text"] = text
            item = _push(item, name, element)
        else:
            item = _push(item, name, text)

    def text(chunk: str) -> None:
        data.append(chunk)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(xml, True)
    return item


# The fast path. Nearly every callback is a flat ``<xml>`` of text fields,
# each ``<Name><![CDATA[text]]></Name>``, ``<Name>text</Name>`` or empty,
# perhaps with layout whitespace between them. One precompiled regex reads
# such a document at a fraction of expat's cost. It is deliberately narrow:
# anything else (attributes, nesting, entities or character references,
# CDATA beside other text, a declaration, comments, a DOCTYPE, ...) does not
# match, and the document goes to expat unchanged.
#
# Field text may hold any character XML allows except \r (expat turns it
# into \n; such text takes the slow path rather than copying that). CDATA
# text may hold "]" but not "]]>", which ends it; plain text may hold
# neither (WeCom's plain fields are numbers, and "]]>" is refused there).
_NOT_FLAT_CHARS = XML_ILLEGAL_CHARS + "\r"
_CDATA_TEXT = rf"[^\]{_NOT_FLAT_CHARS}]*(?:\](?!\]>)[^\]{_NOT_FLAT_CHARS}]*)*"
_PLAIN_TEXT = rf"[^<&\]{_NOT_FLAT_CHARS}]*"
_XML_SPACE = " \t\r\n"
# Groups: the name, then the CDATA text or the plain text (both None when
# the element is written <Name/>).
_FLAT_FIELD = re.compile(
    rf"[{_XML_SPACE}]*<([A-Za-z_][A-Za-z0-9_.-]*)"
    rf"(?:/>|>(?:<!\[CDATA\[({_CDATA_TEXT})\]\]>|({_PLAIN_TEXT}))</\1>)"
)


def _flat_xml_to_dict(xml: str) -> dict | None:
    """The dict under ``<xml>`` for a flat document, or None to use expat.

    For the documents it accepts this gives exactly what
    :func:`_xml_to_dict` gives (text kept as sent, an empty element or empty
    CDATA None), and it accepts only documents expat reads without error.
    ``split`` runs the regex over the whole document in one C call; the
    document is flat exactly when the pieces around the fields are the
    ``<xml>`` and ``</xml>`` tags and nothing lies between two fields. A
    repeated name (which would become a list) goes to expat as well.
    """
    # [before, name, cdata, text, between, name, cdata, text, ..., after]
    parts = _FLAT_FIELD.split(xml)
    if (
        parts[0].lstrip(_XML_SPACE) != "<xml>"
        or parts[-1].strip(_XML_SPACE) != "</xml>"
        or any(parts[4:-1:4])
    ):
        return None
    body: dict[str, str | None] = {}
    for i in range(1, len(parts) - 1, 4):
        body[parts[i]] = parts[i + 1] or parts[i + 2] or None
    # A repeated name leaves fewer keys than fields.
    return body if body and len(body) * 4 + 1 == len(parts) else None


def parse_xml(xml: str | bytes) -> dict:
    """Parse a WeCom plaintext ``<xml>`` document into the dict under ``<xml>``.

    Text is kept exactly as sent (no whitespace stripping), so a user's
    leading spaces or trailing newline survive. A flat document (nearly
    every callback) is read by a regex, anything else by expat, with the
    same result either way. Raises :class:`MessageParseError` for broken
    XML, a DOCTYPE or entity declaration, or a root element other than
    ``<xml>`` with children.
    """
    if isinstance(xml, bytes):
        try:
            xml = xml.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageParseError(f"message is not valid UTF-8: {exc}") from None
    try:
        count_markup(xml)
    except TooComplex as exc:
        raise MessageRefused(f"message XML is refused: {exc}") from None
    flat = _flat_xml_to_dict(xml)
    if flat is not None:
        return flat
    root = _ROOT_START.search(xml)
    prolog = xml[: root.start()] if root else xml
    if _DOCTYPE.search(prolog):
        raise MessageRefused("a DOCTYPE is not allowed in a WeCom message")
    try:
        doc = _xml_to_dict(xml)
    except MessageParseError:
        raise
    except TooComplex as exc:
        raise MessageRefused(f"message XML is refused: {exc}") from None
    except expat.ExpatError as exc:
        raise MessageParseError(f"message is not well-formed XML: {exc}") from None
    if not isinstance(doc, dict) or "xml" not in doc:
        raise MessageParseError("message XML has no <xml> root element")
    body = doc["xml"]
    if not isinstance(body, dict):
        raise MessageParseError("message <xml> root has no fields")
    return body


# ---------------------------------------------------------------------------
# Field helpers: parsing gives strings, dicts (nested or with attributes),
# lists (repeated elements) or None (empty elements).


def _text(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("#text")
    return value if isinstance(value, str) else None


def _str(raw: dict, key: str) -> str:
    return _text(raw, key) or ""


def _int(raw: dict, key: str) -> int | None:
    value = _text(raw, key)
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise MessageParseError(f"{key} is not an integer ({len(value)} characters)") from None


def _float(raw: dict, key: str) -> float | None:
    value = _text(raw, key)
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise MessageParseError(f"{key} is not a number ({len(value)} characters)") from None


def _dict(raw: dict, key: str) -> dict:
    value = raw.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------
# Messages


@dataclass
class Message:
    """Any inbound message or event; also what an unknown ``MsgType`` becomes.

    ``type`` is ``MsgType`` exactly as sent. ``raw`` is the whole parsed
    document under ``<xml>`` with every field WeCom sent, as strings.
    ``msg_id`` is a string because WeCom's MsgId is a 64-bit integer.
    """

    type: str = ""
    to_user: str = ""
    from_user: str = ""
    create_time: int = 0
    agent_id: str | None = None
    msg_id: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    is_event: ClassVar[bool] = False
    #: An AI bot's refresh poll for a stream (answered by the host from the stream's state, never by a plugin).
    is_stream_refresh: ClassVar[bool] = False
    #: Whether WeCom shows a passive reply to this (D:90241); when False a
    #: plugin's answer has to be pushed through the API instead.
    accepts_passive_reply: ClassVar[bool] = True

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        """The subclass's own fields, read from ``raw``."""
        return {}


@dataclass
class TextMessage(Message):
    type: str = "text"
    content: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {"content": _str(raw, "Content")}


@dataclass
class MediaMessage(Message):
    """Base of every message carrying a downloadable ``media_id``.

    Inbound media ids stay valid for three days (``media/get``).
    """

    media_id: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {"media_id": _str(raw, "MediaId")}


@dataclass
class ImageMessage(MediaMessage):
    type: str = "image"
    pic_url: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {**super()._fields(raw), "pic_url": _str(raw, "PicUrl")}


@dataclass
class VoiceMessage(MediaMessage):
    type: str = "voice"
    format: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {**super()._fields(raw), "format": _str(raw, "Format")}


@dataclass
class VideoMessage(MediaMessage):
    type: str = "video"
    thumb_media_id: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {**super()._fields(raw), "thumb_media_id": _str(raw, "ThumbMediaId")}


@dataclass
class FileMessage(MediaMessage):
    """A ``file`` message. Not documented for self-built apps; any field
    beyond ``MediaId`` that arrives is in ``raw``."""

    type: str = "file"


@dataclass
class LocationMessage(Message):
    """A location a user sent: ``Location_X`` is latitude, ``Location_Y`` longitude."""

    type: str = "location"
    latitude: float | None = None
    longitude: float | None = None
    scale: int | None = None
    label: str = ""
    app_type: str | None = None

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {
            "latitude": _float(raw, "Location_X"),
            "longitude": _float(raw, "Location_Y"),
            "scale": _int(raw, "Scale"),
            "label": _str(raw, "Label"),
            "app_type": _text(raw, "AppType"),
        }


@dataclass
class LinkMessage(Message):
    type: str = "link"
    title: str = ""
    description: str = ""
    url: str = ""
    pic_url: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {
            "title": _str(raw, "Title"),
            "description": _str(raw, "Description"),
            "url": _str(raw, "Url"),
            "pic_url": _str(raw, "PicUrl"),
        }


# ---------------------------------------------------------------------------
# Events


@dataclass
class Event(Message):
    """``MsgType=event``; also what an unknown ``Event`` value becomes.

    ``event`` is the Event value in lower case (WeCom writes ``LOCATION``
    but ``click``); ``event_key`` is ``EventKey`` or None when empty.
    """

    type: str = "event"
    event: str = ""
    event_key: str | None = None

    is_event: ClassVar[bool] = True
    accepts_passive_reply: ClassVar[bool] = False


@dataclass
class SubscribeEvent(Event):
    event: str = "subscribe"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class UnsubscribeEvent(Event):
    event: str = "unsubscribe"


@dataclass
class EnterAgentEvent(Event):
    event: str = "enter_agent"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class LocationEvent(Event):
    """The member's position, reported on entering the app if they agreed."""

    event: str = "location"
    latitude: float | None = None
    longitude: float | None = None
    precision: float | None = None
    app_type: str | None = None
    accepts_passive_reply: ClassVar[bool] = True

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {
            "latitude": _float(raw, "Latitude"),
            "longitude": _float(raw, "Longitude"),
            "precision": _float(raw, "Precision"),
            "app_type": _text(raw, "AppType"),
        }


@dataclass
class ClickEvent(Event):
    """A menu click; ``event_key`` is the menu item's key."""

    event: str = "click"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class ViewEvent(Event):
    """A menu link opened; ``event_key`` is the URL."""

    event: str = "view"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class ViewMiniprogramEvent(Event):
    """A menu mini-program opened; ``event_key`` is the page path."""

    event: str = "view_miniprogram"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class ScanCodeEvent(Event):
    """Base of the two menu scan events: ``scan_type`` is qrcode or barcode."""

    scan_type: str = ""
    scan_result: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        info = _dict(raw, "ScanCodeInfo")
        return {"scan_type": _str(info, "ScanType"), "scan_result": _str(info, "ScanResult")}


@dataclass
class ScanCodePushEvent(ScanCodeEvent):
    event: str = "scancode_push"


@dataclass
class ScanCodeWaitMsgEvent(ScanCodeEvent):
    event: str = "scancode_waitmsg"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class PicEvent(Event):
    """Base of the three menu photo events: how many pictures and their MD5s."""

    count: int = 0
    pic_md5_list: list[str] = field(default_factory=list)

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        info = _dict(raw, "SendPicsInfo")
        md5s: list[str] = []
        # Usually <PicList><item/>…</PicList>; some payloads repeat <PicList>.
        for pic_list in _list(info.get("PicList")):
            if not isinstance(pic_list, dict):
                continue
            for item in _list(pic_list.get("item")):
                if isinstance(item, dict) and _text(item, "PicMd5Sum"):
                    md5s.append(_str(item, "PicMd5Sum"))
        count = _int(info, "Count")
        return {"count": len(md5s) if count is None else count, "pic_md5_list": md5s}


@dataclass
class PicSysPhotoEvent(PicEvent):
    event: str = "pic_sysphoto"


@dataclass
class PicPhotoOrAlbumEvent(PicEvent):
    event: str = "pic_photo_or_album"


@dataclass
class PicWeixinEvent(PicEvent):
    event: str = "pic_weixin"


@dataclass
class LocationSelectEvent(Event):
    """A place picked in the menu's location selector."""

    event: str = "location_select"
    latitude: float | None = None
    longitude: float | None = None
    scale: int | None = None
    label: str = ""
    poiname: str = ""
    app_type: str | None = None

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        info = _dict(raw, "SendLocationInfo")
        return {
            "latitude": _float(info, "Location_X"),
            "longitude": _float(info, "Location_Y"),
            "scale": _int(info, "Scale"),
            "label": _str(info, "Label"),
            "poiname": _str(info, "Poiname"),
            "app_type": _text(raw, "AppType"),
        }


@dataclass
class BatchJobResultEvent(Event):
    """An asynchronous contact job finished (``job_type`` e.g. sync_user)."""

    event: str = "batch_job_result"
    job_id: str = ""
    job_type: str = ""
    err_code: int | None = None
    err_msg: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        job = _dict(raw, "BatchJob")
        return {
            "job_id": _str(job, "JobId"),
            "job_type": _str(job, "JobType"),
            "err_code": _int(job, "ErrCode"),
            "err_msg": _str(job, "ErrMsg"),
        }


@dataclass
class ChangeContactEvent(Event):
    """A member, department or tag changed (``change_type`` e.g. update_user).

    Only the identifying fields are typed; WeCom sends just the fields that
    changed and the app may see, all of them in ``raw``.
    """

    event: str = "change_contact"
    change_type: str = ""
    user_id: str | None = None
    new_user_id: str | None = None
    party_id: str | None = None
    tag_id: str | None = None

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {
            "change_type": _str(raw, "ChangeType"),
            "user_id": _text(raw, "UserID"),
            "new_user_id": _text(raw, "NewUserID"),
            "party_id": _text(raw, "Id"),
            "tag_id": _text(raw, "TagId"),
        }


@dataclass
class OpenApprovalChangeEvent(Event):
    """An approval started from this app changed state.

    ``open_sp_status``: 1 pending, 2 approved, 3 rejected, 4 cancelled.
    ``approval_info`` is the whole ``ApprovalInfo`` element.
    """

    event: str = "open_approval_change"
    third_no: str = ""
    open_sp_name: str = ""
    open_template_id: str = ""
    open_sp_status: int | None = None
    apply_time: int | None = None
    apply_user_id: str = ""
    apply_user_name: str = ""
    approval_info: dict = field(default_factory=dict, repr=False)

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        info = _dict(raw, "ApprovalInfo")
        return {
            "third_no": _str(info, "ThirdNo"),
            "open_sp_name": _str(info, "OpenSpName"),
            "open_template_id": _str(info, "OpenTemplateId"),
            "open_sp_status": _int(info, "OpenSpStatus"),
            "apply_time": _int(info, "ApplyTime"),
            "apply_user_id": _str(info, "ApplyUserId"),
            "apply_user_name": _str(info, "ApplyUserName"),
            "approval_info": info,
        }


@dataclass
class TaskCardClickEvent(Event):
    """A button of a legacy task card was clicked; ``event_key`` is the button."""

    event: str = "taskcard_click"
    task_id: str = ""

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {"task_id": _str(raw, "TaskId")}


@dataclass
class SelectedItem:
    """One question of a vote or multiple-choice card and the options picked."""

    question_key: str
    option_ids: list[str]


@dataclass
class TemplateCardEvent(Event):
    """A template card button was clicked; ``event_key`` is the button key.

    ``response_code`` updates the card once through
    ``message/update_template_card`` within 72 hours; a passive
    update_button / update_template_card reply is accepted too.
    """

    event: str = "template_card_event"
    task_id: str = ""
    card_type: str = ""
    response_code: str | None = None
    selected_items: list[SelectedItem] = field(default_factory=list)
    accepts_passive_reply: ClassVar[bool] = True

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        items = []
        for item in _list(_dict(raw, "SelectedItems").get("SelectedItem")):
            if not isinstance(item, dict):
                continue
            ids = _list(_dict(item, "OptionIds").get("OptionId"))
            items.append(
                SelectedItem(
                    question_key=_str(item, "QuestionKey"),
                    option_ids=[i for i in ids if isinstance(i, str)],
                )
            )
        return {
            "task_id": _str(raw, "TaskId"),
            "card_type": _str(raw, "CardType"),
            "response_code": _text(raw, "ResponseCode"),
            "selected_items": items,
        }


@dataclass
class TemplateCardMenuEvent(Event):
    """An entry of a template card's top-right menu was chosen."""

    event: str = "template_card_menu_event"
    task_id: str = ""
    card_type: str = ""
    response_code: str | None = None
    accepts_passive_reply: ClassVar[bool] = True

    @classmethod
    def _fields(cls, raw: dict) -> dict:
        return {
            "task_id": _str(raw, "TaskId"),
            "card_type": _str(raw, "CardType"),
            "response_code": _text(raw, "ResponseCode"),
        }


# ---------------------------------------------------------------------------
# Dispatch on MsgType / Event


_MESSAGE_TYPES: dict[str, type[Message]] = {
    "text": TextMessage,
    "image": ImageMessage,
    "voice": VoiceMessage,
    "video": VideoMessage,
    "file": FileMessage,
    "location": LocationMessage,
    "link": LinkMessage,
}

_EVENT_TYPES: dict[str, type[Event]] = {
    cls.event: cls  # type: ignore[misc]  # the class default is the Event value
    for cls in (
        SubscribeEvent,
        UnsubscribeEvent,
        EnterAgentEvent,
        LocationEvent,
        ClickEvent,
        ViewEvent,
        ViewMiniprogramEvent,
        ScanCodePushEvent,
        ScanCodeWaitMsgEvent,
        PicSysPhotoEvent,
        PicPhotoOrAlbumEvent,
        PicWeixinEvent,
        LocationSelectEvent,
        BatchJobResultEvent,
        ChangeContactEvent,
        OpenApprovalChangeEvent,
        TaskCardClickEvent,
        TemplateCardEvent,
        TemplateCardMenuEvent,
    )
}


def message_from_dict(d: dict) -> Message:
    """Build the typed message from an already-parsed document.

    ``d`` is either the dict under ``<xml>`` or xmltodict's whole result
    ``{"xml": {...}}``. Unknown message types become :class:`Message`,
    unknown events :class:`Event`; ``raw`` always holds everything.
    """
    if not isinstance(d, dict):
        raise MessageParseError(f"message must be a dict, not {type(d).__name__}")
    raw = d["xml"] if len(d) == 1 and isinstance(d.get("xml"), dict) else d
    msg_type = _text(raw, "MsgType")
    if not msg_type:
        raise MessageParseError("message has no MsgType")

    common: dict[str, Any] = {
        "type": msg_type,
        "to_user": _str(raw, "ToUserName"),
        "from_user": _str(raw, "FromUserName"),
        "create_time": _int(raw, "CreateTime") or 0,
        # The legacy task-card event writes AgentId with a lower-case d.
        "agent_id": _text(raw, "AgentID") or _text(raw, "AgentId"),
        "msg_id": _text(raw, "MsgId"),
        "raw": raw,
    }
    if msg_type.lower() == "event":
        event = _str(raw, "Event").lower()
        cls: type[Message] = _EVENT_TYPES.get(event, Event)
        common["event"] = event
        common["event_key"] = _text(raw, "EventKey")
    else:
        cls = _MESSAGE_TYPES.get(msg_type.lower(), Message)
    return cls(**common, **cls._fields(raw))


def parse_message(xml: str | bytes) -> Message:
    """Parse decrypted WeCom plaintext XML into a typed :class:`Message`.

    Raises :class:`MessageParseError` (a ``ValueError``) for broken XML, a
    DOCTYPE, a missing ``MsgType`` or a malformed number field.
    """
    return message_from_dict(parse_xml(xml))
