"""Allow and deny lists by user, department and tag, admins, rate limits; membership through the API, cached."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from wechatbot.api import WeComAPI
from wechatbot.config import ConfigError
from wechatbot.config import plugin_settings
from wechatbot.permissions import Permissions, Rate
from wechatbot.store import MemoryStore
from wechatbot.permissions import Directory


def msg(user: str, chat: str | None = None):
    return SimpleNamespace(from_user=user, chat_id=chat)


@pytest.fixture
def directory(fake_wecom_api):
    fake_wecom_api.add_app("ww_corp", "s3cret")
    fake_wecom_api.add_user("sales1", [2])
    fake_wecom_api.add_user("outsider", [9])
    fake_wecom_api.add_user("tagged", [9])
    fake_wecom_api.add_tag(5, users=["tagged"], departments=[3])
    fake_wecom_api.add_user("dept3", [3])
    store = MemoryStore()
    api = WeComAPI("ww_corp", "s3cret", None, store, api_base=fake_wecom_api.url)
    return Directory(lambda: api, store, "ww_corp")


def test_allow_by_user_department_and_tag(directory, fake_wecom_api) -> None:
    rules = Permissions({"wx": {"allow": "boss, department:2, tag:5", "deny": "dept3"}}, directory.store, "", directory=directory)
    assert rules.check("wx", msg("boss")) is None
    assert rules.check("wx", msg("sales1")) is None
    assert rules.check("wx", msg("tagged")) is None
    refused = rules.check("wx", msg("outsider"))
    assert refused.reply == "Sorry, you are not allowed to use this." and "outsider" in refused.reason
    assert rules.check("wx", msg("dept3")) is not None  # in tag 5 through department 3, but denied
    calls = len(fake_wecom_api.requests_to("user/get"))
    rules.check("wx", msg("outsider"))
    assert len(fake_wecom_api.requests_to("user/get")) == calls  # membership cached in the store
    assert rules.check("other", msg("outsider")) is None  # no rules: everyone


def test_a_failed_lookup_refuses(directory) -> None:
    rules = Permissions({"wx": {"allow": "department:2"}}, directory.store, "", directory=directory)
    assert rules.check("wx", msg("nobody-knows")) is not None  # user/get answers 60111


def test_command_rules_admins_and_replies() -> None:
    store = MemoryStore()
    rules = Permissions({"wx": {"forecast.allow": "alice", "admins": "root", "refused_reply": "仅限管理员"}},
                        store, "", admins=["ops"], commands={"wx": ["forecast", "cities"]})
    assert rules.check("wx", msg("bob"), "cities") is None
    assert rules.check("wx", msg("bob"), "forecast").reply == "仅限管理员"
    assert rules.check("wx", msg("alice"), "forecast") is None
    assert rules.check("wx", msg("root"), "forecast") is None and rules.check("wx", msg("ops"), "forecast") is None
    with pytest.raises(ConfigError, match=r"\[plugin:wx\] typo.allow: plugin 'wx' has no command 'typo'"):
        Permissions({"wx": {"typo.allow": "x"}}, store, "", commands={"wx": ["forecast"]})


def test_rate_limits_per_user_and_per_chat_admins_exempt() -> None:
    store = MemoryStore()
    rules = Permissions({"wx": {"rate_limit": "2/minute", "chat_rate_limit": "3/minute", "admins": "root"}}, store, "")
    assert [rules.check("wx", msg("a")) for _ in range(2)] == [None, None]
    limited = rules.check("wx", msg("a"))
    assert limited.reply == "Too many requests; please try again later."
    assert rules.check("wx", msg("b", "room")) is None and rules.check("wx", msg("c", "room")) is None
    assert rules.check("wx", msg("d", "room")) is None
    assert rules.check("wx", msg("e", "room")) is not None  # the chat's 3 are used
    assert all(rules.check("wx", msg("root", "room")) is None for _ in range(5))


def test_rule_syntax_errors_name_the_key() -> None:
    assert Rate.parse("3/10s", "x") == Rate(3, 10.0) and Rate.parse("100/day", "x") == Rate(100, 86400.0)
    with pytest.raises(ConfigError, match=r"\[plugin:wx\] rate_limit = 'fast'"):
        Permissions({"wx": {"rate_limit": "fast"}}, MemoryStore(), "")
    with pytest.raises(ConfigError, match="'group:1' is not a user id"):
        Permissions({"wx": {"allow": "group:1"}}, MemoryStore(), "")
    assert plugin_settings({"allow": "x", "city": "sz", "forecast.deny": "y", "a.b": "c"}) == {"city": "sz", "a.b": "c"}


# Through the host


@pytest.fixture
def wechatbot_plugins(kit_plugin):
    return {"kit": kit_plugin, "echo": __import__("wechatbot_echo")}


@pytest.fixture
def wechatbot_sections():
    return {"plugin:kit": {"weather.allow": "boss, department:2", "refused_reply": "仅限销售部",
                           "count.rate_limit": "2/minute", "admins": "root", "Shenzhen": "晴"}}


def test_a_user_outside_the_allow_list_gets_the_refused_reply(wecom, fake_wecom_api) -> None:
    fake_wecom_api.add_user("sales1", [2])
    fake_wecom_api.add_user("outsider", [9])
    assert wecom.text("weather Shenzhen", from_user="boss").content == "Shenzhen: 晴 x1"
    assert wecom.text("weather Shenzhen", from_user="sales1").content == "Shenzhen: 晴 x1"
    assert wecom.text("weather Shenzhen", from_user="outsider").content == "仅限销售部"
    assert wecom.text("weather Shenzhen", from_user="root").content == "Shenzhen: 晴 x1"  # admin
    assert wecom.text("book", from_user="outsider").content == "Which city?"  # only weather is limited


def test_a_command_rate_limit_per_user(wecom) -> None:
    assert [wecom.text("count", from_user="u").content for _ in range(3)] == [
        "count 1", "count 2", "Too many requests; please try again later."]
    assert wecom.text("count", from_user="v").content == "count 1"
    assert [wecom.text("count", from_user="root").content for _ in range(3)] == ["count 1", "count 2", "count 3"]


def test_rule_keys_are_not_handed_to_the_plugin(wechatbot_app) -> None:
    endpoint = next(iter(wechatbot_app.extensions["wechatbot"].endpoints.values()))
    assert endpoint.context_for("kit").config == {"Shenzhen": "晴"}


@pytest.mark.parametrize("wechatbot_sections", [{"plugin:kit": {"rate_limit": "2/minute", "deny": "banned"}}])
def test_ordinary_handlers_are_skipped_for_refused_users_and_rate_limited(wecom) -> None:
    assert wecom.text("plain one", from_user="banned").content == "plain one"  # kit skipped: echo answers
    assert wecom.text("count", from_user="banned").content == "Sorry, you are not allowed to use this."
    assert [wecom.text("plain x", from_user="u").content for _ in range(3)] == [
        "plain handler", "plain handler", "Too many requests; please try again later."]
