"""Every error a person reads is one line naming the key, plugin or URL, and what to do: no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wechatbot.testing import app_sections, free_port, ini_text, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent

BROKEN_START = '''
from wechatbot import hookimpl

@hookimpl
def startup(context):
    raise ValueError("the weather service needs [plugin:badstart] api_key")

@hookimpl
def handle_message(message):
    return "never"
'''


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def wechatbot(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "wechatbot.cli", *args], cwd, env)


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def write_config(tmp_path: Path, wechatbot: dict | None = None) -> tuple[Path, dict]:
    sections = app_sections(wechatbot={"store": f"sqlite:///{tmp_path}/state.db", "plugins": "echo", **(wechatbot or {})})
    config = tmp_path / "config.ini"
    config.write_text(ini_text(sections))
    return config, sections


def test_a_config_error_names_the_key(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, wechatbot={"reply_deadline": "soon"})
    for command in (["serve", "--port", str(free_port())], ["plugins"]):
        assert_one_line(wechatbot(*command, "--config", str(config), cwd=tmp_path), "reply_deadline")


def test_the_cli_finds_config_ini_in_the_current_folder(tmp_path: Path) -> None:
    write_config(tmp_path, wechatbot={"reply_deadline": "soon"})
    env = {k: v for k, v in os.environ.items() if k != "WECHATBOT_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "wechatbot.cli", "plugins"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env=env)
    assert_one_line(result, "reply_deadline")


def test_a_store_url_error_names_the_key(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, wechatbot={"store": "mongodb://x"})
    assert_one_line(wechatbot("plugins", "--config", str(config), cwd=tmp_path), "[wechatbot] store", "Accepted forms")


def test_a_plugin_load_error_names_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "broken.py").write_text("raise ImportError('needs the requests-oauth package')\n")
    config, _ = write_config(tmp_path, wechatbot={"plugins_dir": str(tmp_path / "plugins"), "plugins": "broken, echo"})
    for command in (["serve", "--port", str(free_port())], ["plugins"]):
        result = wechatbot(*command, "--config", str(config), cwd=tmp_path)
        assert_one_line(result, "'broken'", "requests-oauth")


def test_a_startup_hook_error_names_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "badstart.py").write_text(BROKEN_START)
    config, _ = write_config(tmp_path, wechatbot={"plugins_dir": str(tmp_path / "plugins"), "plugins": "badstart"})
    assert_one_line(wechatbot("serve", "--port", str(free_port()), "--config", str(config), cwd=tmp_path),
                    "'badstart'", "api_key")


@pytest.mark.parametrize("problem", ["config", "startup"])
def test_gunicorn_stops_once_with_one_line(tmp_path: Path, problem: str) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "badstart.py").write_text(BROKEN_START)
    host = {"plugins_dir": str(tmp_path / "plugins"), "plugins": "badstart"}
    if problem == "config":
        host["max_body"] = "lots"
    config, _ = write_config(tmp_path, wechatbot=host)
    env = {"WECHATBOT_CONFIG": str(config), "WECHATBOT_BIND": f"127.0.0.1:{free_port()}", "WECHATBOT_WORKERS": "2"}
    result = run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], ROOT, env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    ours = [line for line in output.splitlines() if line.startswith("wechatbot: cannot start:")]
    assert len(ours) == 1, output
    assert ("max_body" if problem == "config" else "'badstart'") in ours[0]


@pytest.fixture
def served(tmp_path: Path):
    config, sections = write_config(tmp_path)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "wechatbot.cli", "serve", "--config", str(config), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url)
        yield config, url
    finally:
        process.terminate()
        process.wait(10)


def test_simulate_against_a_host_that_is_not_running(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/callback"
    assert_one_line(wechatbot("simulate", "--config", str(config), url, cwd=tmp_path), url, "is the host running")
    assert_one_line(wechatbot("simulate", "--verify", "--config", str(config), url, cwd=tmp_path), "is the host running")


def test_simulate_field_without_equals_is_a_usage_error(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path)
    result = wechatbot("simulate", "--config", str(config), "--field", "MediaId", "http://127.0.0.1:1/callback", cwd=tmp_path)
    assert result.returncode == 2 and "--field" in result.stderr and "NAME=VALUE" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_with_a_wrong_token_and_a_retried_msgid(served, tmp_path: Path) -> None:
    config, url = served
    wrong = wechatbot("simulate", "--config", str(config), "--token", "not-the-token", url + "/callback", cwd=tmp_path)
    assert_one_line(wrong, "HTTP 403", "token")
    for _ in range(2):  # the second is a retry: the same MsgId gets the first arrival's answer
        again = wechatbot("simulate", "--config", str(config), "--field", "MsgId=4242", "--text", "twice",
                          url + "/callback", cwd=tmp_path)
        assert again.returncode == 0 and '"Content": "twice"' in again.stdout, again.stderr
