"""End to end: the AI bot and the group robot under real gunicorn hosts sharing one SQLite store.

WeCom is played by the simulated AI bot (written from the official pages), the
WeCom API by the fake's real HTTP server. Each host runs 2 workers; which
worker answered a request is read from gunicorn's access log (``%(p)s``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from itertools import cycle
from pathlib import Path

import pytest

from wechatbot.streams import INTERRUPTED, MORE_BELOW
from wechatbot.testing import free_port, ini_text, wait_until_serving
from wechatbot.testing.bot_simulator import SimulatedAibot, SimulatedGroupRobot, webhook_key
from wechatbot.testing.fake_api import FakeWeComAPI
from wechatbot.testing.simulator import SimulatedWeCom, http_transport
from wechatbot.wecom.crypto import generate_aes_key, generate_token

ROOT = Path(__file__).resolve().parent.parent

STREAMER = '''
"""Streams "stream N D" as N chunks D seconds apart; records every run as "<pid> <msgid> <text>"."""
import os
import time

from wechatbot import hookimpl


def _record(context, message):
    with open(context.config["runs"], "a") as fh:
        fh.write(f"{os.getpid()} {message.msg_id} {getattr(message, 'content', '')}\\n")


@hookimpl
def handle_message(message, context):
    _record(context, message)
    text = getattr(message, "content", "")
    if text.startswith("stream "):
        _, count, delay = text.split()

        def chunks():
            for i in range(int(count)):
                time.sleep(float(delay))
                yield f"{i},"
        return chunks()
    if text.startswith("big "):
        return "字" * int(text.split()[1])
    if text == "hang":
        def hang():
            yield "before the kill"
            time.sleep(600)
        return hang()
    return f"got {text}"


@hookimpl
def handle_event(event, context):
    _record(context, event)
    if event.event == "enter_chat":
        return "欢迎使用"
    return None


@hookimpl
def plugin_error(plugin_name, hook_name, exception, message, context):
    with open(context.config["errors"], "a") as fh:
        fh.write(f"{plugin_name} {hook_name} {type(exception).__name__}\\n")
'''


class Hosts:
    """Two gunicorn hosts (2 workers each) on one config and one SQLite store."""

    def __init__(self, tmp: Path, fake: FakeWeComAPI, **host_settings: str) -> None:
        plugins = tmp / "plugins"
        plugins.mkdir()
        (plugins / "streamer.py").write_text(STREAMER)
        self.runs, self.errors = tmp / "runs.txt", tmp / "errors.txt"
        self.runs.touch()
        self.errors.touch()
        self.bot = {"type": "aibot", "token": generate_token(), "encoding_aes_key": generate_aes_key()}
        self.robot = {"type": "group_robot", "token": generate_token(), "encoding_aes_key": generate_aes_key()}
        self.suite = {"corp_id": "ww_suite_corp", "receive_id": "ww_suite_id", "token": generate_token(),
                      "encoding_aes_key": generate_aes_key()}
        sections = {
            "wecom": self.suite,
            "wecom:assistant": self.bot,
            "wecom:team": self.robot,
            "wechatbot": {"store": f"sqlite:///{tmp}/state.db", "plugins_dir": str(plugins), "plugins": "streamer",
                          "reply_deadline": "2", **host_settings},
            "plugin:streamer": {"runs": str(self.runs), "errors": str(self.errors)},
        }
        config = tmp / "config.ini"
        config.write_text(ini_text(sections))
        self.fake = fake
        self.processes: list[subprocess.Popen] = []
        self.urls: list[str] = []
        self.access_logs: list[Path] = []
        for n in range(2):
            url = f"http://127.0.0.1:{free_port()}"
            access = tmp / f"access-{n}.log"
            env = {**os.environ, "WECHATBOT_CONFIG": str(config), "WECHATBOT_BIND": url[len("http://"):],
                   "WECHATBOT_WORKERS": "2", "WECHATBOT_THREADS": "16"}
            log = open(tmp / f"gunicorn-{n}.log", "w")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--access-logfile", str(access),
                 "--access-logformat", "%(p)s %(m)s %(U)s %(s)s"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            self.urls.append(url)
            self.access_logs.append(access)
        for n, url in enumerate(self.urls):
            try:
                wait_until_serving(url)
            except TimeoutError:
                self.stop()
                pytest.fail("gunicorn did not start: " + (tmp / f"gunicorn-{n}.log").read_text()[-3000:])

    def transport(self, path: str):
        """A transport whose requests alternate between the two hosts, each on a new connection."""
        hosts = cycle([http_transport(url) for url in self.urls])

        def send(method: str, path_and_query: str, body: bytes | None):
            return next(hosts)(method, path + path_and_query, body)

        return send

    def aibot(self, **kwargs) -> SimulatedAibot:
        return SimulatedAibot(self.transport("/callback/assistant"), self.bot["token"], self.bot["encoding_aes_key"],
                              path="", response_url=self.fake.add_response_url, **kwargs)

    def workers(self, path: str) -> list[set[str]]:
        """Per host, the pids of the workers that answered POSTs to ``path``."""
        seen = []
        for log in self.access_logs:
            pids = set()
            for line in log.read_text().splitlines():
                pid, method, url, _status = line.split()
                if method == "POST" and url == path:
                    pids.add(pid)
            seen.append(pids)
        return seen

    def worker_pids(self) -> set[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", ",".join(str(p.pid) for p in self.processes)],
                             capture_output=True, text=True).stdout
        return {int(p) for p in out.split()}

    def runs_of(self, msgid: str) -> list[str]:
        return [line for line in self.runs.read_text().splitlines() if line.split()[1] == msgid]

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One fake API and one pair of hosts for the module (starting gunicorn is the slow part)."""
    with FakeWeComAPI() as api:
        running = Hosts(tmp_path_factory.mktemp("hosts"), api)
        yield api, running
        running.stop()


@pytest.fixture
def fake(shared):
    api, _ = shared
    api.clear()
    return api


@pytest.fixture
def hosts(shared, fake):
    return shared[1]


def test_a_stream_answered_by_every_worker_of_two_hosts(hosts) -> None:
    bot = hosts.aibot(poll_every=0.05)
    started = time.monotonic()
    first = bot.post(bot.document("text", {"content": "stream 12 0.3"}, msgid="MSG-STREAM"))
    assert time.monotonic() - started < 1.5  # the first answer does not wait for the plugin
    assert first.msgtype == "stream" and not first.finish and first.stream["id"]
    result = bot.send(bot.document("text", {"content": "stream 12 0.3"}, msgid="MSG-STREAM"))
    assert result.first.stream["id"] == first.stream["id"]  # a retry gets the first arrival's answer
    full = "".join(f"{i}," for i in range(12))
    assert result.finish and result.content == full
    texts = [t for t in result.texts if t != "…"]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))  # only grows
    assert len(set(texts)) > 3
    assert len(hosts.runs_of("MSG-STREAM")) == 1  # the plugin ran once
    answered = hosts.workers("/callback/assistant")
    assert all(len(pids) == 2 for pids in answered), answered  # every worker of both hosts answered polls


def test_the_same_msgid_three_times_runs_once_and_enter_chat_is_welcomed(hosts) -> None:
    bot = hosts.aibot()
    doc = bot.document("text", {"content": "hello"}, msgid="MSG-THRICE")
    answers = [bot.post(doc) for _ in range(3)]
    assert [a.content for a in answers] == ["got hello"] * 3 and all(a.finish for a in answers)
    assert len(hosts.runs_of("MSG-THRICE")) == 1
    welcome = bot.enter_chat()
    assert welcome.data == {"msgtype": "text", "text": {"content": "欢迎使用"}}
    feedback = bot.event("feedback_event", {"id": "FB", "type": 1})
    assert feedback.status == 200 and not feedback


def test_an_unknown_stream_poll_is_finished(hosts) -> None:
    answer = hosts.aibot().poll("NO-SUCH-STREAM")
    assert answer.status == 200 and answer.msgtype == "stream" and answer.finish


def test_overflow_beyond_20480_bytes_goes_through_response_url(hosts, fake) -> None:
    result = hosts.aibot().text("big 10000")  # 30000 bytes
    assert result.finish and len(result.content.encode()) <= 20480 and result.content.endswith(MORE_BELOW)
    (_, body), = fake.wait_for_responses(1)
    assert body["msgtype"] == "markdown"
    assert result.content.removesuffix(MORE_BELOW) + body["markdown"]["content"] == "字" * 10000


def test_a_worker_killed_mid_stream(hosts) -> None:
    bot = hosts.aibot(poll_every=0.2)
    first = bot.post(bot.document("text", {"content": "hang"}, msgid="MSG-HANG"))
    assert first.msgtype == "stream" and not first.finish
    deadline = time.monotonic() + 10
    while not hosts.runs_of("MSG-HANG"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    owner = int(hosts.runs_of("MSG-HANG")[0].split()[0])
    # The plugin ran; kill its worker once its first chunk is in the stream (on a busy machine that comes later).
    while bot.poll(first.stream["id"]).content != "before the kill":
        assert time.monotonic() < deadline, "the stream never showed its first chunk"
        time.sleep(0.05)
    os.kill(owner, signal.SIGKILL)
    started = time.monotonic()
    answer = first
    while not answer.finish:
        assert time.monotonic() - started < 20, "the orphaned stream never finished"
        time.sleep(0.2)
        answer = bot.poll(first.stream["id"])
    assert answer.content == "before the kill" + INTERRUPTED
    for _ in range(3):
        assert bot.poll(first.stream["id"]).content == answer.content  # the same end, never twice
    deadline = time.monotonic() + 5
    while "streamer handle_message StreamOrphaned" not in hosts.errors.read_text():
        assert time.monotonic() < deadline, hosts.errors.read_text()
        time.sleep(0.1)
    assert hosts.errors.read_text().count("StreamOrphaned") == 1


def test_group_robot_and_suite_callbacks(hosts, fake) -> None:
    url = fake.webhook_url("ROBOT-KEY")
    robot = SimulatedGroupRobot(hosts.transport("/callback/team"), hosts.robot["token"], hosts.robot["encoding_aes_key"],
                                path="", webhook_url=url)
    answer = robot.text("你好")
    assert answer.msg_type == "text" and answer.content == "got 你好"
    assert hosts.runs.read_text().splitlines()[-1].endswith(" 你好")
    assert robot.event("add_to_chat").status == 200
    assert webhook_key(url) == "ROBOT-KEY"

    suite = SimulatedWeCom(hosts.transport("/callback"), hosts.suite["token"], hosts.suite["encoding_aes_key"],
                           hosts.suite["receive_id"], path="")
    ticket = ("<xml><SuiteId><![CDATA[ww_suite_id]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType>"
              "<TimeStamp>1403610513</TimeStamp><SuiteTicket><![CDATA[TICKET]]></SuiteTicket></xml>")
    status, text = suite.transport("POST", *suite.signed_request(ticket))
    assert (status, text) == (200, "success")


def test_a_short_window_ends_the_stream_and_sends_the_rest(tmp_path, fake) -> None:
    hosts = Hosts(tmp_path, fake, stream_window="3")
    try:
        result = hosts.aibot(poll_every=0.1).text("stream 8 0.5")  # 4 s of chunks, 3 s of window
        assert result.finish and result.content.endswith(MORE_BELOW)
        (_, body), = fake.wait_for_responses(1, timeout=10)
        full = "".join(f"{i}," for i in range(8))
        assert result.content.removesuffix(MORE_BELOW) + body["markdown"]["content"] == full
    finally:
        hosts.stop()
