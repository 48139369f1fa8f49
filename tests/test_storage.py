"""A plugin's own storage: JSON values, TTLs, per-user and per-chat scopes, no way into the host's keys."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from wechatbot.storage import PluginStorage
from wechatbot.store import MemoryStore


@pytest.fixture
def store():
    return MemoryStore()


def test_json_values_round_trip_and_expire(store) -> None:
    storage = PluginStorage(store, "weather")
    storage["favourite"] = {"city": "深圳", "days": [1, 2]}
    storage.set("flag", True, ttl=0.2)
    assert storage["favourite"] == {"city": "深圳", "days": [1, 2]}
    assert storage.get("flag") is True and "flag" in storage
    time.sleep(0.3)
    assert storage.get("flag", "gone") == "gone" and "flag" not in storage
    with pytest.raises(KeyError):
        storage["flag"]
    with pytest.raises(TypeError, match="JSON"):
        storage.set("x", object())


def test_keys_stay_under_the_plugins_prefix(store) -> None:
    PluginStorage(store, "weather")["lock:cb:x"] = 1
    assert store.get("lock:cb:x") is None
    assert store.get("plugin:weather:lock:cb:x") == "1"
    assert PluginStorage(store, "other").get("lock:cb:x") is None


def test_per_user_and_per_chat_scopes_do_not_mix(store) -> None:
    storage = PluginStorage(store, "count")
    alice, bob = SimpleNamespace(from_user="alice"), SimpleNamespace(from_user="bob")
    group = SimpleNamespace(from_user="alice", chat_id="wrkSFf")
    assert storage.for_user(alice).incr("n") == 1
    assert storage.for_user("alice").incr("n") == 2
    assert storage.for_user(bob).incr("n") == 1
    assert storage.for_chat(group).incr("n") == 1
    assert storage.for_chat("wrkSFf").get("n") == 1
    assert storage.get("n") is None
    # a user id holding ':' cannot reach another scope
    assert storage.for_user("a:chat").get("n") is None
    with pytest.raises(TypeError):
        storage.for_user(SimpleNamespace())


def test_a_plugin_counts_per_user_through_the_host() -> None:
    from wechatbot import hookimpl
    from wechatbot.testing import make_app, simulated_wecom

    class Counter:
        """Counts each user's messages in its own storage; remembers the contexts it saw."""

        contexts: set = set()

        @hookimpl
        def handle_message(self, message, context):
            self.contexts.add(context)
            assert not hasattr(context, "store")  # the host's store is not handed out
            return f"#{context.storage.for_user(message).incr('messages')}"

    counter = Counter()
    app = make_app(plugins={"counter": counter})
    wecom = simulated_wecom(app)
    assert [wecom.text("a", from_user="u1").content for _ in range(3)] == ["#1", "#2", "#3"]
    assert wecom.text("a", from_user="u2").content == "#1"
    assert len(counter.contexts) == 1  # one stable, hashable context per plugin and app
    store = app.extensions["wechatbot"].store
    assert store.get("plugin:counter:user:u1:messages") == "3"
