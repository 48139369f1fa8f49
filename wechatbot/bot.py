"""One configured WeCom app at run time: its crypto, its plugins, its API client.

The HTTP layer (``app.py``) only moves bytes; everything a callback means —
check, decrypt, parse, ask the plugins, render and encrypt the answer — is here,
so that the CLI's simulator and the tests reach the same code.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pluggy

from .config import AppConfig, Config
from .context import PluginContext
from .storage import PluginStorage
from .wecom.crypto import SignatureError, WeComCrypto
from .dispatch import first_reply, hook_for, notify_all
from .wecom.messages import Message, parse_message
from .plugins import LoadedPlugin, call_order, inline_prefix
from .wecom.replies import Reply
from .store import Store

if TYPE_CHECKING:
    from .api import WeComAPI
    from .delivery import Delivery

log = logging.getLogger("wechatbot")


class ReplayError(SignatureError):
    """The callback's timestamp is outside ``[wechatbot] replay_window``."""


@dataclass
class Answer:
    """What the HTTP layer sends back: a body (may be empty) and how it was reached."""

    body: str
    message: Message | None = None
    plugin: str | None = None
    fmt: str = "xml"

    @property
    def mimetype(self) -> str:
        """The Content-Type of the body."""
        if not self.body:
            return "text/plain"
        return "application/json" if self.fmt == "json" else "application/xml"


class Bot:
    """The run-time side of one ``[wecom]`` / ``[wecom:NAME]`` section."""

    def __init__(self, app: AppConfig, config: Config, plugins: list[LoadedPlugin], pm: pluggy.PluginManager, store: Store) -> None:
        self.app = app
        self.config = config
        self.plugins = plugins
        self.pm = pm
        self.store = store
        self.crypto = WeComCrypto(app.token, app.encoding_aes_key, app.receive_id)
        self.contexts = {
            p.name: PluginContext(
                p.name, app, config.plugin_config(p.name), PluginStorage(store, p.name),
                api_factory=lambda: self.api, defer_hook=self._defer, notify_hook=self.notify,
            )
            for p in plugins
        }
        # Per hook and part: the leading plugins that may run on the request
        # thread ("inline"), the rest, and all of them.
        self.chains: dict[str, dict[str, list]] = {}
        for hook in ("handle_message", "handle_event"):
            inline, rest = inline_prefix(call_order(pm, hook), plugins)
            self.chains[hook] = {"inline": inline, "rest": rest, "all": inline + rest}
        self.delivery: Delivery  # set by the host, which shares one among its apps

    @cached_property
    def api(self) -> WeComAPI:
        """The app's WeCom API client, made on first use."""
        from .api import client_for

        return client_for(self.app, self.store)

    def _defer(self, context: PluginContext, func: Any, message: Message, *args: Any) -> None:
        self.delivery.defer(context, func, message, *args)

    def context_for(self, plugin_name: str) -> PluginContext:
        """The context handed to ``plugin_name``."""
        return self.contexts[plugin_name]

    def start(self) -> None:
        """Run every plugin's ``startup`` hook; a failure stops start-up naming the plugin."""
        for impl in reversed(self.pm.hook.startup.get_hookimpls()):
            try:
                impl.function(*[{"context": self.context_for(impl.plugin_name)}[a] for a in impl.argnames])
            except Exception as exc:
                raise RuntimeError(
                    f"plugin {impl.plugin_name!r} failed to start for app [{self.app.section}]: {exc}; "
                    f"fix its [plugin:{impl.plugin_name}] section or disable it"
                ) from exc

    def check_timestamp(self, timestamp: str) -> None:
        """Refuse a callback whose timestamp is too far from our clock (a replay)."""
        window = self.config.replay_window
        if not window:
            return
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise ReplayError(f"timestamp {timestamp[:20]!r} is not a number of seconds") from None
        if skew > window:
            raise ReplayError(
                f"timestamp is {skew:.0f} s away from this host's clock (replay_window = {window:g} s): "
                "a replayed request, or this host's clock is wrong"
            )

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Answer WeCom's URL verification: the decrypted echostr."""
        self.check_timestamp(timestamp)
        return self.crypto.verify_url(msg_signature, timestamp, nonce, echostr)

    def handle_callback(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> Answer:
        """Check, decrypt and answer one POSTed callback."""
        self.check_timestamp(timestamp)
        plaintext, fmt = self.crypto.open_callback(body, msg_signature, timestamp, nonce)
        message = parse_message(plaintext)
        xml, plugin = self.delivery.answer(self, message, plaintext)
        return Answer(self.crypto.encrypt_reply(xml, nonce, fmt=fmt) if xml else "", message, plugin, fmt)

    def ask_plugins(self, message: Message, part: str = "all") -> tuple[str | None, Reply | None]:
        """Run the plugins for ``message``: ``(plugin, reply)`` or ``(None, None)``.

        ``part`` is ``"inline"`` for the leading plugins that declared
        ``wechatbot_inline = True``, ``"rest"`` for the others, or ``"all"``.
        """
        chain = self.chains[hook_for(message)][part]
        found = first_reply(self.pm, message, self.context_for, chain) if chain else None
        return found if found else (None, None)

    def has_slow_plugins(self, message: Message) -> bool:
        """Whether some plugin for ``message`` must run off the request thread."""
        return bool(self.chains[hook_for(message)]["rest"])

    def passive_xml(self, reply: Reply | None, message: Message) -> str | None:
        """The plaintext passive answer for ``reply`` (``None`` when there is none).

        Replies that a passive answer cannot carry (text over 2048 bytes,
        markdown) or that WeCom would not show (answers to events such as
        pic_sysphoto) are pushed through ``message/send`` instead, never lost.
        """
        if reply is None:
            return None
        if not reply.fits_passive or not message.accepts_passive_reply:
            self.delivery.push_later(self, reply, message)
            return None
        return reply.to_xml(to_user=message.from_user, from_user=message.to_user, create_time=int(time.time()))

    def notify(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every plugin's ``hook``, isolating failures."""
        return notify_all(self.pm, hook, self.context_for, **kwargs)
