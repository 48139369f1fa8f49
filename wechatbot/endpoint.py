"""One configured WeCom endpoint at run time: its crypto, channel, plugins and API client.

An :class:`Endpoint` is built once per ``[wecom]`` / ``[wecom:NAME]`` section
and never changes afterwards. It knows how to ask its plugins; what a callback
goes through (checks, dedup, deadline, delivery) is the pipeline's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from .channels import Channel, channel_for
from .config import Config, EndpointConfig
from .context import PluginContext
from .conversations import Conversations
from .deferred import call_record
from .dispatch import first_reply, hook_for, notify_all
from .intake import build_intake
from .plugins import LoadedPlugin, PluginStartError, call_order, inline_prefix
from .schedules import Schedule, collect_schedules
from .storage import PluginStorage
from .store import Store
from .wecom.crypto import WeComCrypto
from .wecom.messages import Message
from .wecom.replies import ChunkedReply, Reply

if TYPE_CHECKING:
    from .api import WeComAPI
    from .dedup import Fetched

log = logging.getLogger("wechatbot.endpoint")

#: Queues a durable job record; returns its key (``Jobs.submit``).
SubmitJob = Callable[[dict], str]


@dataclass(frozen=True)
class Plan:
    """What :meth:`Endpoint.plan` decided: the host's own reply, or the steps to ask."""

    plugin: str | None = None
    reply: Reply | None = None
    inline: list = field(default_factory=list)
    rest: list = field(default_factory=list)


class Endpoint:
    """The run-time side of one ``[wecom]`` / ``[wecom:NAME]`` section."""

    def __init__(self, config: EndpointConfig, host_config: Config, plugins: list[LoadedPlugin],
                 pm: pluggy.PluginManager, store: Store, submit_job: SubmitJob, *, path: str | None = None) -> None:
        """``path`` is where its callbacks arrive (default: the configured path)."""
        self.config = config
        self.name = config.name
        self.section = config.section
        self.path = config.path if path is None else path
        self.plugins = plugins
        self.pm = pm
        self.store = store
        # A long-connection bot has no callbacks to open: its frames are not encrypted.
        self.crypto: WeComCrypto | None = (
            None if config.is_websocket else WeComCrypto(config.token, config.encoding_aes_key, config.receive_id))
        self.channel: Channel = channel_for(config)
        self._submit_job = submit_job
        self._host_config = host_config
        #: Questions plugins asked here, waiting in the shared store for their answers.
        self.conversations = Conversations(store, self.name, host_config.ask_timeout, host_config.cancel_words,
                                           host_config.cancel_reply)
        self.contexts = {
            p.name: PluginContext(
                p.name, config, host_config.plugin_config(p.name), PluginStorage(store, p.name),
                conversations=self.conversations,
                api_factory=lambda: self.api, defer_hook=self._defer, notify_hook=self.notify,
            )
            for p in plugins
        }
        #: Decides, before the plugins are asked: answers, help, commands, permissions.
        self.intake = build_intake(host_config, store, self.name, plugins, pm, self.conversations,
                                   (lambda: self.api) if config.secret else None, config.corp_id)
        #: The scheduled pushes of this endpoint, known once its plugins have started.
        self.schedules: list[Schedule] = []
        # Per hook and part: the leading plugins that may run on the request
        # thread ("inline"), the rest, and all of them.
        self.chains: dict[str, dict[str, list]] = {}
        for hook in ("handle_message", "handle_event"):
            inline, rest = inline_prefix(call_order(pm, hook), plugins)
            self.chains[hook] = {"inline": inline, "rest": rest, "all": inline + rest}

    def __repr__(self) -> str:
        return f"Endpoint({self.section!r}, type={self.config.type!r}, path={self.path!r})"

    @property
    def host_config(self) -> Config:
        """The host's settings (``[wechatbot]``), the same for every endpoint."""
        return self._host_config

    @cached_property
    def api(self) -> WeComAPI:
        """The endpoint's WeCom API client, made on first use."""
        from .api import client_for

        return client_for(self.config, self.store)

    def context_for(self, plugin_name: str) -> PluginContext:
        """The context handed to ``plugin_name``."""
        return self.contexts[plugin_name]

    def start(self) -> None:
        """Run every plugin's ``startup`` hook; a failure stops start-up naming the plugin."""
        for impl in reversed(self.pm.hook.startup.get_hookimpls()):
            try:
                impl.function(*[{"context": self.context_for(impl.plugin_name)}[a] for a in impl.argnames])
            except Exception as exc:
                raise PluginStartError(
                    f"plugin {impl.plugin_name!r} failed to start for [{self.section}]: {type(exc).__name__}: {exc}; "
                    f"fix its [plugin:{impl.plugin_name}] section or disable it"
                ) from exc
        self.schedules = collect_schedules(self._host_config, self.pm, self.contexts, self.name)

    def question_key(self, message: Message) -> str | None:
        """The store key of the question ``message`` may answer (``None`` for an event: it answers none)."""
        return None if message.is_event else self.conversations.key_for(message)

    def plan(self, message: Message, question: Fetched | None = None) -> Plan:
        """Decide once what ``message`` is (``intake``): a reply made by the host, or the steps to ask.

        The steps come split like the plugins: the leading inline-safe ones,
        then the rest (run off the request thread). ``question`` is the
        record under :meth:`question_key`, if the caller read it already.
        """
        chain = self.chains[hook_for(message)]["all"]
        try:
            decision = self.intake.decide(message, chain, question)
        except Exception as exc:  # the store is down: no answers, commands or counted plugins
            log.error("[%s] cannot read questions, commands or limits (%s: %s): only unrestricted plugins asked",
                      self.section, type(exc).__name__, exc)
            decision = self.intake.unrestricted(chain)
        if decision.chain is None:
            return Plan(decision.plugin, decision.reply)
        inline, rest = inline_prefix(decision.chain, self.plugins)
        return Plan(inline=inline, rest=rest)

    def answer(self, message: Message) -> tuple[str | None, Reply | None]:
        """Plan ``message`` and ask every step on this thread (a caller already off the request thread)."""
        plan = self.plan(message)
        if plan.reply is not None:
            return plan.plugin, plan.reply
        return self.ask_chain(message, plan.inline + plan.rest)

    def ask_later(self, message: Message) -> tuple[str | None, Reply | None]:
        """The plan's steps that run off the request thread, for a job running them after the answer.

        Planned again: the job may run in another process. A question the
        first try already took is not answered twice.
        """
        plan = self.plan(message)
        if plan.reply is not None:
            return plan.plugin, plan.reply
        return self.ask_chain(message, plan.rest)

    def ask_chain(self, message: Message, chain: list) -> tuple[str | None, Reply | None]:
        """Ask ``chain`` (plugins, or the steps of a :meth:`plan`) in order: ``(plugin, reply)`` or ``(None, None)``."""
        found = first_reply(self.pm, message, self.context_for, chain) if chain else None
        if not found:
            return None, None
        plugin, reply = found
        if isinstance(reply, ChunkedReply) and (message.is_event or not self.channel.streams):  # only messages stream
            reply = self._joined(plugin, reply, message)
        return plugin, reply

    def ask_plugins(self, message: Message, part: str = "all") -> tuple[str | None, Reply | None]:
        """Run the plugins for ``message``: ``(plugin, reply)`` or ``(None, None)``.

        ``part`` is ``"inline"`` for the leading plugins that declared
        ``wechatbot_inline = True``, ``"rest"`` for the others, or ``"all"``.
        """
        return self.ask_chain(message, self.chains[hook_for(message)][part])

    def _joined(self, plugin: str, reply: ChunkedReply, message: Message) -> Reply | None:
        """An iterator reply as one text, for a channel that does not stream (a failure is the plugin's)."""
        try:
            return reply.joined()
        except Exception as exc:
            log.exception("plugin %s failed while its reply was being read, for %s from %s", plugin, message.type, message.from_user)
            self.notify("plugin_error", plugin_name=plugin, hook_name=hook_for(message), exception=exc, message=message)
            return None

    def notify(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every plugin's ``hook``, isolating failures."""
        return notify_all(self.pm, hook, self.context_for, **kwargs)

    def _defer(self, context: PluginContext, func: Callable[..., Any], message: Message, *args: Any) -> None:
        self._submit_job(call_record(self.name, self.channel.dump(message), context.plugin_name, func, list(args)))
