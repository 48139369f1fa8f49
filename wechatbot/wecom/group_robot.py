"""Typed group robot (群机器人 / 消息推送) callbacks, built from the decrypted XML (D:99399).

A group robot's callback is an ``<xml>`` document like an app's, but with its
own fields: ``From`` (``UserId``, ``Name``, ``Alias``), ``ChatId``,
``ChatType`` (single, group, blackboard, …), ``WebhookUrl`` (where late
answers go), ``GetChatInfoUrl`` (5 minutes, one use), ``MsgId`` and a body
per ``MsgType``: ``Text``, ``Image``, ``MixedMessage``, ``Event`` or
``Attachment`` (a button click). This module turns it into the app classes
(:class:`~.messages.TextMessage`, :class:`~.messages.Event`, …), each also a
:class:`GroupRobotCallback`, so that a plugin written for apps answers it
unchanged. Unknown types still parse, with everything in ``raw``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .aibot import MixedItem, split_mention
from .messages import Event, ImageMessage, Message, MessageParseError, TextMessage, parse_xml
from .messages import _dict, _list
from .messages import _str as _text

__all__ = [
    "GroupRobotCallback",
    "Action",
    "GroupTextMessage",
    "GroupImageMessage",
    "GroupMixedMessage",
    "GroupRobotMessage",
    "GroupRobotEvent",
    "AddToChatEvent",
    "DeleteFromChatEvent",
    "GroupEnterChatEvent",
    "AttachmentEvent",
    "group_message_from_dict",
    "parse_group_robot",
]


@dataclass
class GroupRobotCallback:
    """The fields every group robot callback carries, beside the app message's.

    ``from_user`` is ``From/UserId``; ``from_name`` and ``from_alias`` its
    name and alias. ``webhook_url`` takes late answers (``webhook/send``).
    """

    chat_id: str = ""
    chat_type: str = ""
    webhook_url: str = ""
    get_chat_info_url: str = ""
    post_id: str = ""
    from_name: str = ""
    from_alias: str = ""

    channel: ClassVar[str] = "group_robot"

    @property
    def is_group(self) -> bool:
        """Whether this came from a group chat."""
        return self.chat_type == "group"


@dataclass
class GroupTextMessage(TextMessage, GroupRobotCallback):
    """A text. ``content`` is the text after the leading ``@robot`` mention
    (the name is in ``mention``); ``raw_content`` is the text as sent."""

    mention: str | None = None
    raw_content: str = ""


@dataclass
class GroupImageMessage(ImageMessage, GroupRobotCallback):
    """An image (single chats only); ``url`` (and ``pic_url``) is ``Image/ImageUrl``."""

    url: str = ""


@dataclass
class GroupMixedMessage(Message, GroupRobotCallback):
    """Text and images mixed: ``items`` in order, ``content`` the texts joined
    by newlines (the leading mention removed)."""

    type: str = "mixed"
    items: list[MixedItem] = field(default_factory=list)
    content: str = ""
    mention: str | None = None


@dataclass
class GroupRobotMessage(Message, GroupRobotCallback):
    """A group robot message of a type this module does not model (``command``, …)."""


@dataclass
class GroupRobotEvent(Event, GroupRobotCallback):
    """A group robot event (``Event/EventType``); also what an unknown one becomes."""


@dataclass
class AddToChatEvent(GroupRobotEvent):
    """The robot was added to a chat."""

    event: str = "add_to_chat"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class DeleteFromChatEvent(GroupRobotEvent):
    """The robot was removed from a chat."""

    event: str = "delete_from_chat"


@dataclass
class GroupEnterChatEvent(GroupRobotEvent):
    """A user opened the single chat with the robot."""

    event: str = "enter_chat"
    accepts_passive_reply: ClassVar[bool] = True


@dataclass
class Action:
    """One button of a message's attachment: its name, value and type."""

    name: str = ""
    value: str = ""
    type: str = ""


@dataclass
class AttachmentEvent(GroupRobotEvent):
    """A button of an earlier message was clicked (``MsgType`` attachment).

    ``callback_id`` is the id the message was sent with; ``actions`` the
    clicked button(s); ``event_key`` the first action's value.
    """

    event: str = "attachment"
    callback_id: str = ""
    actions: list[Action] = field(default_factory=list)
    accepts_passive_reply: ClassVar[bool] = True


_EVENTS: dict[str, type[GroupRobotEvent]] = {
    "add_to_chat": AddToChatEvent,
    "delete_from_chat": DeleteFromChatEvent,
    "enter_chat": GroupEnterChatEvent,
}


def _mixed(raw: dict) -> list[MixedItem]:
    items = []
    for item in _list(_dict(raw, "MixedMessage").get("MsgItem")):
        if not isinstance(item, dict):
            continue
        kind = _text(item, "MsgType")
        items.append(MixedItem(
            type=kind, content=_text(_dict(item, "Text"), "Content"), url=_text(_dict(item, "Image"), "ImageUrl"),
        ))
    return items


def group_message_from_dict(raw: dict) -> Message:
    """Build the typed message from a parsed group robot document (the dict under ``<xml>``).

    Pure; unknown types become :class:`GroupRobotMessage` or
    :class:`GroupRobotEvent` with everything in ``raw``.
    """
    if not isinstance(raw, dict):
        raise MessageParseError(f"a group robot callback must be a document, not {type(raw).__name__}")
    if len(raw) == 1 and isinstance(raw.get("xml"), dict):
        raw = raw["xml"]
    sender = _dict(raw, "From")
    kind = _text(raw, "MsgType")
    common: dict[str, Any] = {
        "type": kind,
        "from_user": _text(sender, "UserId"),
        "from_name": _text(sender, "Name"),
        "from_alias": _text(sender, "Alias"),
        "msg_id": _text(raw, "MsgId") or None,
        "chat_id": _text(raw, "ChatId"),
        "chat_type": _text(raw, "ChatType"),
        "webhook_url": _text(raw, "WebhookUrl"),
        "get_chat_info_url": _text(raw, "GetChatInfoUrl"),
        "post_id": _text(raw, "PostId"),
        "raw": raw,
    }
    lowered = kind.lower()
    if lowered == "text":
        text = _text(_dict(raw, "Text"), "Content")
        mention, content = split_mention(text)
        return GroupTextMessage(**common, content=content, raw_content=text, mention=mention)
    if lowered == "image":
        url = _text(_dict(raw, "Image"), "ImageUrl")
        return GroupImageMessage(**common, url=url, pic_url=url)
    if lowered == "mixed":
        items = _mixed(raw)
        mention, content = split_mention("\n".join(i.content for i in items if i.type == "text" and i.content))
        return GroupMixedMessage(**common, items=items, content=content, mention=mention)
    if lowered == "event":
        event = _text(_dict(raw, "Event"), "EventType").lower()
        cls = _EVENTS.get(event, GroupRobotEvent)
        return cls(**common, event=event)
    if lowered == "attachment":
        body = _dict(raw, "Attachment")
        actions = [
            Action(name=_text(a, "Name"), value=_text(a, "Value"), type=_text(a, "Type"))
            for a in _list(body.get("Actions")) if isinstance(a, dict)
        ]
        return AttachmentEvent(
            **common, event="attachment", callback_id=_text(body, "CallbackId"), actions=actions,
            event_key=actions[0].value if actions else None,
        )
    return GroupRobotMessage(**common)


def parse_group_robot(xml: str | bytes) -> Message:
    """Parse a decrypted group robot callback (XML) into a typed message.

    Raises :class:`MessageParseError` for XML that is broken or has a DOCTYPE.
    """
    return group_message_from_dict(parse_xml(xml))
