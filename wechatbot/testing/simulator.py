"""A simulated WeCom: builds, encrypts and signs callbacks exactly as WeCom does,
sends them to a host, and decrypts the answer.

Used by ``wechatbot simulate`` (against any URL, a tunnel's public one too) and
by ``wechatbot.testing`` (against a Flask app in-process).
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

import xmltodict

from ..wecom.crypto import WeComCrypto, parse_envelope, signature

# Field names WeCom uses in the plaintext XML, for the keyword arguments of `message`.
FIELD_NAMES = {
    "content": "Content", "media_id": "MediaId", "pic_url": "PicUrl", "format": "Format",
    "thumb_media_id": "ThumbMediaId", "event_key": "EventKey", "title": "Title",
    "description": "Description", "url": "Url", "file_name": "FileName",
    "location_x": "Location_X", "location_y": "Location_Y", "scale": "Scale", "label": "Label",
    "change_type": "ChangeType", "user_id": "UserID", "task_id": "TaskId",
}


class SimulationError(AssertionError):
    """The host answered something WeCom would not accept."""


@dataclass
class Received:
    """A decrypted answer: ``raw`` is the reply XML as a dict, empty when no reply."""

    status: int
    body: str
    raw: dict = field(default_factory=dict)

    @property
    def msg_type(self) -> str | None:
        return self.raw.get("MsgType")

    @property
    def content(self) -> str | None:
        return self.raw.get("Content")

    @property
    def media_id(self) -> str | None:
        for kind in ("Image", "Voice", "Video"):
            if kind in self.raw:
                return self.raw[kind].get("MediaId")
        return None

    def __bool__(self) -> bool:
        return bool(self.raw)


def message_xml(msg_type: str, from_user: str = "zhangsan", to_user: str = "ww_corp", agent_id: str = "1000002",
                msg_id: str | None = None, create_time: int | None = None, **fields: Any) -> str:
    """The plaintext XML WeCom would send for a message (``msg_type`` "text", …)."""
    body: dict[str, Any] = {
        "ToUserName": to_user, "FromUserName": from_user,
        "CreateTime": str(create_time or int(time.time())), "MsgType": msg_type,
    }
    for key, value in fields.items():
        body[FIELD_NAMES.get(key, key)] = value
    if msg_type != "event" and "MsgId" not in body:
        body["MsgId"] = msg_id or str(secrets.randbelow(2**63))
    body["AgentID"] = agent_id
    return xmltodict.unparse({"xml": body}, full_document=False)


def event_xml(event: str, **kwargs: Any) -> str:
    """The plaintext XML WeCom would send for an event (``event`` "enter_agent", …)."""
    return message_xml("event", Event=event, **kwargs)


Transport = Callable[[str, str, bytes | None], tuple[int, str]]


class SimulatedWeCom:
    """Talks to a host the way WeCom does, given the app's Token, key and receive id.

    ``transport(method, path_and_query, body)`` returns ``(status, text)``; use
    :func:`http_transport` for a URL or ``wechatbot.testing`` for a Flask app.
    """

    def __init__(self, transport: Transport, token: str, encoding_aes_key: str, receive_id: str, path: str = "/callback") -> None:
        self.transport = transport
        self.token = token
        self.crypto = WeComCrypto(token, encoding_aes_key, receive_id)
        self.corp_id = receive_id or "ww_corp"
        self.path = path

    def _query(self, encrypted: str, timestamp: str | None = None, nonce: str | None = None, **extra: str) -> str:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_hex(8)
        sig = signature(self.token, timestamp, nonce, encrypted)
        return self.path + "?" + urlencode({"msg_signature": sig, "timestamp": timestamp, "nonce": nonce, **extra})

    def verify_url(self) -> str:
        """Do WeCom's URL verification; return the echoed text, checked against what was sent."""
        plain = str(secrets.randbelow(10**19))
        echostr = self.crypto.encrypt(plain)
        status, text = self.transport("GET", self._query(echostr, echostr=echostr), None)
        if status != 200 or text != plain:
            raise SimulationError(f"URL verification failed: HTTP {status}, body {text[:200]!r}")
        return text

    def signed_request(self, plaintext: str, timestamp: str | None = None, nonce: str | None = None) -> tuple[str, bytes]:
        """The path with query and the body WeCom would POST for ``plaintext``."""
        encrypted = self.crypto.encrypt(plaintext)
        envelope = xmltodict.unparse({"xml": {"ToUserName": self.corp_id, "AgentID": "1000002", "Encrypt": encrypted}}, full_document=False)
        return self._query(encrypted, timestamp, nonce), envelope.encode()

    def post_xml(self, plaintext: str, timestamp: str | None = None, nonce: str | None = None) -> Received:
        """Encrypt, sign and POST one plaintext callback; decrypt and check the answer."""
        status, text = self.transport("POST", *self.signed_request(plaintext, timestamp, nonce))
        if status != 200:
            return Received(status, text)
        if not text:
            return Received(status, text)
        return Received(status, text, self.open_reply(text))

    def open_reply(self, text: str) -> dict:
        """Check the reply's signature and decrypt it, as WeCom does."""
        parsed = xmltodict.parse(text)["xml"]
        encrypted = parse_envelope(text)
        self.crypto.verify_signature(parsed["MsgSignature"], parsed["TimeStamp"], parsed["Nonce"], encrypted)
        return xmltodict.parse(self.crypto.decrypt(encrypted))["xml"]

    def text(self, content: str, **kwargs: Any) -> Received:
        """Send a text message; return the decrypted answer."""
        return self.post_xml(message_xml("text", content=content, **kwargs))

    def message(self, msg_type: str, **kwargs: Any) -> Received:
        """Send any message type (``image``, ``voice``, ``file`` …) with its fields."""
        return self.post_xml(message_xml(msg_type, **kwargs))

    def event(self, event: str, **kwargs: Any) -> Received:
        """Send an event (``enter_agent``, ``click`` with ``event_key=`` …)."""
        return self.post_xml(event_xml(event, **kwargs))


def http_transport(base_url: str, timeout: float = 10.0) -> Transport:
    """A transport that sends requests to ``base_url`` (a local host or a tunnel)."""
    import requests

    def send(method: str, path: str, body: bytes | None) -> tuple[int, str]:
        response = requests.request(method, base_url.rstrip("/") + path, data=body, timeout=timeout,
                                    headers={"Content-Type": "text/xml"} if body else {})
        return response.status_code, response.text

    return send
