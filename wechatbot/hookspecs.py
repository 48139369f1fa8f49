"""Every hook a wechatbot plugin can implement: the whole plugin contract.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names
are the hooks below. It may take any subset of a hook's arguments, by name.

``handle_message`` and ``handle_event`` are called plugin by plugin in the
configured order; the first one that returns something other than ``None``
answers, and one that raises is logged and skipped. Return a ``str`` (a text
reply) or a ``wechatbot.Reply``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .context import PluginContext
    from .wecom.messages import Event, Message

hookspec = pluggy.HookspecMarker("wechatbot")
hookimpl = pluggy.HookimplMarker("wechatbot")


@hookspec
def startup(context: PluginContext) -> None:
    """Check this plugin's config and prepare, once per app when the host starts.

    Raising stops start-up with a message naming the plugin: a broken setting is
    found before the first message, not during it.
    """


@hookspec(firstresult=True)
def handle_message(message: Message, context: PluginContext) -> Any:
    """Answer a user's message (text, image, voice, video, location, link, file).

    Return a ``str``, a ``Reply`` or ``None`` to let the next plugin try.
    """


@hookspec(firstresult=True)
def handle_event(event: Event, context: PluginContext) -> Any:
    """Answer or react to an event (enter_agent, click, change_contact, …).

    Return a ``str``, a ``Reply`` or ``None`` to let the next plugin try.
    """


@hookspec
def plugin_error(plugin_name: str, hook_name: str, exception: BaseException, message: Message, context: PluginContext) -> None:
    """Hear that a plugin raised while handling ``message`` (for alerting).

    The host has already logged the traceback and moved on to the next plugin.
    ``hook_name`` is ``"defer"`` when a job queued with ``context.defer`` raised.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``wechatbot`` command line (``@cli.command()``)."""


@hookspec
def media_saved(path: str, message: Message, context: PluginContext) -> Any:
    """Decide what happens to a file the media plugin saved from ``message``.

    Called for every plugin; return ``"delete"`` to have the file removed once
    all plugins have seen it, anything else keeps it.
    """


@hookspec
def register_bot_commands(register: Any) -> None:
    """Declare chat commands: ``register(func, name=None, aliases=(), help=None)``.

    The same as decorating ``func`` with ``@wechatbot.command`` (docs/commands.md).
    """


@hookspec
def register_schedules(register: Any, context: PluginContext) -> None:
    """Declare scheduled pushes for this app: ``register(name, func, every=… or cron=…, to=[…])``.

    ``func(context)`` returns what to push (docs/schedules.md). Called once
    per app when the host starts, after ``startup``.
    """
