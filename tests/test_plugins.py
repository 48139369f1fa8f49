"""Plugins: found, enabled, ordered, isolated and switched off by name."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from wechatbot import hookimpl
from wechatbot.plugins import PluginLoadError, installed_plugins, select
from wechatbot.testing import app_sections, ini_text, make_app, simulated_wecom
from wechatbot.testing.hosts import other_installed_plugins


class Says:
    """A plugin that answers every text with a fixed word and records its calls."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls = 0

    @hookimpl
    def handle_message(self, message):
        self.calls += 1
        return self.word


class Broken:
    @hookimpl
    def handle_message(self, message):
        raise RuntimeError("plugin bug")


class Silent:
    @hookimpl
    def handle_message(self):
        return None


def test_select_expands_star_in_place_and_drops_disabled() -> None:
    available = ["echo", "keyword", "media", "weather"]
    assert select(["keyword", "*", "echo"], [], available) == ["keyword", "media", "weather", "echo"]
    assert select(["*"], ["media"], available) == ["echo", "keyword", "weather"]
    assert select([], [], available) == []


def test_select_refuses_a_plugin_that_is_not_installed() -> None:
    with pytest.raises(PluginLoadError, match=r"'wether' is listed .* not installed \(installed: echo, keyword\)"):
        select(["wether"], [], ["echo", "keyword"])


def test_configured_order_decides_who_answers() -> None:
    plugins = {"a": Says("from a"), "b": Says("from b")}
    others = ", ".join(other_installed_plugins(*plugins))
    for order, expected in (("a, b", "from a"), ("b, a", "from b"), ("b, *", "from b")):
        app = make_app(app_sections(wechatbot={"plugins": order, "disabled": others, "store": "memory://"}), plugins)
        assert simulated_wecom(app).text("hi").content == expected


def test_a_raising_plugin_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    errors = []

    class Watcher:
        @hookimpl
        def plugin_error(self, plugin_name, exception):
            errors.append((plugin_name, str(exception)))

    plugins = {"broken": Broken(), "silent": Silent(), "answer": Says("still here"), "watcher": Watcher()}
    app = make_app(app_sections(wechatbot={"plugins": "broken, silent, answer, watcher"}), plugins)
    with caplog.at_level(logging.ERROR):
        reply = simulated_wecom(app).text("hi")
    assert reply.content == "still here"
    assert errors == [("broken", "plugin bug")]
    record = next(r for r in caplog.records if "plugin broken failed" in r.getMessage())
    assert record.exc_info and "plugin bug" in str(record.exc_info[1])


def test_no_answer_is_an_empty_200() -> None:
    app = make_app(plugins={"silent": Silent()})
    received = simulated_wecom(app).text("hi")
    assert received.status == 200 and received.body == "" and not received


def test_disabled_plugin_is_never_loaded(tmp_path: Path) -> None:
    (tmp_path / "explodes.py").write_text("raise ImportError('missing dependency foo')\n")
    (tmp_path / "fine.py").write_text(
        "from wechatbot import hookimpl\n\n@hookimpl\ndef handle_message(message):\n    return 'fine'\n"
    )
    host = {"plugins_dir": str(tmp_path), "plugins": "*", "store": "memory://"}
    with pytest.raises(PluginLoadError) as info:
        make_app(app_sections(wechatbot=host))
    text = str(info.value)
    assert "'explodes'" in text and "missing dependency foo" in text and "disabled = explodes" in text

    app = make_app(app_sections(wechatbot={**host, "plugins": "fine", "disabled": "explodes"}))
    assert simulated_wecom(app).text("x").content == "fine"
    app = make_app(app_sections(wechatbot=host), environ={"WECHATBOT_PLUGINS": "fine"})
    assert simulated_wecom(app).text("x").content == "fine"


def test_startup_failure_names_the_plugin() -> None:
    class Picky:
        @hookimpl
        def startup(self, context):
            if "city" not in context.config:
                raise ValueError("[plugin:picky] city is required")

    with pytest.raises(RuntimeError, match=r"plugin 'picky' failed to start .* city is required"):
        make_app(plugins={"picky": Picky()})
    app = make_app(app_sections(**{"plugin:picky": {"city": "Shenzhen"}}), {"picky": Picky()})
    assert app.extensions["wechatbot"].endpoints[""].plugins[0].name == "picky"


def test_plugin_gets_its_own_config_section() -> None:
    class Greeter:
        @hookimpl
        def handle_message(self, message, context):
            return f"{context.config['greeting']}, {message.from_user} ({context.plugin_name})"

    app = make_app(app_sections(**{"plugin:greeter": {"greeting": "你好"}}), {"greeter": Greeter()})
    assert simulated_wecom(app).text("hi", from_user="lisi").content == "你好, lisi (greeter)"


def test_installed_echo_plugin_is_found_through_its_entry_point() -> None:
    candidates = installed_plugins()
    assert "echo" in candidates and "wechatbot-echo" in candidates["echo"].source
    app = make_app(app_sections(wechatbot={"plugins": "echo", "store": "memory://"}))
    assert simulated_wecom(app).text("回声 🎉").content == "回声 🎉"


def test_echo_is_last_even_when_star_puts_it_first() -> None:
    app = make_app(app_sections(wechatbot={"plugins": "echo, zzz"}), {"zzz": Says("zzz first")})
    assert simulated_wecom(app).text("hi").content == "zzz first"


def test_plugins_command_lists_versions_sources_order_and_hooks(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from wechatbot.cli import cli

    sections = app_sections(wechatbot={"plugins": "echo", "store": "memory://"})
    ini = tmp_path / "c.ini"
    ini.write_text(ini_text(sections))
    result = CliRunner().invoke(cli, ["plugins", "--json", "--config", str(ini)])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["echo"]["enabled"] and rows["echo"]["order"] == {"wecom": 1}
    assert rows["echo"]["hooks"] == ["handle_message"] and rows["echo"]["version"] == "0.1.0"


def test_plugins_command_shows_the_real_call_order(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from wechatbot.cli import cli

    ini = tmp_path / "c.ini"
    ini.write_text(ini_text(app_sections(wechatbot={"plugins": "echo, keyword", "store": "memory://"})))
    result = CliRunner().invoke(cli, ["plugins", "--config", str(ini)])
    assert result.exit_code == 0, result.output
    assert "[wecom] handle_message: keyword → echo" in result.output  # echo is trylast
    assert "enabled: [wecom] #1" in result.output


def test_an_app_with_an_empty_plugin_list_has_none() -> None:
    sections = app_sections()
    sections["wecom"]["plugins"] = ""
    app = make_app(sections, {"a": Says("from a")})
    assert app.extensions["wechatbot"].endpoints[""].plugins == []
    assert not simulated_wecom(app).text("hi")
