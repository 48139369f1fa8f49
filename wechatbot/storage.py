"""Each plugin's own key-value storage (``context.storage``), kept in the host's store.

A plugin never sees the host's store: its keys all live under
``plugin:<plugin name>:``, so it cannot read or overwrite the host's dedup,
job, lease, token or schedule keys, nor another plugin's. Values are JSON, so
a plugin keeps numbers, lists and dicts without encoding them itself::

    context.storage["greeting"] = {"text": "hi", "times": 3}
    context.storage.set("seen", True, ttl=3600)
    visits = context.storage.for_user(message).incr("visits")

The store is shared by every worker and host, so what one worker writes the
next message reads, wherever it lands.
"""
from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .store import PREFIXES

if TYPE_CHECKING:
    from .store import Store

_MISSING = object()


def _escape(part: str) -> str:
    """A key part with ``%`` and ``:`` escaped, so no part can forge another scope."""
    return part.replace("%", "%25").replace(":", "%3A")


def _id_of(who: Any, attribute: str) -> str:
    """A user or chat id: a plain string, or taken from a message."""
    value = who if isinstance(who, str) else getattr(who, attribute, None)
    if not isinstance(value, str):
        raise TypeError(f"expected a {attribute.replace('_', ' ')} (a str) or a message, got {type(who).__name__}")
    return value


class PluginStorage:
    """One plugin's keys: ``get``, ``set`` (with ``ttl``), ``add``, ``incr``, ``delete``, ``lock``.

    ``storage[key]`` and ``storage[key] = value`` work too (a missing key is a
    ``KeyError``). :meth:`for_user` and :meth:`for_chat` give the same
    storage scoped to one user or one chat.
    """

    def __init__(self, store: Store, plugin_name: str, scope: str = "") -> None:
        self._store = store
        self._plugin_name = plugin_name
        self._prefix = f"{PREFIXES['plugin']}{_escape(plugin_name)}:{scope}"

    def __repr__(self) -> str:
        return f"PluginStorage({self._prefix!r})"

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise TypeError(f"storage keys are non-empty strings, not {key!r}")
        return self._prefix + key

    @staticmethod
    def _dump(value: Any) -> str:
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except TypeError as exc:
            raise TypeError(f"storage values are JSON (str, int, float, bool, None, list, dict): {exc}") from None

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when it is absent or expired."""
        raw = self._store.get(self._key(key))
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store a JSON value; it expires after ``ttl`` seconds (None: never)."""
        self._store.set(self._key(key), self._dump(value), ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True if it was stored (atomic across hosts)."""
        return self._store.add(self._key(key), self._dump(value), ttl)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the number under ``key`` (absent: 0) atomically; return the new value."""
        return self._store.incr(self._key(key), amount, ttl)

    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""
        self._store.delete(self._key(key))

    def lock(self, name: str, ttl: float = 30.0, wait: float = 10.0) -> AbstractContextManager[bool]:
        """A mutex shared by every worker and host (see ``Store.lock``), private to this plugin."""
        return self._store.lock(self._key(name), ttl, wait)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __contains__(self, key: str) -> bool:
        return self._store.get(self._key(key)) is not None

    def for_user(self, user: Any) -> PluginStorage:
        """This storage scoped to one user: a user id, or the sender of a message."""
        return PluginStorage(self._store, self._plugin_name, f"user:{_escape(_id_of(user, 'from_user'))}:")

    def for_chat(self, chat: Any) -> PluginStorage:
        """This storage scoped to one chat: a chat id, or a message's chat (``chat_id``).

        A message from a one-to-one app conversation has no chat id; its chat
        is the sender's own, so the scope is then the user's.
        """
        if not isinstance(chat, str) and not getattr(chat, "chat_id", None):
            return PluginStorage(self._store, self._plugin_name, f"chat:@{_escape(_id_of(chat, 'from_user'))}:")
        return PluginStorage(self._store, self._plugin_name, f"chat:{_escape(_id_of(chat, 'chat_id'))}:")
