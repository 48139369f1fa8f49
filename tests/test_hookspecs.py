"""The hook contract stays documented and tested: every hook has a docstring, a
section in docs/hooks.md with its exact arguments, and a test here."""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wechatbot import TextMessage, hookimpl, hookspecs
from wechatbot.cli import _register_plugin_commands
from wechatbot.testing import app_sections, make_app, simulated_wecom

DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"
HOOKS = {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "wechatbot_spec")}


def test_the_contract_has_hooks() -> None:
    assert {"startup", "handle_message", "handle_event", "register_commands"} <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_is_documented_with_its_arguments(name: str) -> None:
    spec = HOOKS[name]
    assert (spec.__doc__ or "").strip(), f"{name} has no docstring"
    signature = f"## {name}({', '.join(inspect.signature(spec).parameters)})"
    assert signature in DOCS.read_text(encoding="utf-8"), f"docs/hooks.md lacks '{signature}'"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_test(name: str) -> None:
    assert hasattr(sys.modules[__name__], f"test_hook_{name}"), f"no test_hook_{name} in {__file__}"


def test_hook_startup() -> None:
    seen = []

    class Plugin:
        @hookimpl
        def startup(self, context):
            seen.append((context.plugin_name, context.config))

    make_app(app_sections(**{"plugin:p": {"k": "v"}}), {"p": Plugin()})
    assert seen == [("p", {"k": "v"})]


def test_hook_handle_message() -> None:
    class Plugin:
        @hookimpl
        def handle_message(self, message):
            if isinstance(message, TextMessage):
                return message.content.upper()

    assert simulated_wecom(make_app(plugins={"p": Plugin()})).text("ping").content == "PING"


def test_hook_handle_event() -> None:
    class Plugin:
        @hookimpl
        def handle_event(self, event):
            return f"{event.event}:{event.event_key}"

    assert simulated_wecom(make_app(plugins={"p": Plugin()})).event("click", event_key="HELP").content == "click:HELP"


def test_hook_register_bot_commands() -> None:
    def shout(text: str):
        return text.upper() + "!"

    class Plugin:
        @hookimpl
        def register_bot_commands(self, register):
            register(shout, "shout", aliases=["喊"], help="Say it loud")

    wecom = simulated_wecom(make_app(plugins={"p": Plugin()}))
    assert wecom.text("喊 hello there").content == "HELLO THERE!"
    assert wecom.text("help").content.splitlines()[1] == "shout TEXT — Say it loud"


def test_hook_register_schedules(fake_wecom_api) -> None:
    seen = []

    class Plugin:
        @hookimpl
        def register_schedules(self, register, context):
            seen.append(context.plugin_name)
            register("soon", lambda context: "scheduled hello", every=0.3, to=["user:zhangsan"])

    sections = app_sections(api_base=fake_wecom_api.url)
    fake_wecom_api.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
    make_app(sections, {"p": Plugin()})
    assert seen == ["p"]
    assert fake_wecom_api.wait_for_sent(1, timeout=10)[0]["text"]["content"] == "scheduled hello"


def test_hook_plugin_error() -> None:
    reports = []

    class Broken:
        @hookimpl
        def handle_message(self):
            raise KeyError("boom")

    class Watcher:
        @hookimpl
        def plugin_error(self, plugin_name, hook_name, exception, message, context):
            reports.append((plugin_name, hook_name, type(exception).__name__, message.content, context.plugin_name))

    simulated_wecom(make_app(plugins={"broken": Broken(), "watcher": Watcher()})).text("x")
    assert reports == [("broken", "handle_message", "KeyError", "x", "watcher")]


def test_hook_register_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cmd.py").write_text(
        "import click\nfrom wechatbot import hookimpl\n\n@hookimpl\ndef register_commands(cli):\n"
        "    cli.add_command(click.Command('hello', callback=lambda: click.echo('hello')))\n"
    )
    ini = tmp_path / "c.ini"
    ini.write_text("[wecom]\ncorp_id = ww\ntoken = t\nencoding_aes_key = abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n"
                   f"[wechatbot]\nplugins_dir = {tmp_path}\nplugins = cmd\nstore = memory://\n")
    monkeypatch.setenv("WECHATBOT_CONFIG", str(ini))
    group = click.Group()
    _register_plugin_commands(group)
    assert CliRunner().invoke(group, ["hello"]).output == "hello\n"


def test_hook_media_saved() -> None:
    calls = []

    class Saver:
        @hookimpl
        def handle_message(self, message, context):
            return str(context.notify("media_saved", path="/tmp/f.jpg", message=message))

    class Archiver:
        @hookimpl
        def media_saved(self, path, message, context):
            calls.append((path, message.content, context.plugin_name))
            return "delete"

    reply = simulated_wecom(make_app(plugins={"saver": Saver(), "archiver": Archiver()})).text("pic")
    assert calls == [("/tmp/f.jpg", "pic", "archiver")]
    assert reply.content == "[('archiver', 'delete')]"
