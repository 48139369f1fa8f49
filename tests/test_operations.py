"""Operating the host, checked from outside a real gunicorn with 2 workers: each
callback's INFO line with its id (text and JSON), /metrics added up over both
workers and surviving a killed one, /readyz following the store."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from wechatbot.testing import app_sections, ini_text
from wechatbot.testing.gunicorn import Gunicorn
from wechatbot.testing.redis_server import PrivateRedis
from wechatbot.testing.simulator import SimulatedWeCom, http_transport, message_xml

ROOT = Path(__file__).resolve().parent.parent

NOTER = '''
"""Answers "note X" after logging a line of its own (from the plugin pool: it is not inline)."""
from wechatbot import hookimpl


@hookimpl
def handle_message(message, context):
    if message.content.startswith("note "):
        context.log.info("noting %s", message.content[5:])
        return "noted " + message.content[5:]
    return None
'''


class Host:
    """gunicorn with 2 workers, the noter and echo plugins, on a fresh config."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None, **host_settings: str) -> None:
        plugins_dir = tmp / "plugins"
        plugins_dir.mkdir(exist_ok=True)
        (plugins_dir / "noter.py").write_text(NOTER)
        self.sections = app_sections(wechatbot={"store": f"sqlite:///{tmp}/state.db", "plugins_dir": str(plugins_dir),
                                                "plugins": "noter, echo", **host_settings})
        config = tmp / "config.ini"
        config.write_text(ini_text(self.sections))
        try:
            self.gunicorn = Gunicorn(ROOT, config, tmp / "gunicorn.log", workers=2, env=env)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        self.url = self.gunicorn.url
        app = self.sections["wecom"]
        self.wecom = SimulatedWeCom(http_transport(self.url + "/callback"), app["token"], app["encoding_aes_key"],
                                    app["corp_id"], path="")

    def post(self, plaintext: str, headers: dict[str, str] | None = None) -> requests.Response:
        query, body = self.wecom.signed_request(plaintext)
        return requests.post(self.url + "/callback" + query, data=body, headers=headers, timeout=10)

    def log_lines(self, pattern: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        """The log lines that contain ``pattern``, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.gunicorn.log_text().splitlines() if pattern in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def metric(self, name: str, **labels: str) -> float:
        """One series' value as /metrics shows it (0 when absent)."""
        text = requests.get(self.url + "/metrics", timeout=5).text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] == name and ",".join(sorted(re.findall(r'\w+="[^"]*"', series))) == wanted:
                return float(value)
        return 0.0

    def stop(self) -> None:
        self.gunicorn.stop()


@pytest.fixture
def text_host(tmp_path):
    host = Host(tmp_path, env={"WECHATBOT_ACCESS_LOG": "-"})
    yield host
    host.stop()


def test_a_callback_has_one_info_line_with_its_id_in_text(text_host) -> None:
    answer = text_host.post(message_xml("text", content="hello", from_user="lisi"), headers={"X-Request-Id": "proxy-id-1"})
    assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "proxy-id-1"
    [line] = text_host.log_lines("[proxy-id-1]: [wecom] text")
    assert re.fullmatch(r"\S+Z INFO \[\d+\] wechatbot\.callback \[proxy-id-1\]: "
                        r"\[wecom\] text from lisi: answered by echo \(passive\) in \d+\.\d ms", line), line
    # gunicorn's access line ends with the same id.
    assert text_host.log_lines('"POST /callback')[0].endswith(" proxy-id-1")

    # Without an id from a proxy the host makes one; the plugin's own line (from the pool) carries it too.
    answer = text_host.post(message_xml("text", content="note milk"))
    request_id = answer.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", request_id)
    [noted] = text_host.log_lines(f"wechatbot.plugin.noter [{request_id}]: noting milk")
    [info] = text_host.log_lines(f"[{request_id}]: [wecom] text from")
    assert re.search(r": \[wecom\] text from zhangsan: answered by noter \(passive\) in \d+\.\d ms$", info), info
    assert "milk" not in info  # the INFO line never holds the message's content


def test_a_callback_has_one_info_line_with_its_id_in_json(tmp_path) -> None:
    host = Host(tmp_path, log_format="json")
    try:
        assert host.post(message_xml("text", content="hi", from_user="wangwu"), headers={"X-Request-Id": "j-1"}).status_code == 200
        [line] = host.log_lines('"request_id": "j-1"')
        entry = json.loads(line)
        assert {k: entry[k] for k in ("level", "logger", "request_id", "app", "kind", "user", "plugin", "how", "outcome")} == {
            "level": "INFO", "logger": "wechatbot.callback", "request_id": "j-1", "app": "wecom", "kind": "text",
            "user": "wangwu", "plugin": "echo", "how": "passive", "outcome": "answered"}
        assert entry["pid"] in host.gunicorn.worker_pids() and entry["ms"] > 0 and entry["time"].endswith("Z")
        # Every line wechatbot writes is JSON, start-up lines too.
        ours = [l for l in host.gunicorn.log_text().splitlines() if l.startswith("{")]
        assert any(json.loads(l)["message"].startswith("endpoint [wecom]") for l in ours)
    finally:
        host.stop()


def test_metrics_add_up_both_workers_and_survive_a_killed_one(tmp_path) -> None:
    host = Host(tmp_path, env={"WECHATBOT_ACCESS_LOG": "-"})
    try:
        sent, pids = 0, set()
        with ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and sent < 200:  # until both workers have answered some
                batch = [message_xml("text", content=f"m{sent + i}", msg_id=str(10_000 + sent + i)) for i in range(20)]
                assert all(r.status_code == 200 for r in pool.map(host.post, batch))
                sent += len(batch)
                pids = {int(l.split("[", 1)[1].split("]")[0]) for l in host.log_lines("wechatbot.callback", sent)}
        assert len(pids) == 2, "one worker answered everything"
        post = f"{host.url}/callback?msg_signature=bad&timestamp={int(time.time())}&nonce=1"
        refused = [requests.post(post, data=b"<xml><Encrypt>AAAA</Encrypt></xml>", timeout=5) for _ in range(3)]
        assert [r.status_code for r in refused] == [403] * 3

        answered = dict(app="wecom", kind="text", outcome="answered", reason="")
        for _ in range(4):  # whichever worker answers /metrics, it counts both
            assert host.metric("wechatbot_callbacks_total", **answered) == sent
            assert host.metric("wechatbot_callbacks_total", app="wecom", kind="", outcome="refused", reason="signature") == 3
            assert host.metric("wechatbot_plugin_calls_total", plugin="echo") == sent
            assert host.metric("wechatbot_callback_seconds_count", app="wecom") == sent + 3  # refused ones too
        assert host.metric("wechatbot_jobs_waiting") == 0

        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while victim in host.gunicorn.worker_pids() or len(host.gunicorn.worker_pids()) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)
        for _ in range(4):
            assert host.metric("wechatbot_callbacks_total", **answered) == sent
        assert host.post(message_xml("text", content="after", msg_id="99999")).status_code == 200
        assert host.metric("wechatbot_callbacks_total", **answered) == sent + 1
    finally:
        host.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (apt-get install redis-server)")
def test_readyz_follows_the_store_and_healthz_stays_alive(tmp_path) -> None:
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    host = None
    try:
        host = Host(tmp_path, store=f"redis://127.0.0.1:{redis_server.port}/0")
        ready = requests.get(host.url + "/readyz", timeout=10)
        assert (ready.status_code, ready.text) == (200, "store: ok\nqueue: ok\n")

        redis_server.kill()
        for _ in range(4):  # both workers see it
            down = requests.get(host.url + "/readyz", timeout=10)
            assert down.status_code == 503
            assert down.text.startswith("store: ConnectionError: ") and "\nqueue: ConnectionError: " in down.text, down.text
            assert requests.get(host.url + "/healthz", timeout=5).status_code == 200

        redis_server.start()
        deadline = time.monotonic() + 10
        while requests.get(host.url + "/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "/readyz did not recover with the store"
            time.sleep(0.1)
        for _ in range(4):
            assert requests.get(host.url + "/readyz", timeout=10).status_code == 200
        assert host.wecom.text("back").content == "back"
    finally:
        if host:
            host.stop()
        redis_server.kill()


def test_kill_hup_reloads_the_config_without_dropping_callbacks_or_counts(tmp_path) -> None:
    host = Host(tmp_path)
    try:
        for i in range(5):
            assert host.wecom.post_xml(message_xml("text", content=f"m{i}", msg_id=str(i))).content == f"m{i}"
        old_workers = host.gunicorn.worker_pids()
        host.sections["plugin:echo"] = {"prefix": "v2 "}
        (tmp_path / "config.ini").write_text(ini_text(host.sections))
        os.kill(host.gunicorn.process.pid, signal.SIGHUP)
        sent, deadline = 5, time.monotonic() + 30
        while set(host.gunicorn.worker_pids()) & set(old_workers) or len(host.gunicorn.worker_pids()) < 2:
            assert time.monotonic() < deadline, "the workers were not replaced"
            assert host.wecom.post_xml(message_xml("text", content="during", msg_id=str(100 + sent))).status == 200
            sent += 1
        assert host.wecom.post_xml(message_xml("text", content="after", msg_id="999")).content == "v2after"
        answered = dict(app="wecom", kind="text", outcome="answered", reason="")
        assert host.metric("wechatbot_callbacks_total", **answered) == sent + 1
    finally:
        host.stop()
