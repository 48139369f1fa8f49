"""What a plugin receives with every call: which app, its own settings, its tools."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import WechatbotError

if TYPE_CHECKING:
    from .api import WeComAPI
    from .config import AppConfig
    from .conversations import Conversations
    from .storage import PluginStorage
    from .wecom.replies import Reply


class NoAPIError(WechatbotError, RuntimeError):
    """A plugin asked for the WeCom API but the app has no ``secret`` configured."""


@dataclass(frozen=True, eq=False)
class PluginContext:
    """One plugin's view of one app.

    ``config`` is the plugin's ``[plugin:NAME]`` section as plain strings,
    ``log`` a logger named ``wechatbot.plugin.NAME``, ``storage`` the
    plugin's own key-value storage and ``api`` the app's WeCom API client.

    A context is made once per plugin and app and never changes: two
    contexts are equal (and hash alike) when they are the same plugin on the
    same app, so a plugin may key its own caches by ``context``.
    """

    plugin_name: str
    app: AppConfig
    config: dict[str, str] = field(default_factory=dict)
    storage: PluginStorage | None = field(default=None, repr=False)
    conversations: Conversations | None = field(default=None, repr=False)
    api_factory: Callable[[], WeComAPI] | None = field(default=None, repr=False)
    defer_hook: Callable[..., Any] | None = field(default=None, repr=False)
    notify_hook: Callable[..., list[tuple[str, Any]]] | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginContext):
            return NotImplemented
        return (self.plugin_name, self.app.name) == (other.plugin_name, other.app.name)

    def __hash__(self) -> int:
        return hash((PluginContext, self.plugin_name, self.app.name))

    @property
    def log(self) -> logging.Logger:
        """The plugin's logger (``wechatbot.plugin.<name>``)."""
        return logging.getLogger(f"wechatbot.plugin.{self.plugin_name}")

    @property
    def app_name(self) -> str:
        """The app's name: ``""`` for ``[wecom]``, ``NAME`` for ``[wecom:NAME]``."""
        return self.app.name

    @property
    def api(self) -> WeComAPI:
        """The app's WeCom API client (needs ``secret`` in the app's section)."""
        if self.api_factory is None or not self.app.secret:
            raise NoAPIError(
                f"plugin {self.plugin_name!r} needs the WeCom API: set secret (and agent_id) in [{self.app.section}]"
            )
        return self.api_factory()

    def defer(self, func: Callable[..., Any], message: Any, *args: Any) -> None:
        """Run ``func(message, context, *args)`` after the HTTP answer has left.

        Whatever it returns (a ``str`` or a ``Reply``) is pushed to the user who
        sent ``message`` through ``message/send``. ``func`` must be importable
        (a module-level function) and ``args`` plain JSON values, because the
        job is stored until it has run and may run in another process.
        """
        if self.defer_hook is None:
            raise RuntimeError("this host was built without deferred delivery")
        self.defer_hook(self, func, message, *args)

    def ask(self, message: Any, question: str, then: Callable[..., Any], state: Any = None, timeout: float | None = None) -> Reply:
        """Ask the sender of ``message`` a question; return it as the reply to send.

        The same user's next message in the same chat is the answer: the host
        calls the module-level ``then(answer, context, state)`` with it before
        any other plugin sees it, on whichever worker or host it arrives, and
        sends what ``then`` returns (which may ask again). ``state`` is plain
        JSON carried to ``then``. After ``timeout`` seconds (default
        ``[wechatbot] ask_timeout``) or a cancel word the question is dropped.
        """
        if self.conversations is None:
            raise RuntimeError("this context is not attached to a host")
        return self.conversations.ask(self.plugin_name, message, question, then, state, timeout)

    def notify(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call ``hook`` on every plugin of this app (e.g. ``media_saved``).

        Each plugin gets its own context; one that raises is logged and
        skipped. Returns ``(plugin name, result)`` pairs.
        """
        if self.notify_hook is None:
            raise RuntimeError("this context is not attached to a host")
        return self.notify_hook(hook, **kwargs)

    def download_bot_file(self, message: Any, dest: str | os.PathLike[str] | None = None) -> Path:
        """Fetch the file of an AI bot image, file or video message, decrypted, into ``dest``.

        The URL serves the file encrypted (AES-256-CBC with the bot's key, or
        the long connection's per-message ``aeskey``) and stays valid for 5
        minutes; it streams through in chunks, so large files never sit in
        memory. ``dest`` defaults to a new temporary file. Returns its path.
        """
        from .api.bot_files import download_bot_file

        url = getattr(message, "url", "")
        if not url:
            raise ValueError(f"a {getattr(message, 'type', '?')} message has no file url to download")
        key = getattr(message, "aeskey", "") or self.app.encoding_aes_key
        return download_bot_file(url, key, dest)
