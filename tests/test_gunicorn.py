"""End to end: the host under a real gunicorn (4 workers), WeCom simulated over HTTP,
the WeCom API faked by a real HTTP server."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from wechatbot.testing.fake_api import FakeWeComAPI
from wechatbot.testing.simulator import SimulatedWeCom, http_transport, message_xml
from wechatbot.testing import app_sections, ini_text
from wechatbot.testing.gunicorn import Gunicorn

ROOT = Path(__file__).resolve().parent.parent

RECORDER = '''
"""Records each run as "<pid> <text>" in [plugin:recorder] runs; "sleep N ..." sleeps N seconds."""
import os
import time

from wechatbot import hookimpl


@hookimpl
def handle_message(message, context):
    with open(context.config["runs"], "a") as fh:
        fh.write(f"{os.getpid()} {message.content}\\n")
    if message.content.startswith("sleep "):
        time.sleep(float(message.content.split()[1]))
    if message.content.startswith("pass"):
        return None
    if message.content.startswith("push"):
        context.api.send_text(message.from_user, "pushed " + message.content)
        return None
    return f"got {message.content}"
'''


class Host:
    """A gunicorn running wsgi:app on a temporary config."""

    def __init__(self, tmp: Path, fake: FakeWeComAPI, **host_settings: str) -> None:
        plugins_dir = tmp / "plugins"
        plugins_dir.mkdir()
        (plugins_dir / "recorder.py").write_text(RECORDER)
        self.runs = tmp / "runs.txt"
        self.runs.touch()
        self.sections = app_sections(
            api_base=fake.url,
            wechatbot={"store": f"sqlite:///{tmp}/state.db", "plugins_dir": str(plugins_dir),
                       "plugins": "recorder, echo", "max_body": "4096", **host_settings},
            **{"plugin:recorder": {"runs": str(self.runs)}},
        )
        fake.add_app(self.sections["wecom"]["corp_id"], self.sections["wecom"]["secret"])
        config = tmp / "config.ini"
        config.write_text(ini_text(self.sections))
        try:
            self.gunicorn = Gunicorn(ROOT, config, tmp / "gunicorn.log", workers=4, threads=64)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        self.url = self.gunicorn.url
        wecom = self.sections["wecom"]
        self.wecom = SimulatedWeCom(http_transport(self.url + "/callback"), wecom["token"], wecom["encoding_aes_key"], wecom["corp_id"], path="")

    def run_lines(self) -> list[str]:
        return self.runs.read_text().splitlines()

    def stop(self) -> None:
        self.gunicorn.stop()


@pytest.fixture
def fake():
    with FakeWeComAPI() as api:
        yield api


@pytest.fixture
def host(tmp_path, fake):
    running = Host(tmp_path, fake, reply_deadline="1", job_lease="4")
    yield running
    running.stop()


def test_verification_replies_and_bad_input_under_gunicorn(host) -> None:
    assert host.wecom.verify_url()
    assert host.wecom.text("你好 🎉").content == "got 你好 🎉"
    assert host.wecom.text("pass through").content == "pass through"  # recorder passes, echo answers
    post = f"{host.url}/callback?msg_signature=x&timestamp={int(time.time())}&nonce=1"
    assert requests.post(post, data=b"<xml><Encrypt>AAAA</Encrypt></xml>", timeout=5).status_code == 403
    assert requests.post(post, data=b"garbage", timeout=5).status_code == 400
    assert requests.post(f"{host.url}/callback", data=b"<xml/>", timeout=5).status_code == 400
    assert requests.post(post, data=b"x" * 10000, timeout=5).status_code == 413
    assert host.wecom.text("still serving").content == "got still serving"


def test_concurrent_retries_across_workers_run_the_plugin_once(host) -> None:
    xml = message_xml("text", content="only once", msg_id="123456789")
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: host.wecom.post_xml(xml), range(3)))
    assert [a.status for a in answers] == [200, 200, 200]
    assert [line.split(" ", 1)[1] for line in host.run_lines()] == ["only once"]
    assert host.wecom.post_xml(xml).content == "got only once"  # a retry after the reply: same reply
    assert len(host.run_lines()) == 1


def test_fifty_slow_replies_answered_in_time_and_all_pushed(host, fake) -> None:
    users = [f"user{i}" for i in range(50)]
    prepared = [host.wecom.signed_request(message_xml("text", content="sleep 3 for " + u, from_user=u)) for u in users]
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=50))

    def send(request: tuple[str, bytes]) -> float:
        started = time.monotonic()
        response = session.post(host.url + "/callback" + request[0], data=request[1], timeout=10)
        assert response.status_code == 200 and response.text == ""
        return time.monotonic() - started

    with ThreadPoolExecutor(50) as pool:
        durations = list(pool.map(send, prepared))
    assert max(durations) < 1 + 1.5, durations  # reply_deadline = 1 s plus a small margin
    sent = fake.wait_for_sent(50, timeout=30)
    assert sorted(m["touser"] for m in sent) == sorted(users)
    assert all(m["text"]["content"] == f"got sleep 3 for {m['touser']}" for m in sent)


def test_deferred_job_survives_sigkill_of_its_worker(host, fake) -> None:
    assert host.wecom.text("sleep 3 then answer", from_user="survivor").body == ""
    pid = int(host.run_lines()[0].split()[0])
    os.kill(pid, signal.SIGKILL)
    sent = fake.wait_for_sent(1, timeout=30)
    assert sent[0]["touser"] == "survivor" and sent[0]["text"]["content"] == "got sleep 3 then answer"
    runs = host.run_lines()
    assert len(runs) == 2 and int(runs[1].split()[0]) != pid  # run again by a live worker
    time.sleep(5)  # the next guard (job_lease = 4 s) finds the job done: delivered once
    assert len(fake.sent) == 1


def test_token_shared_by_all_workers_after_it_expires(host, fake) -> None:
    assert host.wecom.text("push warm-up").status == 200
    fake.wait_for_sent(1, timeout=10)
    calls_before = fake.gettoken_calls
    fake.expire_tokens()
    users = [f"u{i}" for i in range(200)]
    prepared = [host.wecom.signed_request(message_xml("text", content="push " + u, from_user=u)) for u in users]
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=50))
    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(lambda r: session.post(host.url + "/callback" + r[0], data=r[1], timeout=30).status_code, prepared))
    assert statuses == [200] * 200
    fake.wait_for_sent(201, timeout=30)
    time.sleep(0.5)  # anything pushed twice would show up by now
    # Only the plugin's own pushes: a callback that missed the deadline also has echo's reply pushed.
    pushed = [m["touser"] for m in fake.sent if m["text"]["content"].startswith("pushed push u")]
    assert sorted(pushed) == sorted(users)
    assert 1 <= fake.gettoken_calls - calls_before <= 3  # one refresh (a few at most) for 4 workers


def test_a_gunicorn_that_never_answers_is_reported_with_the_end_of_its_log(tmp_path) -> None:
    config = tmp_path / "config.ini"
    config.write_text("[wechatbot]\nstore = nonsense://\n")
    with pytest.raises(RuntimeError, match=r"did not answer within 3 s: (.|\n)*wechatbot: cannot start") as raised:
        Gunicorn(ROOT, config, tmp_path / "gunicorn.log", workers=1, start_timeout=3)
    assert "Booting worker" in str(raised.value)


def test_the_default_metrics_directory_goes_when_gunicorn_stops(tmp_path: Path) -> None:
    """Each master makes its own metrics directory by default, and removes it when it exits."""
    import tempfile

    from wechatbot.testing import app_sections, ini_text
    from wechatbot.testing.gunicorn import Gunicorn

    config = tmp_path / "config.ini"
    config.write_text(ini_text(app_sections()))
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = Gunicorn(ROOT, config, tmp_path / "gunicorn.log", workers=1, env=env)
    directory = Path(tempfile.gettempdir()) / f"wechatbot-metrics-{server.process.pid}"
    try:
        assert directory.is_dir()
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert not directory.exists()
