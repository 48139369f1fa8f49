"""The ``wechatbot`` command as a user types it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wechatbot.cli import _register_plugin_commands, cli
from wechatbot.config import load_config
from wechatbot.wecom.crypto import WeComCrypto
from wechatbot.testing import free_port, wait_until_serving


def test_genkey_prints_a_usable_pair() -> None:
    result = CliRunner().invoke(cli, ["genkey"])
    assert result.exit_code == 0
    values = dict(line.split(" = ") for line in result.output.splitlines())
    assert len(values["token"]) == 32 and len(values["encoding_aes_key"]) == 43
    crypto = WeComCrypto(values["token"], values["encoding_aes_key"], "ww")
    assert crypto.decrypt(crypto.encrypt("ok")) == "ok"


def test_init_writes_a_loadable_dev_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(cli, ["init", "--path", "config.ini"])
    assert first.exit_code == 0 and "EncodingAESKey:" in first.output
    config = load_config("config.ini", environ={})
    assert config.endpoint().encoding_aes_key in first.output and config.endpoint().token in first.output
    assert config.store.startswith("sqlite:///") and (tmp_path / "var").is_dir()
    second = runner.invoke(cli, ["init", "--path", "config.ini"])
    assert "exists" in second.output and config.endpoint().token in second.output
    assert load_config("config.ini", environ={}).endpoint().token == config.endpoint().token


BOT_SECTIONS = (
    "\n[wecom:assistant]\ntype = aibot\ntoken = bottoken\n"
    "encoding_aes_key = abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n"
    "\n[wecom:team]\ntype = group_robot\ntoken = robottoken\n"
    "encoding_aes_key = ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg\n"
)


@pytest.fixture
def served(tmp_path: Path):
    runner = CliRunner()
    config = tmp_path / "config.ini"
    runner.invoke(cli, ["init", "--path", str(config)])
    text = config.read_text().replace("sqlite:///var/wechatbot.db", f"sqlite:///{tmp_path}/state.db")
    config.write_text(text.replace("plugins = *", "plugins = echo") + BOT_SECTIONS)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "wechatbot.cli", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url)
    yield config, url
    process.terminate()
    process.wait(10)


def test_simulate_verifies_and_sends_to_a_running_host(served) -> None:
    config, url = served
    runner = CliRunner()
    verify = runner.invoke(cli, ["simulate", "--config", str(config), "--verify", url + "/callback"])
    assert verify.exit_code == 0 and "URL verification OK" in verify.output
    text = runner.invoke(cli, ["simulate", "--config", str(config), "--text", "模拟 hello", url + "/callback"])
    assert text.exit_code == 0 and '"Content": "模拟 hello"' in text.output
    event = runner.invoke(cli, ["simulate", "--config", str(config), "--event", "enter_agent", url + "/callback"])
    assert event.exit_code == 0 and "empty answer" in event.output
    wrong = runner.invoke(cli, ["simulate", "--config", str(config), url + "/callback/nope"])
    assert wrong.exit_code != 0 and "HTTP 404" in wrong.output


def test_simulate_plays_the_ai_bot_and_the_group_robot(served) -> None:
    config, url = served
    runner = CliRunner()
    bot = runner.invoke(cli, ["simulate", "--config", str(config), "--app", "assistant", "--text", "你好",
                              url + "/callback/assistant"])
    assert bot.exit_code == 0 and bot.output.strip() == "[finished] 你好", bot.output
    verify = runner.invoke(cli, ["simulate", "--config", str(config), "--app", "assistant", "--verify",
                                 url + "/callback/assistant"])
    assert verify.exit_code == 0 and "URL verification OK" in verify.output
    robot = runner.invoke(cli, ["simulate", "--config", str(config), "--app", "team", "--text", "hi",
                                url + "/callback/team"])
    assert robot.exit_code == 0 and '"Content": "hi"' in robot.output, robot.output


def test_plugins_can_add_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "greeter.py").write_text(
        "import click\nfrom wechatbot import hookimpl\n\n"
        "@hookimpl\ndef register_commands(cli):\n"
        "    @cli.command()\n    def greet():\n        click.echo('hi from a plugin')\n"
    )
    config = tmp_path / "c.ini"
    config.write_text(
        "[wecom]\ncorp_id = ww\ntoken = t\nencoding_aes_key = abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n"
        f"[wechatbot]\nplugins_dir = {tmp_path}\nplugins = greeter\nstore = memory://\n"
    )
    monkeypatch.setenv("WECHATBOT_CONFIG", str(config))
    group = click.Group("wechatbot")
    _register_plugin_commands(group)
    result = CliRunner().invoke(group, ["greet"])
    assert result.exit_code == 0 and result.output == "hi from a plugin\n"


def test_broken_plugin_does_not_take_the_cli_down(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ImportError('nope')\n")
    config = tmp_path / "c.ini"
    config.write_text(
        "[wecom]\ncorp_id = ww\ntoken = t\nencoding_aes_key = abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n"
        f"[wechatbot]\nplugins_dir = {tmp_path}\nstore = memory://\n"
    )
    env = {**os.environ, "WECHATBOT_CONFIG": str(config)}
    result = subprocess.run([sys.executable, "-m", "wechatbot.cli", "genkey"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "encoding_aes_key = " in result.stdout
    assert "plugin commands not loaded" in result.stderr and "'broken'" in result.stderr
