"""docs/writing-a-plugin.md, followed to the letter: the plugin it describes is
built outside the repository, installed, listed by `wechatbot plugins`, passes
its own tests with the fixtures, and answers over HTTP."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wechatbot.testing.simulator import SimulatedWeCom, http_transport
from wechatbot.testing import app_sections, free_port, ini_text, wait_until_serving
from wechatbot.testing.fake_api import FakeWeComAPI
from wechatbot.testing.hosts import other_installed_plugins, redis_test_url

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
    assert weather["hooks"] == ["register_schedules"] and weather["enabled"]
    assert weather["description"] == "Weather forecasts for WeCom"
    assert weather["homepage"] == "https://example.com/wechatbot-weather"
    assert weather["commands"] == ["plan", "weather"]


def test_the_plugins_own_tests_pass_with_the_fixtures(installed) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            env=installed["env"], capture_output=True, text=True, timeout=120,
                            cwd=installed["root"] / "wechatbot-weather")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_it_answers_over_http(installed) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "wechatbot.cli", "serve", "--config", str(installed["config"]), "--port", str(port)],
                              env=installed["env"], cwd=installed["root"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url)
        app = installed["sections"]["wecom"]
        wecom = SimulatedWeCom(http_transport(url + "/callback"), app["token"], app["encoding_aes_key"], app["corp_id"], path="")
        assert wecom.text("weather Shenzhen").content == "Shenzhen: 晴 28°C (question 1)"
        assert wecom.text("weather Shenzhen", from_user="wangwu").content == "天气查询仅限销售部"
        assert wecom.text("hello").content == "hello"  # not ours: echo answers
    finally:
        server.terminate()
        server.wait(10)


def _redis_or_skip(url: str) -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).flushdb()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis server at 127.0.0.1:6379 ({exc})")


def test_the_guides_plugin_on_two_hosts_of_two_workers(installed, tmp_path) -> None:
    """The issue's check: a command and its help, a question answered on the other host, a per-user
    counter, a schedule making exactly one push per due time, and a refused user."""
    store = redis_test_url(0)
    _redis_or_skip(store)
    period = 3.0
    with FakeWeComAPI() as fake:
        sections = app_sections(api_base=fake.url, wechatbot={"store": store, "plugins": "weather, echo"}, **{
            "plugin:weather": {"Shenzhen": "晴", "daily": "Shenzhen", "push_to": "pushee", "period": str(period),
                               "weather.allow": "zhangsan, lisi", "refused_reply": "members only"}})
        fake.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
        (tmp_path / "config.ini").write_text(ini_text(sections), encoding="utf-8")
        hosts, logs = [], []
        for n in range(2):
            bind = f"127.0.0.1:{free_port()}"
            logs.append(open(tmp_path / f"gunicorn{n}.log", "w"))
            env = {**installed["env"], "WECHATBOT_CONFIG": str(tmp_path / "config.ini"), "WECHATBOT_BIND": bind,
                   "WECHATBOT_WORKERS": "2", "WECHATBOT_ACCESS_LOG": "/dev/null"}
            hosts.append((f"http://{bind}", subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
                                                             cwd=Path(__file__).resolve().parent.parent, env=env,
                                                             stdout=logs[-1], stderr=subprocess.STDOUT)))
        try:
            app = sections["wecom"]
            a, b = (SimulatedWeCom(http_transport(url + "/callback"), app["token"], app["encoding_aes_key"], app["corp_id"], path="")
                    for url, _ in hosts)
            for url, _ in hosts:
                wait_until_serving(url)
            assert a.text("weather Shenzhen").content == "Shenzhen: 晴 (question 1)"
            assert b.text("天气 Shenzhen").content == "Shenzhen: 晴 (question 2)"  # the counter is shared
            assert b.text("weather Shenzhen", from_user="lisi").content == "Shenzhen: 晴 (question 1)"
            assert "weather CITY — Today's forecast for a city." in a.text("help").content
            assert a.text("plan").content == "Which city?"
            assert b.text("Shenzhen").content == "Which day?"  # the answer on the other host
            assert a.text("Friday").content == "Shenzhen on Friday: 晴"
            assert b.text("weather Shenzhen", from_user="wangwu").content == "members only"

            def pushes() -> int:
                return sum(1 for m in fake.sent if m.get("touser") == "pushee")

            deadline = time.monotonic() + 3 * period + 10
            while not pushes() and time.monotonic() < deadline:
                time.sleep(0.05)
            # Due times fall on multiples of the period: count the pushes of three of them.
            start = (time.time() // period + 1) * period + period / 2
            time.sleep(start - time.time())
            before = pushes()
            time.sleep(start + 3 * period - time.time())
            assert pushes() - before == 3, fake.sent  # once each, across 2 hosts x 2 workers
            assert all(m["text"]["content"] == "Shenzhen: 晴" for m in fake.sent if m.get("touser") == "pushee")
        finally:
            for _, process in hosts:
                process.terminate()
            for _, process in hosts:
                process.wait(15)
            for log in logs:
                log.close()
