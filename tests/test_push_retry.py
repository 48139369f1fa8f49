"""Pushes that fail are retried, not dropped; permanent failures are reported once. Against the fake WeCom API."""
from __future__ import annotations

import logging
import time

import pytest

from wechatbot import MarkdownReply, hookimpl
from wechatbot import metrics
from wechatbot.testing import app_sections, make_app, simulated_wecom
from wechatbot.testing.fake_api import FakeWeComAPI


class Pushes:
    """Answers with markdown, which a passive answer cannot carry: it is pushed at once."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str, str]] = []

    @hookimpl
    def handle_message(self, message):
        return MarkdownReply(f"**{message.content}**")

    @hookimpl
    def plugin_error(self, plugin_name, hook_name, exception):
        self.errors.append((plugin_name, hook_name, str(exception)))


@pytest.fixture
def fake():
    with FakeWeComAPI() as api:
        yield api


def make_host(fake: FakeWeComAPI, plugin: Pushes, **host_settings: str):
    sections = app_sections(api_base=fake.url, wechatbot={"store": "memory://", "queue": "memory://", **host_settings})
    fake.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"], agent_id=sections["wecom"]["agent_id"])
    app = make_app(sections, plugins={"pushes": plugin})
    host = app.extensions["wechatbot"]
    host.outbox.retry_base = 0.05
    return simulated_wecom(app), host, PushCounts()


class PushCounts:
    """The host's push counts (``wechatbot_pushes``) since this was made."""

    def __init__(self) -> None:
        self.start = {outcome: self.now(outcome) for outcome in ("sent", "retried", "failed")}

    @staticmethod
    def now(outcome: str) -> float:
        return metrics.sample("wechatbot_pushes_total", app="wecom", outcome=outcome)

    def __getitem__(self, outcome: str) -> float:
        return self.now(outcome) - self.start[outcome]


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def markdown_sent(fake: FakeWeComAPI) -> list[str]:
    return [m["markdown"]["content"] for m in fake.sent if m.get("msgtype") == "markdown"]


def test_http_5xx_and_busy_answers_are_retried_until_delivered(fake: FakeWeComAPI, caplog) -> None:
    plugin = Pushes()
    wecom, host, pushes = make_host(fake, plugin)
    host.endpoints[""].api.backoff = 0.01
    fake.fail_http_next("message/send", 502, times=2)
    fake.fail_next("message/send", -1, times=4)  # more than the client's own retries
    with caplog.at_level(logging.INFO):
        assert not wecom.text("late but there")  # answered empty: the reply is pushed
        # The fake records the message on arrival; the host counts it once the answer is back.
        wait_for(lambda: markdown_sent(fake) == ["**late but there**"] and pushes["sent"] == 1)
    assert pushes["retried"] >= 2 and pushes["sent"] == 1 and pushes["failed"] == 0
    assert plugin.errors == []
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("wechatbot"))


@pytest.mark.parametrize("errcode, hint", [(81013, "可见范围"), (40003, "user id"), (60020, "trusted IP")])
def test_a_permanent_error_is_logged_once_with_its_hint_and_reported(fake: FakeWeComAPI, caplog, errcode, hint) -> None:
    plugin = Pushes()
    wecom, host, pushes = make_host(fake, plugin)
    fake.fail_next("message/send", errcode, times=5)
    with caplog.at_level(logging.INFO):
        assert not wecom.text("nobody gets this")
        wait_for(lambda: pushes["failed"] == 1 and plugin.errors)  # counted, then reported
        time.sleep(0.3)
    assert len(fake.requests_to("message/send")) == 1  # not tried again
    lines = [r.getMessage() for r in caplog.records if "could not be pushed" in r.getMessage()]
    assert len(lines) == 1 and f"errcode {errcode}" in lines[0] and hint in lines[0], lines
    assert plugin.errors and plugin.errors[0][:2] == ("pushes", "push")


def test_a_push_failing_past_push_retry_for_is_given_up_and_reported(fake: FakeWeComAPI) -> None:
    plugin = Pushes()
    wecom, host, pushes = make_host(fake, plugin, push_retry_for="0.5")
    fake.fail_http_next("message/send", 503, times=1000)
    assert not wecom.text("never")
    wait_for(lambda: pushes["failed"] == 1 and plugin.errors)  # counted, then reported
    assert pushes["retried"] >= 1 and markdown_sent(fake) == []
    assert plugin.errors and plugin.errors[0][1] == "push"


@pytest.mark.parametrize("kind", ["aibot", "group_robot"])
def test_a_late_reply_with_no_url_to_push_to_is_reported_once_without_a_traceback(kind, caplog) -> None:
    """A bot message that carries no response_url / WebhookUrl: its push cannot be made, which is a permanent failure."""
    plugin = Pushes()
    app = make_app(app_sections(wecom={"type": kind}, wechatbot={"store": "memory://", "queue": "memory://"}),
                   plugins={"pushes": plugin})
    wecom = simulated_wecom(app)
    with caplog.at_level(logging.INFO):
        if kind == "aibot":
            doc = wecom.document("text", {"content": "x" * 30000})
            del doc["response_url"]
            assert wecom.post(doc).finish  # a stream shows 20480 bytes; the rest would go through response_url
        else:
            wecom.webhook_url = ""
            assert not wecom.text("x" * 5000)  # over a passive markdown's 4096 bytes: pushed through the webhook
        wait_for(lambda: plugin.errors)
    lines = [r for r in caplog.records if "could not be pushed" in r.getMessage()]
    assert len(lines) == 1 and not lines[0].exc_info and "late reply cannot be sent" in lines[0].getMessage()
    assert plugin.errors[0][:2] == ("pushes", "push")


def test_an_api_outage_is_said_in_two_lines_and_every_reply_arrives_once_after_it(fake: FakeWeComAPI, caplog) -> None:
    plugin = Pushes()
    wecom, host, pushes = make_host(fake, plugin)
    fake.go_down("message/send", status=500)
    with caplog.at_level(logging.INFO):
        for n in range(5):
            assert not wecom.text(f"m{n}")  # answered empty: each reply is pushed, and fails
        wait_for(lambda: pushes["retried"] >= 15)  # several attempts each
        assert markdown_sent(fake) == []
        fake.come_back()
        wait_for(lambda: pushes["sent"] == 5)
    assert sorted(markdown_sent(fake)) == [f"**m{n}**" for n in range(5)]  # each once
    lines = [r.getMessage() for r in caplog.records if r.name == "wechatbot.outbox" and r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
    assert "pushes are failing" in lines[0] and "HTTP 500" in lines[0] and "go through again" in lines[1]
    assert plugin.errors == [] and pushes["failed"] == 0
