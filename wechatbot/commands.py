"""Commands: declared by plugins, parsed by the host, with help and usage replies.

A command is a function whose parameters are its arguments, typed by their
annotations (``str``, ``int``, ``float``, ``bool``); a parameter with a
default is optional, ``*words`` takes every remaining word, and a last ``str``
parameter takes the rest of the line. Parameters named ``message`` and
``context`` are not arguments: the host passes the message and the plugin's
context. A plugin declares commands with the decorator::

    @command("weather", aliases=["天气"])
    def weather(city: str, days: int = 1, context=None):
        \"\"\"The forecast for a city.\"\"\"   # the help line (or help="...")

or with the ``register_bot_commands(register)`` hook, ``register(func, name=…)``.

The host reads a message as a command when its first word (after the
configured prefix, ``[wechatbot] command_prefix``: none or ``/``) is a
declared name or alias. It answers ``help`` and ``help NAME`` itself, and a
bad argument with the command's usage. Text that is no command goes on to the
plugins' ``handle_message`` as always.
"""
from __future__ import annotations

import inspect
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from .metadata import PluginMetadata

COMMAND_ATTRIBUTE = "__wechatbot_command__"
INJECTED = ("message", "context")
HELP = "help"

_TYPE_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "yes or no"}
_TRUE = {"1", "true", "yes", "y", "on", "是", "开"}
_FALSE = {"0", "false", "no", "n", "off", "否", "关"}


class CommandError(ValueError):
    """A command cannot be declared as written; the message names the function."""


class UsageError(ValueError):
    """A user's command does not fit its declaration; the message is the reply."""


@dataclass(frozen=True)
class Argument:
    """One typed argument of a command."""

    name: str
    kind: type = str
    required: bool = True
    default: Any = None
    many: bool = False  # *words: every remaining word

    @property
    def label(self) -> str:
        """How the usage line shows it: ``CITY``, ``[DAYS]``, ``[WORDS...]``."""
        name = self.name.upper()
        if self.many:
            return f"[{name}...]"
        return name if self.required else f"[{name}]"

    def convert(self, word: str) -> Any:
        """``word`` as this argument's type, or a UsageError saying what was expected."""
        try:
            if self.kind is bool:
                folded = word.casefold()
                if folded in _TRUE or folded in _FALSE:
                    return folded in _TRUE
                raise ValueError(word)
            return self.kind(word)
        except ValueError:
            raise UsageError(f"{self.name.upper()} must be {_TYPE_NAMES[self.kind]}, not {word!r}") from None


@dataclass(frozen=True)
class Command:
    """A declared command: its name, aliases, help line, arguments and function."""

    name: str
    func: Callable[..., Any] = field(repr=False)
    help: str = ""
    aliases: tuple[str, ...] = ()
    plugin: str = ""
    arguments: tuple[Argument, ...] = ()
    injected: tuple[str, ...] = ()

    def usage(self, prefix: str = "") -> str:
        """``/weather CITY [DAYS]``."""
        return " ".join([prefix + self.name, *(a.label for a in self.arguments)])

    def bind(self, words: list[str]) -> tuple[list[Any], dict[str, Any]]:
        """The function's positional and keyword arguments for ``words``, or a UsageError."""
        words = list(words)
        args: list[Any] = []
        for index, argument in enumerate(self.arguments):
            last = index == len(self.arguments) - 1
            if argument.many:
                args.extend(argument.convert(word) for word in words)
                words = []
            elif words:
                if last and argument.kind is str and len(words) > 1:
                    args.append(" ".join(words))
                    words = []
                else:
                    args.append(argument.convert(words.pop(0)))
            elif argument.required:
                raise UsageError(f"{argument.name.upper()} is missing")
            else:
                args.append(argument.default)
        if words:
            raise UsageError(f"too many arguments: {' '.join(words)!r}")
        return args, {}

    def run(self, words: list[str], message: Any, context: Any) -> Any:
        """Call the function with ``words`` as its arguments (UsageError when they do not fit)."""
        args, kwargs = self.bind(words)
        available = {"message": message, "context": context}
        kwargs.update({name: available[name] for name in self.injected})
        return self.func(*args, **kwargs)


def declare(func: Callable[..., Any], name: str | None = None, *, aliases: Iterable[str] = (), help: str | None = None,
            plugin: str = "") -> Command:
    """A :class:`Command` read from ``func``'s signature; CommandError when it cannot be one."""
    label = getattr(func, "__qualname__", repr(func))
    try:
        signature = inspect.signature(func, eval_str=True)
    except (NameError, TypeError, ValueError) as exc:
        raise CommandError(f"command function {label} has a signature the host cannot read: {exc}") from None
    arguments, injected = [], []
    for index, param in enumerate(signature.parameters.values()):
        if param.name in INJECTED or (index == 0 and param.name == "self"):
            if param.name != "self":
                injected.append(param.name)
            continue
        if param.kind in (param.KEYWORD_ONLY, param.VAR_KEYWORD):
            raise CommandError(f"command {label}: parameter {param.name!r} must be positional (or named message/context)")
        kind = str if param.annotation is param.empty else param.annotation
        if kind not in _TYPE_NAMES:
            raise CommandError(f"command {label}: parameter {param.name!r} has type {kind!r}; use str, int, float or bool")
        many = param.kind is param.VAR_POSITIONAL
        if arguments and arguments[-1].many:
            raise CommandError(f"command {label}: nothing may follow *{arguments[-1].name}")
        required = param.default is param.empty and not many
        if required and arguments and not arguments[-1].required:
            raise CommandError(f"command {label}: required {param.name!r} follows an optional argument")
        arguments.append(Argument(param.name, kind, required, None if param.default is param.empty else param.default, many))
    command_name = (name or getattr(func, "__name__", "")).strip()
    if not command_name or any(c.isspace() for c in command_name):
        raise CommandError(f"command {label}: the name must be one word, not {command_name!r}")
    doc = inspect.getdoc(func) or ""
    return Command(command_name, func, (help if help is not None else doc.partition("\n")[0]).strip(),
                   tuple(a.strip() for a in aliases), plugin, tuple(arguments), tuple(injected))


def command(name: str | None = None, *, aliases: Iterable[str] = (), help: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the decorated function a command (name: the function's own by default).

    The help line is ``help`` or the first line of the docstring. The
    function stays callable as it was.
    """
    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        setattr(func, COMMAND_ATTRIBUTE, declare(func, name, aliases=aliases, help=help))
        return func

    return mark


def marked_commands(plugin: Any, plugin_name: str) -> list[Command]:
    """The commands declared with ``@command`` on a plugin (a module's functions, an object's methods)."""
    found = []
    for attribute in sorted(dir(plugin)):
        if attribute.startswith("__"):
            continue
        value = getattr(plugin, attribute, None)
        declared = getattr(value, COMMAND_ATTRIBUTE, None)
        if isinstance(declared, Command):
            found.append(Command(declared.name, value, declared.help, declared.aliases, plugin_name,
                                 declared.arguments, declared.injected))
    return found


def split_words(text: str) -> list[str]:
    """Words as a shell splits them (quotes group), or plain whitespace when quotes do not pair."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


@dataclass(frozen=True)
class Invocation:
    """A message read as a command: which one (``None`` for ``help``) and its words."""

    command: Command | None
    words: list[str]


class CommandBook:
    """The commands of one endpoint's enabled plugins, found by name or alias."""

    def __init__(self, commands: Iterable[Command], prefix: str = "") -> None:
        self.prefix = prefix
        self.commands = list(commands)
        self._by_word: dict[str, Command] = {}
        for cmd in self.commands:
            for word in (cmd.name, *cmd.aliases):
                key = word.casefold()
                if key == HELP:
                    raise CommandError(f"plugin {cmd.plugin!r} declares a command {word!r}: the host answers help itself")
                other = self._by_word.get(key)
                if other is not None:
                    raise CommandError(f"command {word!r} is declared by plugin {other.plugin!r} and by plugin {cmd.plugin!r}; "
                                       "rename one or disable a plugin")
                self._by_word[key] = cmd

    def __bool__(self) -> bool:
        return bool(self.commands)

    def find(self, name: str) -> Command | None:
        """The command called ``name`` (or one of its aliases)."""
        return self._by_word.get(name.casefold())

    def read(self, text: str) -> Invocation | None:
        """``text`` as a command, or None when it is none (it then goes to the plugins)."""
        text = text.strip()
        if self.prefix:
            if not text.startswith(self.prefix):
                return None
            text = text[len(self.prefix):]
        first, rest = (text.split(None, 1) + [""])[:2] if text else ("", "")
        if not first:
            return None
        if first.casefold() == HELP and self.commands:
            return Invocation(None, split_words(rest))
        found = self.find(first)
        return Invocation(found, split_words(rest)) if found else None

    def usage_reply(self, cmd: Command, problem: str) -> str:
        """What a user who got a command wrong is told."""
        return f"{problem}\nusage: {cmd.usage(self.prefix)}" + (f"\n{cmd.help}" if cmd.help else "")

    def help_reply(self, words: list[str], metadata: Mapping[str, PluginMetadata] | None = None) -> str:
        """The answer to ``help`` (every command, one line each) or ``help NAME``."""
        metadata = metadata or {}
        if not words:
            lines = [f"{cmd.usage(self.prefix)} — {cmd.help}" if cmd.help else cmd.usage(self.prefix) for cmd in self.commands]
            return "\n".join(["Commands:", *lines, f"Send {self.prefix}help NAME for more about one."])
        topic = words[0].removeprefix(self.prefix) if self.prefix else words[0]
        cmd = self.find(topic)
        if cmd is not None:
            lines = [f"usage: {cmd.usage(self.prefix)}"]
            if cmd.help:
                lines.append(cmd.help)
            if cmd.aliases:
                lines.append("also: " + ", ".join(self.prefix + a for a in cmd.aliases))
            about = metadata.get(cmd.plugin)
            lines.append(f"from plugin {cmd.plugin}" + (f": {about.description}" if about and about.description else ""))
            return "\n".join(lines)
        if topic in metadata or any(c.plugin == topic for c in self.commands):
            about = metadata.get(topic)
            lines = [f"{topic}" + (f": {about.description}" if about and about.description else "")]
            if about and about.usage:
                lines.append(about.usage)
            lines.extend(f"{c.usage(self.prefix)} — {c.help}" for c in self.commands if c.plugin == topic)
            if about and about.homepage:
                lines.append(about.homepage)
            return "\n".join(lines)
        return f"no command or plugin called {topic!r}; send {self.prefix}help for the list"


def collect_commands(plugins: Iterable[Any], pm: Any) -> list[Command]:
    """Every command the given loaded plugins declare, by decorator or ``register_bot_commands``.

    ``plugins`` are ``LoadedPlugin``s (``.name``, ``.plugin``) in call order;
    a hook that raises stops start-up with a message naming the plugin.
    """
    found: list[Command] = []
    for loaded in plugins:
        found.extend(marked_commands(loaded.plugin, loaded.name))
    names = {loaded.name for loaded in plugins}
    for impl in reversed(pm.hook.register_bot_commands.get_hookimpls()):
        if impl.plugin_name not in names:
            continue

        def register(func: Callable[..., Any], name: str | None = None, *, aliases: Iterable[str] = (),
                     help: str | None = None, plugin: str = impl.plugin_name) -> None:
            found.append(declare(func, name, aliases=aliases, help=help, plugin=plugin))

        try:
            impl.function(register)
        except CommandError:
            raise
        except Exception as exc:
            raise CommandError(f"plugin {impl.plugin_name!r} failed in register_bot_commands: {exc}") from exc
    return found
