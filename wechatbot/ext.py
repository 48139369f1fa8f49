"""``WeComBot``: the Flask extension that answers WeCom's callbacks.

Add it to any Flask app::

    app = Flask(__name__)
    bot = WeComBot(app, config="config.ini")      # or WeComBot() … bot.init_app(app)

It registers a Blueprint with one view per endpoint path (``callback_path``
and ``callback_path/NAME``) answering GET (URL verification) and POST
(callbacks). Every callback is an ordinary Flask request: the app's
``before_request`` / ``after_request`` hooks, error handlers, signals and
``MAX_CONTENT_LENGTH`` apply to it. The host (store, plugins, threads) lives
in ``app.extensions["wechatbot"]``; ``bot.close(app)`` (or
``app.extensions["wechatbot"].close()``) stops its threads and closes the store.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Request, Response, current_app, request

from . import logs, report
from .config import Config, load_config
from .endpoint import Endpoint
from .health import readiness
from .host import Host
from .pipeline import ReplayError
from .wecom.crypto import SignatureError, WeComCryptoError
from .wecom.messages import MessageParseError

log = logging.getLogger("wechatbot")

EXTENSION = "wechatbot"
QUERY_KEYS = ("msg_signature", "timestamp", "nonce")
_READ_CHUNK = 64 * 1024
#: WSGI environ keys that wechatbot.serving's worker sets: when the request arrived
#: (``time.monotonic()``), and a callable, True while requests wait for a free thread.
ARRIVED, CROWDED = "wechatbot.arrived", "wechatbot.crowded"

ConfigSource = Config | str | os.PathLike[str] | None


class WeComBot:
    """The Flask extension: ``WeComBot(app, config=...)`` or ``WeComBot()`` then ``init_app``.

    ``config`` is a :class:`Config` or the path of an INI file; without one,
    ``app.config["WECHATBOT_CONFIG"]``, then ``$WECHATBOT_CONFIG``, then
    ``./config.ini`` is used. ``plugins`` registers extra plugin objects by
    name (selected and ordered like installed ones). ``url_prefix`` is put
    before every callback path. The extension object keeps no state of its
    own: one can serve several apps.
    """

    def __init__(self, app: Flask | None = None, config: ConfigSource = None, *,
                 plugins: Mapping[str, Any] | None = None, url_prefix: str = "") -> None:
        self.config = config
        self.plugins = plugins
        self.url_prefix = url_prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, config: ConfigSource = None, *, url_prefix: str | None = None) -> Host:
        """Build the host for ``app``, start it, and register the callback views."""
        if EXTENSION in app.extensions:
            raise RuntimeError("WeComBot is already registered on this app")
        resolved = resolve_config(config if config is not None else self.config, app)
        prefix = (self.url_prefix if url_prefix is None else url_prefix).strip("/")
        prefix = f"/{prefix}" if prefix else ""
        host = Host(resolved, self.plugins, url_prefix=prefix)
        try:
            host.start()
            app.register_blueprint(callback_blueprint(host, app.response_class))
        except BaseException:
            host.close()
            raise
        app.extensions[EXTENSION] = host
        return host

    @staticmethod
    def host(app: Flask | None = None) -> Host:
        """The host serving ``app`` (default: the current app)."""
        return (app or current_app).extensions[EXTENSION]

    def close(self, app: Flask | None = None) -> None:
        """Stop the threads of ``app``'s host and close its store (call it when the app goes away)."""
        self.host(app).close()


def resolve_config(config: ConfigSource, app: Flask) -> Config:
    """The configuration, first match wins: a Config, a path, ``app.config["WECHATBOT_CONFIG"]``,
    ``$WECHATBOT_CONFIG``, ``./config.ini``."""
    if isinstance(config, Config):
        return config
    if config is not None:
        return load_config(config)
    from_app = app.config.get("WECHATBOT_CONFIG")
    if isinstance(from_app, Config):
        return from_app
    return load_config(from_app or None)


def callback_blueprint(host: Host, response_class: type[Response] = Response) -> Blueprint:
    """A Blueprint with one view (GET and POST) per endpoint of ``host``."""
    blueprint = Blueprint(EXTENSION, __name__)
    max_body = host.config.max_body
    for endpoint in host.endpoints.values():
        if endpoint.crypto is None:  # a long-connection bot: WeCom never calls it
            continue
        name = "callback_" + (endpoint.name.replace(".", "_") or "default")
        blueprint.add_url_rule(endpoint.path, name, _view(host, endpoint, max_body, response_class), methods=["GET", "POST"])
    blueprint.teardown_request(lambda _error: logs.end_request())
    return blueprint


def _view(host: Host, endpoint: Endpoint, max_body: int, response_class: type[Response]) -> Callable[[], Response]:
    pipeline = host.pipeline
    section = endpoint.section

    def refuse(req: Request, status: int, text: str, reason: str, started: float) -> Response:
        """One log line (no secrets), counted by ``reason``, and a plain-text answer."""
        log.warning("refused %s %s from %s: %d %s", req.method, req.path, req.remote_addr, status, text)
        if req.method == "POST":
            report.refused(section, reason, time.monotonic() - started)
        return response_class(text + "\n", status=status, mimetype="text/plain")

    def observed() -> Response:
        """The callback with its id: on every log line about it, and in X-Request-Id.

        Its time is counted from its arrival when the server says when that was
        (``wechatbot.serving``'s worker), so the log line and
        ``wechatbot_callback_seconds`` include the wait for a request thread.
        """
        req = request._get_current_object()  # type: ignore[attr-defined]  # one lookup, not one per use
        started = req.environ.get(ARRIVED) or time.monotonic()
        request_id = logs.begin_request(req.headers.get(logs.REQUEST_ID_HEADER))
        try:
            response = callback(req, started)
        except Exception:
            report.failed(section, time.monotonic() - started)
            raise  # to the app's error handlers; the id stays until teardown, on their lines too
        response.headers[logs.REQUEST_ID_HEADER] = request_id
        return response

    def callback(req: Request, started: float) -> Response:
        query = query_params(req.environ.get("QUERY_STRING", ""))
        sig, ts, nonce = query.get("msg_signature"), query.get("timestamp"), query.get("nonce")
        if req.method == "GET":
            echostr = query.get("echostr")
            if not (sig and ts and nonce and echostr):
                return refuse(req, 400, "missing query parameter(s): " + _missing(query, QUERY_KEYS + ("echostr",)), "query", started)
            try:
                # WeCom percent-encodes '+' in echostr; a proxy that decodes it as a form turns it into a space.
                return response_class(pipeline.verify(endpoint, sig, ts, nonce, echostr.replace(" ", "+")), mimetype="text/plain")
            except SignatureError as exc:
                return refuse(req, 403, str(exc), _refusal(exc), started)
            except WeComCryptoError as exc:
                return refuse(req, 400, str(exc), "crypto", started)
        if not (sig and ts and nonce):
            return refuse(req, 400, "missing query parameter(s): " + _missing(query, QUERY_KEYS), "query", started)
        body = _read_body(req, max_body)
        if body is None:
            return refuse(req, 413, f"request body over {max_body} bytes", "too_large", started)
        try:
            environ = req.environ
            answer = pipeline.callback(endpoint, body, sig, ts, nonce, environ.get(ARRIVED), environ.get(CROWDED))
        except SignatureError as exc:
            return refuse(req, 403, str(exc), _refusal(exc), started)
        except (WeComCryptoError, MessageParseError) as exc:
            return refuse(req, 400, str(exc), "parse" if isinstance(exc, MessageParseError) else "crypto", started)
        report.answered(section, answer, time.monotonic() - started)
        return response_class(answer.body, mimetype=answer.mimetype)

    return observed


def _refusal(exc: SignatureError) -> str:
    """The reason label of a 403: a stale timestamp, or a signature that does not match."""
    return "replay" if isinstance(exc, ReplayError) else "signature"


def _read_body(request: Request, max_body: int) -> bytes | None:
    """The request body through werkzeug (chunked bodies too); ``None`` when over ``max_body``.

    When the app sets ``MAX_CONTENT_LENGTH`` werkzeug enforces it, and its 413
    reaches the app's error handlers like any route's.
    """
    if current_app.config.get("MAX_CONTENT_LENGTH") is not None:
        return request.get_data(cache=False)
    length = request.content_length
    if length is not None:
        if length > max_body:
            return None
        if "stream" not in request.__dict__:
            # Nothing (a before_request hook, say) has read the body yet: take it from the
            # server as it is, without werkzeug's stream wrappers (a fifth of the view's own time).
            return request.environ["wsgi.input"].read(length) if length else b""
        return request.get_data(cache=False)
    stream, chunks, size = request.stream, [], 0
    while chunk := stream.read(_READ_CHUNK):
        size += len(chunk)
        if size > max_body:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _missing(query: Mapping[str, str], keys: tuple[str, ...]) -> str:
    return ", ".join(k for k in keys if not query.get(k))


def query_params(query_string: str) -> dict[str, str]:
    """The query string's parameters, as ``dict(parse_qsl(...))`` gives them.

    WeCom's query is plain ``name=value&...`` (hex, digits): that is split
    directly; anything percent- or plus-encoded goes through ``parse_qsl``.
    Blank values are dropped either way.
    """
    if "%" in query_string or "+" in query_string:
        return dict(parse_qsl(query_string))
    return {name: value for name, _, value in (part.partition("=") for part in query_string.split("&")) if value}


def create_app(config: ConfigSource = None, *, plugins: Mapping[str, Any] | None = None) -> Flask:
    """A Flask app serving the callbacks, ``/healthz``, ``/readyz`` and ``/metrics`` (``gunicorn wsgi:app``).

    ``config`` is a Config or a path (default: ``$WECHATBOT_CONFIG``, then
    ``./config.ini``); ``plugins`` registers extra plugin objects by name.
    """
    app = Flask("wechatbot")
    host = WeComBot(plugins=plugins).init_app(app, config)

    @app.get("/healthz")
    def healthz() -> Response:
        """Alive: this process answers HTTP."""
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        """Ready: the store and the queue answer (503 and the reason when one does not)."""
        ready, text = readiness(host.store, host.jobs.pending)
        return Response(text, status=200 if ready else 503, mimetype="text/plain")

    @app.get("/metrics")
    def metrics() -> Response:
        """Every worker's series added up, in Prometheus text format."""
        from .metrics import render

        body, content_type = render(_jobs_waiting(host))
        return Response(body, content_type=content_type)

    return app


def _jobs_waiting(host: Host) -> Callable[[], int | None]:
    def waiting() -> int | None:
        try:
            return host.jobs.pending()
        except Exception:  # the queue is down: /readyz says so; the other series still count
            return None

    return waiting
