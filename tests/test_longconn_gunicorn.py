"""End to end: two real gunicorns of 2 workers each, one AI bot on the long connection, a shared store.

Exactly one of the four processes connects; when it is SIGKILLed another
takes over within 15 s; a repeated msgid runs the plugin once wherever it
lands; no reply goes out twice.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wechatbot.longconn import protocol
from wechatbot.store import PREFIXES, open_store
from wechatbot.testing import ini_text, redis_test_url
from wechatbot.testing.gunicorn import Gunicorn
from wechatbot.testing.fake_longconn import FakeLongConnServer

ROOT = Path(__file__).resolve().parent.parent
BOT, SECRET = "aibot-e2e", "e2e-secret"

RECORDER = '''
"""Records each run as "<pid> <msgid> <text>" in [plugin:recorder] runs and answers "got <text>"
("endless" streams for ever)."""
import os
import time

from wechatbot import hookimpl


@hookimpl
def handle_message(message, context):
    with open(context.config["runs"], "a") as fh:
        fh.write(f"{os.getpid()} {message.msg_id} {message.content}\\n")
    if message.content == "endless":
        return endless()
    return f"got {message.content}"


def endless():
    while True:
        time.sleep(0.5)
        yield "more "
'''


def bot_config(folder: Path, fake: FakeLongConnServer, store: str, runs: Path) -> Path:
    """``folder/config.ini``: the long-connection bot as the only endpoint, the recorder plugin writing to ``runs``."""
    plugins = folder / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "recorder.py").write_text(RECORDER)
    config = folder / "config.ini"
    config.write_text(ini_text({
        "wecom:bot": {"type": "aibot", "mode": "websocket", "bot_id": BOT, "ws_url": fake.url},
        "wechatbot": {"store": store, "plugins_dir": str(plugins), "plugins": "recorder"},
        "plugin:recorder": {"runs": str(runs)},
    }))
    return config


def start_host(tmp: Path, name: str, fake: FakeLongConnServer, store: str, runs: Path) -> Gunicorn:
    """One host: gunicorn with 2 workers on the bot's config."""
    folder = tmp / name
    config = bot_config(folder, fake, store, runs)
    return Gunicorn(ROOT, config, folder / "gunicorn.log", workers=2, env={"WECHATBOT_WECOM_BOT__SECRET": SECRET})


def worker_command(config: Path) -> list[str]:
    """``wechatbot worker``: a process that only holds long connections."""
    return [sys.executable, "-m", "wechatbot.cli", "worker", "--config", str(config)]


def stop_worker(worker: subprocess.Popen) -> None:
    """Ctrl-C, as a person stops it; SIGKILL after 15 s."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)


@pytest.fixture
def fake():
    with FakeLongConnServer({BOT: SECRET}) as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    """The store both hosts share: one SQLite file (one machine), or Redis (several)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    import redis

    url = redis_test_url(0)
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis server at 127.0.0.1:6379 ({exc})")
    finally:
        client.close()
    return url


def test_one_connection_takeover_after_sigkill_and_each_message_answered_once(tmp_path, fake, store_url) -> None:
    runs = tmp_path / "runs.txt"
    runs.touch()
    hosts = [start_host(tmp_path, name, fake, store_url, runs) for name in ("a", "b")]
    store = open_store(store_url)
    try:
        fake.wait_subscribed(BOT, timeout=15)
        time.sleep(3)
        assert len(fake.subscriptions(BOT)) == 1  # four processes, one connection

        first = fake.push_text(BOT, "one", msgid="msg-1")
        assert protocol.stream_of(fake.wait_final_reply(first)).content == "got one"
        fake.push_text(BOT, "one", msgid="msg-1")  # WeCom delivers it again

        endless = fake.push_text(BOT, "endless", msgid="msg-e")  # killed while it streams
        fake.wait_for(lambda: len(fake.replies(endless)) >= 2, 10, "the stream under way")

        holder_pid = int(store.get(PREFIXES["longconn_lease"] + BOT).split(":")[1])
        owner = next(host for host in hosts if holder_pid in host.worker_pids())
        os.kill(holder_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        fake.wait_subscribed(BOT, count=2, timeout=15)
        took = time.monotonic() - killed_at
        print(f"takeover after SIGKILL: {took:.1f} s")
        assert took < 15
        new_pid = int(store.get(PREFIXES["longconn_lease"] + BOT).split(":")[1])
        assert new_pid != holder_pid and any(new_pid in host.worker_pids() for host in hosts)

        # The new holder ends the stream the dead process was writing, with a note.
        ended = protocol.stream_of(fake.wait_final_reply(endless, timeout=5)).content
        assert ended.startswith("more more ") and ended.endswith("（回答中断，请重新提问）")
        fake.push_text(BOT, "one", msgid="msg-1")  # and once more, to the new holder
        started = time.monotonic()
        second = fake.push_text(BOT, "two", msgid="msg-2")
        assert protocol.stream_of(fake.wait_final_reply(second, timeout=5)).content == "got two"
        assert time.monotonic() - started < 5
        time.sleep(1.5)  # anything run or sent twice would show by now

        runs_seen = sorted(line.split(" ", 1)[1] for line in runs.read_text().splitlines())
        assert runs_seen == ["msg-1 one", "msg-2 two", "msg-e endless"]
        finished = [r for r in fake.received(protocol.RESPOND) if r.frame["body"]["stream"]["finish"]]
        assert sorted(r.req_id for r in finished) == sorted([first, second, endless])  # one each, nothing twice
        assert fake.violations == []
        assert fake.open_subscribed(BOT) == 1
        assert owner.process.poll() is None  # gunicorn replaced its killed worker
    finally:
        for host in hosts:
            host.stop()
        store.close()


def test_wechatbot_worker_may_hold_the_connection(tmp_path, fake) -> None:
    runs = tmp_path / "runs.txt"
    runs.touch()
    config = bot_config(tmp_path, fake, f"sqlite:///{tmp_path / 'shared.db'}", runs)
    env = {**os.environ, "WECHATBOT_WECOM_BOT__SECRET": SECRET}
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen(worker_command(config), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            fake.wait_subscribed(BOT, timeout=15)
            req_id = fake.push_text(BOT, "from the worker")
            assert protocol.stream_of(fake.wait_final_reply(req_id)).content == "got from the worker"
            assert runs.read_text().split()[0] == str(worker.pid)
        finally:
            stop_worker(worker)


def test_a_frame_waiting_to_be_sent_again_survives_the_sigkill_of_its_holder(tmp_path, fake) -> None:
    """WeCom answers 45009 (rate limit): the holder waits before sending the reply again, and is
    SIGKILLed meanwhile. The reply is written down in the store: the process that takes over sends it."""
    from wechatbot.testing.fake_longconn import Refuse

    runs = tmp_path / "runs.txt"
    runs.touch()
    store_url = f"sqlite:///{tmp_path / 'shared.db'}"
    config = bot_config(tmp_path, fake, store_url, runs)
    env = {**os.environ, "WECHATBOT_WECOM_BOT__SECRET": SECRET}
    busy = {"on": True}
    fake.receipt_policy(lambda frame, nth: Refuse(protocol.ERR_FREQUENCY) if busy["on"] else 0.0)
    workers, logs = [], []
    store = open_store(store_url)
    try:
        for n in range(2):
            logs.append(open(tmp_path / f"worker-{n}.log", "w"))
            workers.append(subprocess.Popen(worker_command(config), cwd=ROOT, env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
        fake.wait_subscribed(BOT, timeout=20)
        req_id = fake.push_text(BOT, "rate limited")
        fake.wait_for(lambda: fake.received(protocol.RESPOND, req_id), 10, "the first try")  # refused: 10 s pause
        holder_pid = int(store.get(PREFIXES["longconn_lease"] + BOT).split(":")[1])
        os.kill(holder_pid, signal.SIGKILL)
        busy["on"] = False
        final = fake.wait_final_reply(req_id, timeout=20)  # the other worker takes over and sends it
        assert protocol.stream_of(final).content == "got rate limited"
        tries = fake.received(protocol.RESPOND, req_id)
        assert len(tries) == 2 and tries[1].conn_id == fake.subscriptions(BOT)[1].conn_id
        assert len(runs.read_text().splitlines()) == 1  # the plugin ran once; only its frame went again
    finally:
        for worker in workers:
            stop_worker(worker)
        for log in logs:
            log.close()
        store.close()
