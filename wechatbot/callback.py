"""The callback endpoint as a small WSGI layer in front of Flask.

Every message WeCom pushes arrives here, so this is the hot path: it reads the
query string and body straight from the WSGI environ and writes the answer
itself, which costs a fraction of a Flask request. Everything else (URL
verification, ``/healthz``, errors) goes on to the Flask app.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

from .bot import Bot, ReplayError
from .wecom.crypto import SignatureError, WeComCryptoError
from .wecom.messages import MessageParseError

log = logging.getLogger("wechatbot")

QUERY_KEYS = ("msg_signature", "timestamp", "nonce")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


class CallbackEndpoint:
    """Answers WeCom's POSTed callbacks for each app's path; passes the rest on."""

    def __init__(self, wsgi_app: WSGIApp, bots: Iterable[Bot], max_body: int) -> None:
        self.wsgi_app = wsgi_app
        self.bots = {bot.app.path: bot for bot in bots}
        self.max_body = max_body

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        bot = self.bots.get(environ.get("PATH_INFO", ""))
        if bot is None or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        status, body, mimetype = self.answer(bot, environ)
        data = body.encode("utf-8")
        start_response(status, [("Content-Type", mimetype), ("Content-Length", str(len(data)))])
        return [data]

    def answer(self, bot: Bot, environ: dict) -> tuple[str, str, str]:
        """``(status, body, content type)`` for one POSTed callback."""
        query = query_params(environ.get("QUERY_STRING", ""))
        sig, ts, nonce = (query.get(k) for k in QUERY_KEYS)
        if not (sig and ts and nonce):
            missing = ", ".join(k for k in QUERY_KEYS if not query.get(k))
            return refuse(environ, "400 BAD REQUEST", f"missing query parameter(s): {missing}")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return refuse(environ, "400 BAD REQUEST", "Content-Length is not a number")
        if length > self.max_body:
            return refuse(environ, "413 REQUEST ENTITY TOO LARGE", f"request body over {self.max_body} bytes")
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            answer = bot.handle_callback(body, sig, ts, nonce)
        except (SignatureError, ReplayError) as exc:
            return refuse(environ, "403 FORBIDDEN", str(exc))
        except (WeComCryptoError, MessageParseError) as exc:
            return refuse(environ, "400 BAD REQUEST", str(exc))
        if log.isEnabledFor(logging.DEBUG):
            message = answer.message
            kind = f"event {message.event}" if message.is_event else f"{message.type} message"
            log.debug("[%s] %s from %s answered by %s", bot.app.section, kind, message.from_user, answer.plugin or "no plugin")
        return "200 OK", answer.body, answer.mimetype


def query_params(query_string: str) -> dict[str, str]:
    """The query string's parameters, as ``dict(parse_qsl(...))`` gives them.

    WeCom's query is plain ``name=value&...`` (hex, digits): that is split
    directly; anything percent- or plus-encoded goes through ``parse_qsl``.
    Blank values are dropped either way.
    """
    if "%" in query_string or "+" in query_string:
        return dict(parse_qsl(query_string))
    return {name: value for name, _, value in (part.partition("=") for part in query_string.split("&")) if value}


def refuse(environ: dict, status: str, reason: str) -> tuple[str, str, str]:
    """Log a refused request (without secrets) and build its plain-text answer."""
    log.warning("refused %s %s from %s: %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                environ.get("REMOTE_ADDR"), status.split()[0], reason)
    return status, reason + "\n", "text/plain; charset=utf-8"
