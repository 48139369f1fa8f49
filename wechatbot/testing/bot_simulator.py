"""A simulated AI bot and group robot: WeCom's side of their callbacks, written from the official pages.

:class:`SimulatedAibot` sends JSON callbacks in a ``{"encrypt": …}`` envelope,
checks that each answer is signed with the request's nonce (D:101033) and,
when the answer is an unfinished stream, follows it the way WeCom does:
refresh polls (``msgtype: stream``) until ``finish: true`` or the 6-minute
window is over. It returns the final reply with every text seen on the way.
:class:`SimulatedGroupRobot` sends the group robot's XML callbacks (D:99399).

Both work over any transport: Flask's test client (the ``wecom`` fixture) or
HTTP to a real host (``wechatbot simulate``), gunicorn or a tunnel.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import xmltodict

from ..wecom.crypto import WeComCrypto, signature
from .simulator import Received, SimulationError, Transport

__all__ = ["BotAnswer", "GroupAnswer", "SimulatedAibot", "SimulatedGroupRobot", "StreamResult", "webhook_key"]

#: WeCom polls a stream for at most 6 minutes from the user's message (D:100719).
STREAM_WINDOW = 360.0


@dataclass
class BotAnswer:
    """One decrypted AI bot answer: ``data`` is the reply JSON, empty for an empty answer."""

    status: int
    body: str
    data: dict = field(default_factory=dict)

    @property
    def msgtype(self) -> str | None:
        return self.data.get("msgtype") or self.data.get("response_type")

    @property
    def stream(self) -> dict:
        return self.data.get("stream") or {}

    @property
    def content(self) -> str | None:
        """The text shown: a stream's content, or a text reply's."""
        if self.stream:
            return self.stream.get("content")
        return (self.data.get("text") or {}).get("content")

    @property
    def finish(self) -> bool:
        return bool(self.stream.get("finish"))

    def __bool__(self) -> bool:
        return bool(self.data)


@dataclass
class StreamResult:
    """A message followed to its end: the first answer, every poll's answer, the last one.

    ``texts`` are the contents seen in order (the first answer's included);
    ``content`` is the final text; ``answer`` the last decrypted reply;
    ``polls`` how many refresh polls were sent.
    """

    first: BotAnswer
    answers: list[BotAnswer] = field(default_factory=list)

    @property
    def answer(self) -> BotAnswer:
        return self.answers[-1] if self.answers else self.first

    @property
    def texts(self) -> list[str]:
        return [a.content for a in (self.first, *self.answers) if a.content is not None]

    @property
    def content(self) -> str | None:
        return self.answer.content

    @property
    def finish(self) -> bool:
        return self.answer.finish

    @property
    def msgtype(self) -> str | None:
        return self.first.msgtype

    @property
    def polls(self) -> int:
        return len(self.answers)

    def __bool__(self) -> bool:
        return bool(self.first)


class _Sealed:
    """Encrypt, sign and POST plaintexts the way WeCom does."""

    envelope = "json"

    def __init__(self, transport: Transport, token: str, encoding_aes_key: str, path: str) -> None:
        self.transport = transport
        self.token = token
        self.crypto = WeComCrypto(token, encoding_aes_key, "")
        self.path = path

    def _post(self, plaintext: str) -> tuple[int, str, str]:
        encrypted = self.crypto.encrypt(plaintext)
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        sig = signature(self.token, timestamp, nonce, encrypted)
        query = f"msg_signature={sig}&timestamp={timestamp}&nonce={nonce}"
        if self.envelope == "json":
            body = json.dumps({"encrypt": encrypted}).encode()
        else:
            body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
        status, text = self.transport("POST", f"{self.path}?{query}", body)
        return status, text, nonce

    def verify_url(self) -> str:
        """WeCom's URL verification; returns the echoed text, checked."""
        plain = str(secrets.randbelow(10**19))
        echostr = self.crypto.encrypt(plain)
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        sig = signature(self.token, timestamp, nonce, echostr)
        from urllib.parse import urlencode

        query = urlencode({"msg_signature": sig, "timestamp": timestamp, "nonce": nonce, "echostr": echostr})
        status, text = self.transport("GET", f"{self.path}?{query}", None)
        if status != 200 or text != plain:
            raise SimulationError(f"URL verification failed: HTTP {status}, body {text[:200]!r}")
        return text


class SimulatedAibot(_Sealed):
    """WeCom's AI bot talking to a host (``type = aibot``): JSON in, JSON out.

    ``response_url`` makes the ``response_url`` each message carries (for
    example ``FakeWeComAPI.add_response_url``); ``poll_every`` is the pause
    between refresh polls and ``window`` how long polls go on.
    """

    def __init__(self, transport: Transport, token: str, encoding_aes_key: str, path: str = "/callback", *,
                 aibot_id: str = "AIBOTID", response_url: Callable[[], str] | None = None,
                 poll_every: float = 0.2, window: float = STREAM_WINDOW) -> None:
        super().__init__(transport, token, encoding_aes_key, path)
        self.aibot_id = aibot_id
        self.response_url = response_url
        self.poll_every = poll_every
        self.window = window

    # Documents

    def document(self, msgtype: str, body: dict | None = None, *, from_user: str = "zhangsan",
                 chat_type: str = "single", chat_id: str | None = None, msgid: str | None = None,
                 **extra: Any) -> dict:
        """The plaintext JSON of one callback (D:100719's shape)."""
        doc: dict[str, Any] = {
            "msgid": msgid or secrets.token_urlsafe(18), "aibotid": self.aibot_id, "chattype": chat_type,
            "from": {"userid": from_user}, "msgtype": msgtype,
        }
        if chat_type == "group":
            doc["chatid"] = chat_id or "CHATID"
        if msgtype not in ("stream", "event") or extra.pop("with_response_url", False):
            doc["response_url"] = self.response_url() if self.response_url else "https://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=SIMULATED"
        if body is not None:
            doc[msgtype] = body
        doc.update(extra)
        return doc

    def post(self, doc: dict) -> BotAnswer:
        """Send one callback; decrypt and check the answer."""
        status, text, nonce = self._post(json.dumps(doc, ensure_ascii=False))
        if status != 200 or not text:
            return BotAnswer(status, text)
        return BotAnswer(status, text, self.open_reply(text, nonce))

    def open_reply(self, text: str, nonce: str) -> dict:
        """Check the answer's signature and nonce (the request's, D:101033) and decrypt it."""
        try:
            envelope = json.loads(text)
        except ValueError:
            raise SimulationError(f"the AI bot's answer must be JSON, got {text[:200]!r}") from None
        for key in ("encrypt", "msgsignature", "timestamp", "nonce"):
            if key not in envelope:
                raise SimulationError(f"the answer envelope has no {key!r}: {sorted(envelope)}")
        if envelope["nonce"] != nonce:
            raise SimulationError("the answer is not signed with the request's nonce")
        self.crypto.verify_signature(envelope["msgsignature"], str(envelope["timestamp"]), envelope["nonce"], envelope["encrypt"])
        return json.loads(self.crypto.decrypt(envelope["encrypt"]))

    # A message, followed to its end

    def send(self, doc: dict, on_update: Callable[[BotAnswer], None] | None = None) -> StreamResult:
        """Send a message; if the answer is an unfinished stream, poll it until it finishes."""
        started = time.monotonic()
        result = StreamResult(self.post(doc))
        if on_update:
            on_update(result.first)
        if result.first.status != 200:
            return result
        stream_id = result.first.stream.get("id")
        if result.first.stream and not stream_id:
            raise SimulationError("the first stream answer carries no stream id")
        answer = result.first
        while answer.stream and not answer.finish:
            if time.monotonic() - started > self.window:
                raise SimulationError(f"the stream did not finish within {self.window:g} s")
            time.sleep(self.poll_every)
            answer = self.poll(stream_id, from_user=doc["from"]["userid"], chat_type=doc.get("chattype", "single"),
                               chat_id=doc.get("chatid"))
            if answer.status != 200:
                raise SimulationError(f"a refresh poll got HTTP {answer.status}: {answer.body[:200]!r}")
            if answer.msgtype != "stream":
                raise SimulationError(f"a refresh poll must be answered with a stream, got {answer.msgtype!r}")
            result.answers.append(answer)
            if on_update:
                on_update(answer)
        return result

    def poll(self, stream_id: str, **kwargs: Any) -> BotAnswer:
        """One refresh poll for ``stream_id``."""
        return self.post(self.document("stream", {"id": stream_id}, **kwargs))

    def text(self, content: str, *, quote: dict | None = None, **kwargs: Any) -> StreamResult:
        """Send a text (in a group, put the ``@name`` in ``content``), follow the answer."""
        extra = {"quote": quote} if quote else {}
        return self.send(self.document("text", {"content": content}, **kwargs, **extra))

    def message(self, msgtype: str, body: dict, **kwargs: Any) -> StreamResult:
        """Send any message type (``image`` with ``{"url": …}``, ``mixed``, ``voice`` …)."""
        return self.send(self.document(msgtype, body, **kwargs))

    def event(self, eventtype: str, detail: dict | None = None, **kwargs: Any) -> BotAnswer:
        """Send an event (``enter_chat``, ``template_card_event``, ``feedback_event``)."""
        body: dict[str, Any] = {"eventtype": eventtype}
        if detail is not None:
            body[eventtype] = detail
        # A card click carries a response_url too (D:101138).
        kwargs.setdefault("with_response_url", eventtype == "template_card_event")
        return self.post(self.document("event", body, create_time=int(time.time()), **kwargs))

    def enter_chat(self, **kwargs: Any) -> BotAnswer:
        """The user opens the single chat (first time today)."""
        return self.event("enter_chat", {}, **kwargs)


class GroupAnswer(Received):
    """One decrypted group robot answer: ``raw`` is the reply XML as a dict (empty: no reply)."""

    @property
    def content(self) -> str | None:
        part = self.raw.get("Text") or self.raw.get("Markdown") or {}
        return part.get("Content")

    @property
    def mentioned_list(self) -> list[str]:
        items = ((self.raw.get("Text") or {}).get("MentionedList") or {}).get("Item") or []
        return items if isinstance(items, list) else [items]


class SimulatedGroupRobot(_Sealed):
    """WeCom's group robot talking to a host (``type = group_robot``): XML callbacks.

    ``webhook_url`` is the ``WebhookUrl`` each callback carries (for example
    ``FakeWeComAPI.webhook_url(key)``); ``robot_name`` the name users @-mention.
    """

    envelope = "xml"

    def __init__(self, transport: Transport, token: str, encoding_aes_key: str, path: str = "/callback", *,
                 webhook_url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SIMULATED",
                 robot_name: str = "RobotA") -> None:
        super().__init__(transport, token, encoding_aes_key, path)
        self.webhook_url = webhook_url
        self.robot_name = robot_name

    def document(self, msg_type: str, body: dict | None = None, *, from_user: str = "zhangsan",
                 name: str = "张三", alias: str = "san", chat_type: str = "group", chat_id: str = "wrkSFfCgAALFgnrS",
                 msgid: str | None = None) -> str:
        """The plaintext XML of one callback (D:99399's shape)."""
        doc: dict[str, Any] = {
            "WebhookUrl": self.webhook_url, "ChatId": chat_id, "ChatType": chat_type,
            "GetChatInfoUrl": "https://qyapi.weixin.qq.com/cgi-bin/webhook/get_chat_info?code=SIMULATED",
            "From": {"UserId": from_user, "Name": name, "Alias": alias},
            "MsgType": msg_type, "MsgId": msgid or secrets.token_hex(12),
        }
        if body:
            doc.update(body)
        return xmltodict.unparse({"xml": doc}, full_document=False)

    def post(self, xml: str) -> GroupAnswer:
        """Send one callback; decrypt and check the answer."""
        status, text, _ = self._post(xml)
        if status != 200 or not text:
            return GroupAnswer(status, text)
        parsed = xmltodict.parse(text)["xml"]
        self.crypto.verify_signature(parsed["MsgSignature"], parsed["TimeStamp"], parsed["Nonce"], parsed["Encrypt"])
        return GroupAnswer(status, text, xmltodict.parse(self.crypto.decrypt(parsed["Encrypt"]))["xml"])

    def text(self, content: str, *, mention: bool = True, **kwargs: Any) -> GroupAnswer:
        """A text; in a group it starts with ``@robot_name`` as WeCom writes it."""
        if mention and kwargs.get("chat_type", "group") == "group":
            content = f"@{self.robot_name} {content}"
        return self.post(self.document("text", {"Text": {"Content": content}}, **kwargs))

    def event(self, event_type: str, **kwargs: Any) -> GroupAnswer:
        """``add_to_chat``, ``delete_from_chat`` or ``enter_chat``."""
        return self.post(self.document("event", {"Event": {"EventType": event_type}}, **kwargs))

    def click(self, callback_id: str, value: str, name: str = "button", **kwargs: Any) -> GroupAnswer:
        """A button of an earlier message clicked (``attachment``)."""
        body = {"Attachment": {"CallbackId": callback_id, "Actions": {"Name": name, "Value": value, "Type": "button"}}}
        return self.post(self.document("attachment", body, **kwargs))


def webhook_key(url: str) -> str:
    """The key of a webhook URL (for looking it up in the fake API's records)."""
    return dict(parse_qsl(urlsplit(url).query)).get("key", "")
