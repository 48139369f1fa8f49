"""Several hosts on one Redis: a job queued by one host is run by `wechatbot worker`."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from wechatbot.testing import redis_test_url
from wechatbot.host import Host
from wechatbot.config import load_config
from wechatbot.testing.fake_api import FakeWeComAPI
from wechatbot.wecom.messages import parse_message
from wechatbot.wecom.replies import TextReply
from wechatbot.testing.simulator import message_xml

REDIS_URL = redis_test_url(0)

PLUGIN = '''
from wechatbot import hookimpl


def finish(message, context):
    """The deferred half: runs wherever a worker picks the job up."""
    return f"finished {message.content} for {message.from_user}"


@hookimpl
def handle_message(message, context):
    context.defer(finish, message)
    return "queued"
'''


@pytest.fixture
def redis_db():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379 (.ci/run starts one)")
    client.flushdb()
    yield
    client.flushdb()


def test_worker_command_runs_jobs_queued_by_another_host(tmp_path: Path, redis_db, request) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "queuer.py").write_text(PLUGIN)
    secret = uuid.uuid4().hex
    with FakeWeComAPI() as fake:
        fake.add_app("ww_hosts", secret)
        config_file = tmp_path / "c.ini"
        config_file.write_text(
            "[wecom]\ncorp_id = ww_hosts\ntoken = t\nencoding_aes_key = abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n"
            f"agent_id = 1000002\nsecret = {secret}\napi_base = {fake.url}\n"
            f"[wechatbot]\nstore = {REDIS_URL}\nplugins_dir = {tmp_path / 'plugins'}\nplugins = queuer\n"
        )
        # A web host whose own consumers are not running: it only queues.
        web = Host(load_config(config_file, environ={}))
        request.addfinalizer(web.close)
        message = parse_message(message_xml("text", content="report", from_user="lisi"))
        assert web.endpoints[""].ask_plugins(message) == ("queuer", TextReply("queued"))
        worker = subprocess.Popen([sys.executable, "-m", "wechatbot.cli", "worker", "--config", str(config_file)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            sent = fake.wait_for_sent(1, timeout=20)
            time.sleep(1)  # a second delivery would show up by now
        finally:
            worker.terminate()
            output = worker.communicate(timeout=10)[0]
        assert [(m["touser"], m["text"]["content"]) for m in fake.sent] == [("lisi", "finished report for lisi")], output
        assert "running deferred jobs" in output
