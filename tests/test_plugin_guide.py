"""docs/writing-a-plugin.md, followed to the letter: the plugin it describes is
built outside the repository, installed, listed by `wechatbot plugins`, passes
its own tests with the fixtures, and answers over HTTP."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wechatbot.testing.simulator import SimulatedWeCom, http_transport
from wechatbot.testing import app_sections, free_port, ini_text, wait_until_serving
from wechatbot.testing.hosts import other_installed_plugins

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-a-plugin.md"


def guide_files() -> dict[str, str]:
    """The files the guide shows: a bold `path` line, then a fenced block."""
    pattern = re.compile(r"\*\*`([^`]+)`\*\*[^\n]*\n\n```[a-z]*\n(.*?)```", re.S)
    return dict(pattern.findall(GUIDE.read_text(encoding="utf-8")))


def guide_ini_section() -> str:
    blocks = re.findall(r"```ini\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    return next(b for b in blocks if "[plugin:weather]" in b)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("guide")
    for name, text in guide_files().items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(root / "wechatbot-weather")], check=True, timeout=300)
    # Only the guide's plugin and the built-in ones, whatever else is installed.
    others = ", ".join(other_installed_plugins("weather", "echo", "keyword", "media"))
    env = {**os.environ, "PYTHONPATH": str(site), "WECHATBOT_WECHATBOT__DISABLED": others}
    sections = app_sections(wechatbot={"store": f"sqlite:///{root}/state.db"})
    ini = ini_text({name: values for name, values in sections.items() if name != "wechatbot"})
    ini += guide_ini_section().replace("[wechatbot]\n", f"[wechatbot]\nstore = sqlite:///{root}/state.db\n")
    (root / "config.ini").write_text(ini, encoding="utf-8")
    return {"root": root, "env": env, "config": root / "config.ini", "sections": sections}


def test_the_guide_shows_a_complete_small_plugin() -> None:
    files = guide_files()
    assert set(files) == {"wechatbot-weather/wechatbot_weather/__init__.py", "wechatbot-weather/setup.cfg",
                          "wechatbot-weather/pyproject.toml", "wechatbot-weather/tests/test_weather.py"}
    code_lines = [l for l in files["wechatbot-weather/wechatbot_weather/__init__.py"].splitlines() if l.strip()]
    assert len(code_lines) <= 35


def test_installed_plugin_is_listed(installed) -> None:
    result = subprocess.run([sys.executable, "-m", "wechatbot.cli", "plugins", "--json", "--config", str(installed["config"])],
                            env=installed["env"], capture_output=True, text=True, timeout=60, cwd=installed["root"])
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    weather = rows["weather"]
    assert weather["version"] == "0.1.0" and "wechatbot-weather" in weather["source"]
    assert weather["hooks"] == ["handle_event", "handle_message", "startup"] and weather["enabled"]


def test_the_plugins_own_tests_pass_with_the_fixtures(installed) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            env=installed["env"], capture_output=True, text=True, timeout=120,
                            cwd=installed["root"] / "wechatbot-weather")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_it_answers_over_http(installed) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "wechatbot.cli", "serve", "--config", str(installed["config"]), "--port", str(port)],
                              env=installed["env"], cwd=installed["root"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url)
        app = installed["sections"]["wecom"]
        wecom = SimulatedWeCom(http_transport(url + "/callback"), app["token"], app["encoding_aes_key"], app["corp_id"], path="")
        assert wecom.text("weather Shenzhen").content == "晴 28°C"
        assert wecom.event("click", event_key="WEATHER").content == "cities: Beijing, Shenzhen"
        assert wecom.text("hello").content == "hello"  # not ours: echo answers
    finally:
        server.terminate()
        server.wait(10)
