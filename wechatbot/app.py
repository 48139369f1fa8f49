"""``create_app``: the Flask application that WeCom calls.

Reads top to bottom: configuration, store, plugins, one :class:`Bot` per app,
routes. All state lives on the app (``app.extensions["wechatbot"]``), so tests
can build as many apps as they like.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping

from flask import Flask, Response, request

from .bot import Bot, ReplayError
from .callback import QUERY_KEYS, CallbackEndpoint, refuse
from .config import Config, load_config
from .wecom.crypto import SignatureError, WeComCryptoError
from .delivery import Delivery
from .plugins import LoadedPlugin, installed_plugins, load, plugin_manager, select
from .store import open_store

log = logging.getLogger("wechatbot")


class Host:
    """Everything one Flask app serves: config, store and a Bot per WeCom app."""

    def __init__(self, config: Config, extra_plugins: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.store = open_store(config.store)
        self.candidates = installed_plugins(config.plugins_dir, extra_plugins)
        cache: dict[str, LoadedPlugin] = {}
        self.bots: dict[str, Bot] = {}
        for name, app in config.apps.items():
            order = select(config.plugins if app.plugins is None else app.plugins, config.disabled, self.candidates)
            plugins = load(self.candidates, order, cache)
            self.bots[name] = Bot(app, config, plugins, plugin_manager(plugins), self.store)
        self.loaded = cache
        self.delivery = Delivery(config, self.store, self.bots)
        for bot in self.bots.values():
            bot.delivery = self.delivery

    def start(self) -> None:
        """Run the plugins' start-up hooks for every app."""
        for bot in self.bots.values():
            bot.start()
        self.delivery.start()
        for bot in self.bots.values():
            log.info("app [%s] at %s: plugins %s", bot.app.section, bot.app.path, ", ".join(p.name for p in bot.plugins) or "none")


def create_app(config: Config | str | os.PathLike[str] | None = None, *, plugins: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app from a Config, a config file path, or ``$WECHATBOT_CONFIG``.

    ``plugins`` registers extra plugin objects by name (tests and embedding);
    they are selected and ordered like installed ones.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    host = Host(config, plugins)
    host.start()

    app = Flask("wechatbot")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.extensions["wechatbot"] = host

    for bot in host.bots.values():
        app.add_url_rule(bot.app.path, f"verify_{bot.app.name or 'default'}", _verification_view(bot), methods=["GET"])
    # POSTed callbacks, the hot path, are answered before Flask sees them.
    app.wsgi_app = CallbackEndpoint(app.wsgi_app, host.bots.values(), config.max_body)  # type: ignore[method-assign]

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/stats")
    def stats() -> Response:
        """This worker process's counters: retries, deferred replies, overflow, pushes."""
        counters = {"pid": os.getpid(), "queued_jobs": host.delivery.jobs.pending(), **host.delivery.stats}
        return Response(json.dumps(counters), mimetype="application/json")

    @app.errorhandler(413)
    def too_large(_: Exception) -> Response:
        log.warning("refused %s %s: body over max_body (%d bytes)", request.method, request.path, config.max_body)
        return Response(f"request body over {config.max_body} bytes\n", status=413, mimetype="text/plain")

    return app


def _verification_view(bot: Bot) -> Any:
    def verify() -> Response:
        args = request.args
        sig, ts, nonce, echostr = (args.get(k) for k in QUERY_KEYS + ("echostr",))
        if not (sig and ts and nonce and echostr):
            missing = ", ".join(k for k in QUERY_KEYS + ("echostr",) if not args.get(k))
            return _answer(refuse(request.environ, "400 BAD REQUEST", f"missing query parameter(s): {missing}"))
        try:
            # WeCom percent-encodes '+' in echostr; a proxy that decodes it as a form turns it into a space.
            return Response(bot.verify_url(sig, ts, nonce, echostr.replace(" ", "+")), mimetype="text/plain")
        except (SignatureError, ReplayError) as exc:
            return _answer(refuse(request.environ, "403 FORBIDDEN", str(exc)))
        except WeComCryptoError as exc:
            return _answer(refuse(request.environ, "400 BAD REQUEST", str(exc)))

    return verify


def _answer(answer: tuple[str, str, str]) -> Response:
    status, body, mimetype = answer
    return Response(body, status=status, mimetype=mimetype)
