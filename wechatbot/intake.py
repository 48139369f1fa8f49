"""What a message is, decided once before the plugins are asked.

In this order:

1. an answer to a question a plugin asked (``context.ask``): it goes to that
   plugin's ``then`` and to nobody else; a cancel word drops the question;
2. ``help`` / ``help NAME``: answered by the host from the declarations;
3. a command: checked against the permissions and rate limits, its words
   bound to its arguments (a bad one gets the usage), then run;
4. anything else: the plugins' ``handle_message`` / ``handle_event`` in
   their order, without the plugins this sender may not use, each plugin
   with rate limits counting a use when it is reached.

The result is a :class:`Decision`: a reply the host made itself, or the chain
of steps to ask (the same shape as pluggy's implementations, so the one
isolated caller in ``dispatch`` runs them: a step that raises is logged and
reported like any plugin). Nothing here calls back into the pipeline.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .commands import CommandBook, UsageError
from .wecom.replies import Reply, TextReply

if TYPE_CHECKING:
    from .conversations import Conversations
    from .dedup import Fetched
    from .metadata import PluginMetadata
    from .permissions import Permissions

log = logging.getLogger("wechatbot.intake")

HOST = "(host)"


@dataclass(frozen=True)
class Step:
    """One call in a chain: what ``dispatch`` needs of a pluggy implementation."""

    plugin_name: str
    function: Callable[..., Any] = field(repr=False)
    argnames: tuple[str, ...] = ("message", "context")
    hookwrapper: bool = False
    wrapper: bool = False


@dataclass(frozen=True)
class Decision:
    """A reply the host made (``reply``, from ``plugin``), or the ``chain`` to ask."""

    reply: Reply | None = None
    plugin: str | None = None
    chain: list[Any] | None = None


def command_text(message: Any) -> str | None:
    """The text a command is read from: a text message's content.

    In a group, the AI bot's and the group robot's parsers have already
    taken the leading @mention off ``content`` (it is in ``mention``).
    """
    content = getattr(message, "content", None)
    if getattr(message, "is_event", False) or not isinstance(content, str):
        return None
    return content


class Intake:
    """The deciding step of one endpoint."""

    def __init__(self, conversations: Conversations, commands: CommandBook, permissions: Permissions,
                 metadata: Mapping[str, PluginMetadata] | None = None, *, plugins: Iterable[str] = ()) -> None:
        self.conversations = conversations
        self.commands = commands
        self.permissions = permissions
        self.metadata = dict(metadata or {})
        self.plugins = set(plugins)
        self.governed = {name for name in self.plugins if permissions.governs(name)}

    def decide(self, message: Any, chain: list[Any], question: Fetched | None = None) -> Decision:
        """What to do with ``message``, given the plugins' ``chain`` for its hook.

        ``question``: the sender's pending question as already read from the
        store (``None``: read it here).
        """
        if not getattr(message, "is_event", False):
            answered = self._answer(message, question)
            if answered is not None:
                return answered
            text = command_text(message)
            invocation = self.commands.read(text) if text is not None and self.commands else None
            if invocation is not None:
                return self._command(message, invocation)
        return Decision(chain=self._guarded(message, chain))

    def unrestricted(self, chain: list[Any]) -> Decision:
        """The plugins no rule governs, for when the rules cannot be read (a rule never opens by accident)."""
        return Decision(chain=[impl for impl in chain if impl.plugin_name not in self.governed])

    def _answer(self, message: Any, question: Fetched | None) -> Decision | None:
        pending = self.conversations.take(message, question)
        if pending is None:
            return None
        if self.conversations.is_cancel(message):
            return Decision(TextReply(self.conversations.cancel_reply), pending.plugin)
        if pending.plugin not in self.plugins:
            log.warning("answer for plugin %s dropped: it is not enabled here", pending.plugin)
            return None
        try:
            then = pending.handler()
        except (ImportError, AttributeError) as exc:
            log.error("answer for plugin %s dropped: cannot import %s (%s)", pending.plugin, pending.then, exc)
            return None
        state = pending.state
        return Decision(chain=[Step(pending.plugin, lambda message, context: then(message, context, state))])

    def _command(self, message: Any, invocation: Any) -> Decision:
        cmd = invocation.command
        if cmd is None:
            return Decision(TextReply(self.commands.help_reply(invocation.words, self.metadata)), HOST)
        verdict = self.permissions.check(cmd.plugin, message, cmd.name)
        if verdict is not None:
            log.info("refused command %s: %s", cmd.name, verdict.reason)
            return Decision(TextReply(verdict.reply), HOST)
        try:
            cmd.bind(invocation.words)
        except UsageError as exc:
            return Decision(TextReply(self.commands.usage_reply(cmd, str(exc))), HOST)
        words = invocation.words
        return Decision(chain=[Step(cmd.plugin, lambda message, context: cmd.run(words, message, context))])

    def _guarded(self, message: Any, chain: list[Any]) -> list[Any]:
        """The chain without plugins the sender may not use; rate limits counted when reached."""
        if not self.governed:
            return chain
        guarded = []
        for impl in chain:
            if impl.plugin_name not in self.governed:
                guarded.append(impl)
            elif self.permissions.check(impl.plugin_name, message, count=False) is None:
                guarded.append(self._counted(impl, "event" if getattr(message, "is_event", False) else "message"))
        return guarded

    def _counted(self, impl: Any, arg: str) -> Step:
        names = tuple(impl.argnames)

        def call(message: Any, context: Any) -> Any:
            verdict = self.permissions.check(impl.plugin_name, message, count=True)
            if verdict is not None:
                return TextReply(verdict.reply)
            values = {arg: message, "context": context}
            return impl.function(*[values[name] for name in names])

        return Step(impl.plugin_name, call, (arg, "context"))


def build_intake(config: Any, store: Any, endpoint: str, plugins: list[Any], pm: Any, conversations: Conversations,
                 api: Callable[[], Any] | None, corp_id: str) -> Intake:
    """The intake of one endpoint: its plugins' commands, their rules, the shared pending questions.

    ``api`` makes the endpoint's WeCom API client (department and tag
    lookups), or is None when the endpoint has none. A broken declaration or
    rule is a start-up error naming the plugin or key.
    """
    from .commands import collect_commands
    from .permissions import Directory, Permissions

    commands = collect_commands(plugins, pm)
    book = CommandBook(commands, config.command_prefix)
    declared: dict[str, list[str]] = {}
    for cmd in commands:
        declared.setdefault(cmd.plugin, []).append(cmd.name)
    names = [p.name for p in plugins]
    directory = Directory(api, store, corp_id, config.membership_ttl) if api is not None else None
    permissions = Permissions({name: config.plugin_settings.get(name, {}) for name in names}, store, endpoint,
                              admins=config.admins, directory=directory, refused_reply=config.refused_reply,
                              limited_reply=config.limited_reply, commands={name: declared.get(name, []) for name in names})
    return Intake(conversations, book, permissions, {p.name: p.metadata for p in plugins}, plugins=names)
