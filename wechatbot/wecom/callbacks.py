"""Callbacks the host does not model, and what WeCom expects as their answer.

Every callback that decrypts is answered 200, whatever it holds: WeCom counts
anything else as a failed delivery and sends it again. Three kinds need care:

* a third-party suite's 指令回调 (``suite_ticket``, ``create_auth``,
  ``change_auth``, ``cancel_auth``, …): XML with ``InfoType`` instead of
  ``MsgType``; it must be answered with the literal text ``success``
  (D:97172) and becomes a :class:`SuiteEvent`;
* a plaintext that parses as no message at all (a future format): it becomes
  an :class:`UnknownCallback` holding the plaintext, answered empty;
* everything else parses as usual.

Both reach the plugins as events (``handle_event``), with everything in ``raw``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

from .messages import Event, Message, MessageParseError, MessageRefused, message_from_dict, parse_xml

__all__ = ["SuiteEvent", "UnknownCallback", "parse_app_callback", "parse_or_unknown", "acknowledgement"]

#: The answer a suite callback must get (D:97172).
SUITE_ACK = "success"


@dataclass
class SuiteEvent(Event):
    """A third-party suite's 指令回调: ``event`` is the ``InfoType`` in lower case.

    ``suite_id`` is ``SuiteId``; ``auth_corp_id`` the authorising corp
    (``AuthCorpId``, for change_auth / cancel_auth); ``suite_ticket`` and
    ``auth_code`` are set for the callbacks that carry them.
    """

    type: str = "suite"
    suite_id: str = ""
    auth_corp_id: str = ""
    suite_ticket: str = ""
    auth_code: str = ""

    acknowledgement: ClassVar[str] = SUITE_ACK
    accepts_passive_reply: ClassVar[bool] = False


@dataclass
class UnknownCallback(Event):
    """A decrypted callback that is no message this host knows how to read.

    ``plaintext`` is the decrypted text, ``problem`` why it did not parse.
    """

    type: str = "unknown"
    event: str = "unknown"
    plaintext: str = ""
    problem: str = ""

    accepts_passive_reply: ClassVar[bool] = False


def acknowledgement(message: Message) -> str:
    """The body WeCom expects when no plugin answers ``message``: ``success`` or empty."""
    return getattr(message, "acknowledgement", "")


def _text(raw: dict, key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _suite_event(raw: dict) -> SuiteEvent:
    timestamp = _text(raw, "TimeStamp")
    return SuiteEvent(
        event=_text(raw, "InfoType").strip().lower(),
        create_time=int(timestamp) if timestamp.isdigit() else 0,
        suite_id=_text(raw, "SuiteId"),
        auth_corp_id=_text(raw, "AuthCorpId"),
        suite_ticket=_text(raw, "SuiteTicket"),
        auth_code=_text(raw, "AuthCode"),
        to_user=_text(raw, "SuiteId") or _text(raw, "ToUserName"),
        raw=raw,
    )


def parse_or_unknown(plaintext: str | bytes, parse: Callable[[str | bytes], Message]) -> Message:
    """``parse(plaintext)``, or an :class:`UnknownCallback` when it cannot be read.

    Hostile content (:class:`~.messages.MessageRefused`: a DOCTYPE, absurd
    structure) still raises: the host refuses it.
    """
    try:
        return parse(plaintext)
    except MessageRefused:
        raise  # hostile content is refused (400), not handed to plugins
    except MessageParseError as exc:
        text = plaintext.decode("utf-8", "replace") if isinstance(plaintext, bytes) else plaintext
        return UnknownCallback(plaintext=text, problem=str(exc), raw={"plaintext": text})


def _app_document(plaintext: str | bytes) -> Message:
    raw = parse_xml(plaintext)
    if "MsgType" not in raw and "InfoType" in raw:
        return _suite_event(raw)
    return message_from_dict(raw)


def parse_app_callback(plaintext: str | bytes) -> Message:
    """An app's (or suite's) decrypted XML as a typed message; never raises.

    Messages and events parse as :func:`~.messages.parse_message` does; an
    ``InfoType`` document becomes a :class:`SuiteEvent`; anything unreadable
    an :class:`UnknownCallback`.
    """
    return parse_or_unknown(plaintext, _app_document)
