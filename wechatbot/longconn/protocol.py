"""The frames of the AI bot's long connection (D:101463), and nothing else.

Every frame is a JSON text message ``{"cmd", "headers": {"req_id"}, "body"}``.
A receipt, WeCom's answer to a frame we sent, has no ``cmd``: it echoes the
``req_id`` and carries ``errcode`` / ``errmsg``. Whoever starts an exchange
makes its ``req_id``; a reply to a callback reuses the callback's.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

# "建议每 30 秒" a ping; two unanswered pings in a row mean a dead connection.
HEARTBEAT_INTERVAL = 30.0
MISSED_HEARTBEATS = 2

# Developer → WeCom.
SUBSCRIBE = "aibot_subscribe"
PING = "ping"
RESPOND = "aibot_respond_msg"
RESPOND_WELCOME = "aibot_respond_welcome_msg"
RESPOND_UPDATE = "aibot_respond_update_msg"
SEND = "aibot_send_msg"
# WeCom → developer.
MSG_CALLBACK = "aibot_msg_callback"
EVENT_CALLBACK = "aibot_event_callback"
DISCONNECTED_EVENT = "disconnected_event"

# The reply types each command accepts (D:101463). There is no plain text reply
# to a message: a text answer is a finished stream (or markdown).
RESPOND_TYPES = frozenset({"stream", "template_card", "stream_with_template_card", "markdown",
                           "file", "voice", "image", "video"})
WELCOME_TYPES = frozenset({"text", "template_card"})
SEND_TYPES = frozenset({"markdown", "template_card", "file", "image", "voice", "video"})
REPLY_COMMANDS = {RESPOND: RESPOND_TYPES, RESPOND_WELCOME: WELCOME_TYPES, SEND: SEND_TYPES}

# Receipt codes the host acts on.
OK = 0
ERR_BUSY = -1  # WeCom is busy: not applied, safe to send again later
ERR_CONFLICT = 6000  # another frame for this req_id is still being handled: safe to send again later
ERR_FREQUENCY = 45009  # over the conversation's budget: not applied, safe to send again later
ERR_CONCURRENCY = 45033  # too many calls at once: not applied, safe to send again later
ERR_STREAM_CLOSED = 846608  # the stream can no longer be updated
ERR_WINDOW_CLOSED = 846604  # the req_id's reply window is over
RETRYABLE = frozenset({ERR_BUSY, ERR_CONFLICT, ERR_FREQUENCY, ERR_CONCURRENCY})
#: Rate limits: sent again after longer pauses than the other passing errors.
RATE_LIMITS = frozenset({ERR_FREQUENCY, ERR_CONCURRENCY})

#: What to check when WeCom refuses a frame for good (WeCom's global codes fall back to the API's hints).
HINTS = {
    ERR_WINDOW_CLOSED: "the message's reply window is over (a reply within 24 h of the user's message; a welcome "
                       "or card update within 5 s of the event), or its req_id is not one WeCom sent",
    ERR_STREAM_CLOSED: "the stream is finished or its 6 minutes are over: send the rest with aibot_send_msg",
    40008: "the command does not take this msgtype (aibot_respond_msg: stream, markdown, template_card …)",
    40058: "a field is missing or wrong (aibot_send_msg needs the chatid of a conversation that wrote to the bot)",
    853000: "bot_id or secret is wrong: use the BotID and the Secret made under 长连接 on the bot's API page",
}


def hint(errcode: int) -> str | None:
    """What to check when a frame was refused with ``errcode`` (None: nothing to say)."""
    if errcode in HINTS:
        return HINTS[errcode]
    from ..api.hints import hint_for  # only on this rare path: the API package loads requests

    return hint_for(errcode)


class FrameError(ValueError):
    """A text message from the server that is not a frame."""


def new_req_id(prefix: str) -> str:
    """A fresh ``req_id`` for an exchange we start: ``<prefix>_<ms>_<8 hex>``."""
    return f"{prefix}_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


def frame(cmd: str, req_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A frame to send; ``body`` is left out when None (a ping has none)."""
    out: dict[str, Any] = {"cmd": cmd, "headers": {"req_id": req_id}}
    if body is not None:
        out["body"] = body
    return out


def subscribe(bot_id: str, secret: str) -> dict[str, Any]:
    """The first frame on a new connection: it authenticates the bot."""
    return frame(SUBSCRIBE, new_req_id(SUBSCRIBE), {"bot_id": bot_id, "secret": secret})


def ping() -> dict[str, Any]:
    """A heartbeat."""
    return frame(PING, new_req_id(PING))


def encode(out: dict[str, Any]) -> str:
    """A frame as the text message that carries it."""
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def decode(text: str | bytes) -> dict[str, Any]:
    """Parse a received text message; :class:`FrameError` when it is not a frame."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("headers"), dict):
        raise FrameError("a frame is an object with headers")
    return data


def req_id(received: dict[str, Any]) -> str:
    """The ``req_id`` of a frame or receipt ('' when missing)."""
    return str(received.get("headers", {}).get("req_id", ""))


def is_receipt(received: dict[str, Any]) -> bool:
    """A receipt answers one of our frames: it has no ``cmd``."""
    return not received.get("cmd")


def is_disconnected_event(received: dict[str, Any]) -> bool:
    """WeCom's notice that another connection took the bot over."""
    body = received.get("body") or {}
    return (received.get("cmd") == EVENT_CALLBACK
            and (body.get("event") or {}).get("eventtype") == DISCONNECTED_EVENT)


def conversation_of(callback_body: dict[str, Any]) -> str:
    """The conversation a callback belongs to: the group's chatid, else the sender's userid.

    The per-conversation budget (30 a minute, 1000 an hour) is counted by it,
    and it is the ``chatid`` a push to that conversation goes to.
    """
    if callback_body.get("chatid"):
        return str(callback_body["chatid"])
    return str((callback_body.get("from") or {}).get("userid", ""))


@dataclass(frozen=True)
class StreamState:
    """What a stream frame says: its id, its whole text so far, and whether it is the last."""

    stream_id: str
    content: str
    finish: bool


def stream_of(out: dict[str, Any]) -> StreamState | None:
    """The stream a reply frame updates, or None for any other frame."""
    body = out.get("body") or {}
    if out.get("cmd") != RESPOND or body.get("msgtype") not in ("stream", "stream_with_template_card"):
        return None
    stream = body.get("stream") or {}
    return StreamState(str(stream.get("id", "")), str(stream.get("content", "")), bool(stream.get("finish")))


def must_go(out: dict[str, Any]) -> bool:
    """Whether a frame must reach the user: everything but a stream's intermediate frame (newer text replaces it)."""
    stream = stream_of(out)
    return stream is None or stream.finish


def resendable(out: dict[str, Any]) -> bool:
    """Whether sending a frame twice shows the user nothing twice.

    A stream frame carries the stream's whole text under its id (a second copy
    replaces the first, and after ``finish`` WeCom answers 846608), and a card
    update replaces the card. A markdown, a card or a push sent twice is shown twice.
    """
    return stream_of(out) is not None or out.get("cmd") == RESPOND_UPDATE


def check_reply(out: dict[str, Any]) -> None:
    """Refuse a reply frame WeCom would refuse, with a message that says why."""
    cmd = out.get("cmd")
    body = out.get("body") or {}
    if cmd == RESPOND_UPDATE:
        if body.get("response_type") != "update_template_card" or not isinstance(body.get("template_card"), dict):
            raise ValueError("aibot_respond_update_msg takes response_type update_template_card and a template_card")
        return
    allowed = REPLY_COMMANDS.get(str(cmd))
    if allowed is None:
        raise ValueError(f"{cmd!r} is not a reply command (one of {', '.join(sorted([*REPLY_COMMANDS, RESPOND_UPDATE]))})")
    msgtype = body.get("msgtype")
    if msgtype not in allowed:
        raise ValueError(f"{cmd} cannot carry msgtype {msgtype!r} (it takes {', '.join(sorted(allowed))})")
    if cmd == SEND and not body.get("chatid"):
        raise ValueError("aibot_send_msg needs the chatid of a conversation the user has written in")
