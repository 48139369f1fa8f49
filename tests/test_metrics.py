"""The series /metrics shows, counted where things happen (this process's own
counts here; tests/test_operations.py checks them added up under gunicorn)."""
from __future__ import annotations

import logging
import re
import time

import pytest

from wechatbot import hookimpl
from wechatbot.metrics import sample
from wechatbot.store import MemoryStore
from wechatbot.health import readiness
from wechatbot.testing import app_sections, make_app, simulated_wecom


class Plugin:
    """'boom' raises; 'late' sleeps past the deadline; 'push' answers over 2048 bytes; the rest echoes."""

    @hookimpl
    def handle_message(self, message):
        if message.content == "boom":
            raise RuntimeError("plugin broke")
        if message.content == "late":
            time.sleep(0.5)
        if message.content == "push":
            return "x" * 3000
        return message.content


def build(fake_wecom_api, **host: str):
    sections = app_sections(api_base=fake_wecom_api.url, wechatbot={"store": "memory://", **host})
    fake_wecom_api.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
    app = make_app(sections, {"probe": Plugin()})
    return app, simulated_wecom(app)


def counts(*series: tuple[str, dict]) -> list[float]:
    return [sample(name, **labels) for name, labels in series]


CALLBACK = "wechatbot_callbacks_total"


def test_callbacks_plugins_and_pushes_are_counted(fake_wecom_api) -> None:
    app, wecom = build(fake_wecom_api, reply_deadline="0.2")
    series = [
        (CALLBACK, dict(app="wecom", kind="text", outcome="answered", reason="")),
        (CALLBACK, dict(app="wecom", kind="text", outcome="empty", reason="")),
        (CALLBACK, dict(app="wecom", kind="text", outcome="deferred", reason="")),
        (CALLBACK, dict(app="wecom", kind="", outcome="refused", reason="signature")),
        ("wechatbot_plugin_calls_total", dict(plugin="probe")),
        ("wechatbot_plugin_errors_total", dict(plugin="probe")),
        ("wechatbot_late_replies_total", dict(app="wecom", outcome="pushed")),
        ("wechatbot_pushes_total", dict(app="wecom", outcome="sent")),
        ("wechatbot_token_fetches_total", dict(app="wecom", outcome="ok")),
    ]
    before = counts(*series)
    assert wecom.text("hi").content == "hi"
    assert wecom.text("boom").body == ""
    assert wecom.text("late").body == ""
    assert wecom.text("push").body == ""  # too long for a passive answer: pushed in parts
    fake_wecom_api.wait_for_sent(3, timeout=5)
    time.sleep(0.2)  # the late reply's bookkeeping follows its push
    client = app.test_client()
    assert client.post("/callback?msg_signature=x&timestamp=%d&nonce=n" % time.time(), data=b"<xml><Encrypt>AAAA</Encrypt></xml>").status_code == 403
    after = counts(*series)
    # answered: hi and push; empty: boom; deferred: late; refused: 1; the plugin called 4 times, raised once;
    # one late reply pushed; two pushes (push, late); one token for them.
    assert [a - b for a, b in zip(after, before)] == [2, 1, 1, 1, 4, 1, 1, 2, 1]


def test_metrics_page_is_prometheus_text_with_the_queue(fake_wecom_api) -> None:
    app, wecom = build(fake_wecom_api)
    wecom.text("hello")
    page = app.test_client().get("/metrics")
    assert page.status_code == 200 and page.content_type.startswith("text/plain; version=")
    text = page.get_data(as_text=True)
    assert "# TYPE wechatbot_callback_seconds histogram" in text
    assert 'wechatbot_callbacks_total{app="wecom",kind="text",outcome="answered",reason=""}' in text
    assert "wechatbot_jobs_waiting 0.0" in text
    assert app.test_client().get("/stats").status_code == 404  # /metrics replaced it


class BrokenStore(MemoryStore):
    def get(self, key: str) -> str | None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


def test_readiness_names_what_does_not_answer() -> None:
    assert readiness(MemoryStore(), lambda: 0) == (True, "store: ok\nqueue: ok\n")
    ready, text = readiness(BrokenStore(), lambda: 0)
    assert not ready and text == "store: ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused.\nqueue: ok\n"

    def queue_down() -> int:
        raise TimeoutError("no answer in 5 s")

    assert readiness(MemoryStore(), queue_down) == (False, "store: ok\nqueue: TimeoutError: no answer in 5 s\n")


class Streamer:
    """Answers with a stream of chunks."""

    wechatbot_inline = False

    @hookimpl
    def handle_message(self, message):
        return (f"{i}," for i in range(5))


class TestAIBotStream:
    @pytest.fixture
    def wechatbot_plugins(self):
        return {"streamer": Streamer()}

    @pytest.fixture
    def wechatbot_sections(self):
        return {"wecom": {"type": "aibot"}}

    def test_a_streamed_answer_is_logged_as_stream_and_its_polls_counted(self, wecom, caplog) -> None:
        polls = sample("wechatbot_stream_polls_total", app="wecom")
        with caplog.at_level(logging.INFO, logger="wechatbot.callback"):
            result = wecom.text("hello")
        assert result.finish and result.content == "0,1,2,3,4,"
        lines = [r.getMessage() for r in caplog.records if r.name == "wechatbot.callback"]
        assert any(re.fullmatch(r"\[wecom\] text from \S+: answered by streamer \(stream\) in \d+\.\d ms", l) for l in lines), lines
        assert result.polls > 0 and sample("wechatbot_stream_polls_total", app="wecom") == polls + result.polls
