"""The INI file and its environment overrides, as a user writes them."""
from __future__ import annotations

from pathlib import Path

import pytest

from wechatbot.config import ConfigError, config_from_sections, load_config

KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.ini"


def sections(**extra: dict) -> dict:
    base = {"wecom": {"corp_id": "wwcorp", "token": "tok", "encoding_aes_key": KEY}}
    base.update(extra)
    return base


def test_example_config_loads_and_documents_every_key() -> None:
    config = load_config(EXAMPLE, environ={})
    app = config.endpoint()
    assert app.corp_id == "ww0123456789abcdef" and app.receive_id == app.corp_id
    assert config.callback_path == "/callback" and config.plugins == ["*"]
    text = EXAMPLE.read_text(encoding="utf-8")
    from wechatbot.config import ENDPOINT_KEYS, HOST_KEYS

    for key in ENDPOINT_KEYS | HOST_KEYS:
        assert f"\n{key} =" in text or f"\n#{key} =" in text, f"{key} is not documented in config.example.ini"


def test_keys_keep_case_and_percent_is_literal(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text(
        f"[wecom]\ncorp_id = wwcorp\ntoken = tok\nencoding_aes_key = {KEY}\n"
        "[plugin:keyword]\nHello = 100% 你好\n",
        encoding="utf-8",
    )
    config = load_config(ini, environ={})
    assert config.plugin_config("keyword") == {"Hello": "100% 你好"}


def test_environment_overrides_secrets_of_each_app() -> None:
    config = config_from_sections(
        sections(**{"wecom:hr": {"corp_id": "wwcorp", "token": "t2", "encoding_aes_key": KEY}}),
        environ={"WECHATBOT_WECOM__TOKEN": "from-env", "WECHATBOT_WECOM_HR__SECRET": "hr-secret",
                 "WECHATBOT_WECHATBOT__STORE": "memory://"},
    )
    assert config.endpoint().token == "from-env"
    assert config.endpoint("hr").secret == "hr-secret"
    assert config.endpoint("hr").path == "/callback/hr"
    assert config.store == "memory://"


def test_wechatbot_plugins_env_overrides_lists_even_when_empty() -> None:
    config = config_from_sections(
        sections(wechatbot={"plugins": "keyword, *"}, **{"wecom": {**sections()["wecom"], "plugins": "echo"}}),
        environ={"WECHATBOT_PLUGINS": ""},
    )
    assert config.plugins == [] and config.endpoint().plugins is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"wecom": {"corp_id": "wwcorp", "encoding_aes_key": KEY}}, "[wecom] token is missing"),
        ({"wecom": {"corp_id": "wwcorp", "token": "t", "encoding_aes_key": KEY[:42]}}, "[wecom] encoding_aes_key must be"),
        ({"wechatbot": {"reply_deadline": "soon"}}, "[wechatbot] reply_deadline must be a float"),
        ({"wechatbot": {"max_body": "-1"}}, "[wechatbot] max_body must not be negative"),
        ({"wechatbot": {"stor": "memory://"}}, "unknown key [wechatbot] stor"),
        ({"wecom": {**sections()["wecom"], "tokn": "x"}}, "unknown key [wecom] tokn"),
        ({"wechat": {}}, "unknown section [wechat]"),
    ],
)
def test_mistakes_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_sections({**sections(), **change}, environ={})
    assert message in str(info.value)


def test_missing_secret_names_its_environment_variable() -> None:
    with pytest.raises(ConfigError, match="WECHATBOT_WECOM_HR__TOKEN"):
        config_from_sections(sections(**{"wecom:hr": {"corp_id": "c", "encoding_aes_key": KEY}}), environ={})


def test_no_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WECHATBOT_CONFIG"):
        load_config(None, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.ini", environ={})


def test_secrets_stay_out_of_repr() -> None:
    app = config_from_sections(sections(), environ={"WECHATBOT_WECOM__SECRET": "s3cr3t"}).endpoint()
    assert "s3cr3t" not in repr(app) and "tok" not in repr(app) and KEY not in repr(app)


def test_example_config_starts_a_host_with_the_built_in_plugins(request) -> None:
    from wechatbot import create_app
    from wechatbot.testing import simulated_wecom

    from wechatbot.testing.hosts import other_installed_plugins

    # Only the built-in plugins, whatever else is installed.
    others = ", ".join(other_installed_plugins("echo", "keyword", "media"))
    config = load_config(EXAMPLE, environ={"WECHATBOT_WECHATBOT__STORE": "memory://",
                                           "WECHATBOT_WECHATBOT__DISABLED": others})
    app = create_app(config)
    request.addfinalizer(app.extensions["wechatbot"].close)
    names = [p.name for p in app.extensions["wechatbot"].endpoints[""].plugins]
    assert {"echo", "keyword", "media"} <= set(names)
    wecom = simulated_wecom(app)
    assert wecom.text("hello", from_user="zhangsan").content == "你好，zhangsan"
    assert wecom.text("订单42").content == "订单 42 已收到"
    assert wecom.text("anything else").content == "anything else"


def test_bots_need_only_token_and_key() -> None:
    config = config_from_sections({
        "wecom:assistant": {"type": "aibot", "token": "tok", "encoding_aes_key": KEY},
        "wecom:team": {"type": "group_robot", "token": "tok2", "encoding_aes_key": KEY},
    })
    bot, robot = config.endpoint("assistant"), config.endpoint("team")
    assert (bot.type, bot.receive_id, bot.corp_id, bot.path, bot.is_bot) == ("aibot", "", "", "/callback/assistant", True)
    assert (robot.type, robot.receive_id, robot.is_bot) == ("group_robot", "", True)
    assert config_from_sections(sections()).endpoint().type == "app" and not config_from_sections(sections()).endpoint().is_bot


def test_endpoint_type_and_bot_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"\[wecom\] type must be one of app, aibot, group_robot"):
        config_from_sections(sections(wecom={"corp_id": "c", "token": "t", "encoding_aes_key": KEY, "type": "robot"}))
    with pytest.raises(ConfigError, match=r"\[wecom:b\] token is missing"):
        config_from_sections({"wecom:b": {"type": "aibot", "encoding_aes_key": KEY}})
    with pytest.raises(ConfigError, match=r"corp_id is missing"):
        config_from_sections({"wecom": {"token": "t", "encoding_aes_key": KEY}})


def test_stream_settings() -> None:
    config = config_from_sections(sections())
    assert (config.stream_placeholder, config.stream_window) == ("…", 360.0)
    config = config_from_sections(sections(wechatbot={"stream_placeholder": "思考中…", "stream_window": "5"}))
    assert (config.stream_placeholder, config.stream_window) == ("思考中…", 5.0)
    with pytest.raises(ConfigError, match="stream_window must be more than 0 and at most 360"):
        config_from_sections(sections(wechatbot={"stream_window": "600"}))
    with pytest.raises(ConfigError, match="stream_placeholder must be visible"):
        config_from_sections(sections(wechatbot={"stream_placeholder": "  "}))
