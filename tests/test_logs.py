"""Log lines: time, level, pid, logger and the callback's id, as text or JSON, from
wechatbot's loggers and the plugins' alike; never a secret."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time

import pytest

from wechatbot import hookimpl, logs
from wechatbot.config import ConfigError, config_from_sections
from wechatbot.redact import remember_secret
from wechatbot.testing import app_sections, make_app, simulated_wecom
from wechatbot.testing.simulator import message_xml


@pytest.fixture
def captured():
    """Logging set up as the host does it, into a buffer; put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()

    def use(fmt: str = "text", level: str = "info") -> io.StringIO:
        logs.setup(level, fmt, logging.StreamHandler(buffer))
        return buffer

    yield use
    root.handlers[:] = handlers
    root.setLevel(level)
    logs.end_request()


def test_text_lines_carry_time_level_pid_logger_and_request_id(captured) -> None:
    out = captured("text")
    logging.getLogger("wechatbot.plugin.weather").info("outside a callback")
    request_id = logs.begin_request()
    logging.getLogger("wechatbot_weather").warning("inside %s", "one")
    first, second = out.getvalue().splitlines()
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z INFO \[{os.getpid()}\] wechatbot\.plugin\.weather: outside a callback", first)
    assert second.endswith(f"WARNING [{os.getpid()}] wechatbot_weather [{request_id}]: inside one")


def test_json_lines_are_objects_with_the_lines_fields(captured) -> None:
    out = captured("json")
    request_id = logs.begin_request("from-the-proxy-42")
    logging.getLogger("wechatbot").info("callback answered", extra={"fields": {"app": "hr", "ms": 3.5, "message": "not this"}})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("wechatbot").exception("failed 中文")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert request_id == "from-the-proxy-42"
    assert {k: first[k] for k in ("level", "pid", "logger", "message", "request_id", "app", "ms")} == {
        "level": "INFO", "pid": os.getpid(), "logger": "wechatbot", "message": "callback answered",
        "request_id": "from-the-proxy-42", "app": "hr", "ms": 3.5}
    assert second["message"] == "failed 中文" and "ValueError: boom" in second["exception"]


def test_an_offered_id_is_taken_only_when_sensible() -> None:
    assert logs.begin_request("abc-123.x:y") == "abc-123.x:y"
    for bad in ("", "two words", "x" * 65, "line\nbreak", '"quoted"'):
        made = logs.begin_request(bad)
        assert re.fullmatch(r"[0-9a-f]{16}", made), (bad, made)
    assert logs.begin_request() != logs.begin_request()
    logs.end_request()
    assert logs.current_request_id() == ""


def test_carry_takes_the_id_to_another_thread(captured) -> None:
    out = captured("text")
    request_id = logs.begin_request()
    thread = threading.Thread(target=logs.carry(lambda: logging.getLogger("wechatbot.pool").info("in the pool")))
    thread.start()
    thread.join()
    plain = threading.Thread(target=lambda: logging.getLogger("wechatbot.pool").info("not carried"))
    plain.start()
    plain.join()
    carried, not_carried = out.getvalue().splitlines()
    assert f"[{request_id}]: in the pool" in carried and "[" + request_id not in not_carried


def test_level_applies_and_setting_up_again_replaces_the_handler(captured) -> None:
    out = captured("text", level="warning")
    logging.getLogger("wechatbot").info("hidden")
    out = captured("text", level="debug")
    logging.getLogger("wechatbot").debug("shown once")
    assert out.getvalue().count("shown once") == 1 and "hidden" not in out.getvalue()
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.setup("loud")


def test_no_secret_in_either_format(captured) -> None:
    secret = "corp-secret-" + "s3cr3t" * 4
    remember_secret(secret)
    for fmt in ("text", "json"):
        out = captured(fmt)
        log = logging.getLogger("wechatbot.api")
        log.warning("calling https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=%s", secret)
        try:
            raise RuntimeError(f"refused with {secret}")
        except RuntimeError:
            log.exception("token fetch failed")
        text = out.getvalue()
        assert secret not in text and "corpsecret=***" in text and "refused with ***" in text, text


def test_log_format_is_a_checked_config_key(tmp_path) -> None:
    sections = app_sections()
    assert config_from_sections(sections).log_format == "text"
    sections["wechatbot"]["log_format"] = "JSON"
    assert config_from_sections(sections).log_format == "json"
    sections["wechatbot"]["log_format"] = "xml"
    with pytest.raises(ConfigError, match=r"\[wechatbot\] log_format must be one of text, json, got 'xml'"):
        config_from_sections(sections)
    config = tmp_path / "config.ini"
    config.write_text("[wechatbot]\nlog_format = json\n")
    assert logs.configured_format({"WECHATBOT_CONFIG": str(config)}) == "json"
    assert logs.configured_format({"WECHATBOT_CONFIG": str(config), "WECHATBOT_WECHATBOT__LOG_FORMAT": "text"}) == "text"
    assert logs.configured_format({"WECHATBOT_CONFIG": str(tmp_path / "missing.ini")}) == "text"


class SlowPlugin:
    """Answers after 0.4 s, from the plugin pool."""

    @hookimpl
    def handle_message(self, message, context):
        time.sleep(0.4)
        context.log.info("answering late")
        return "late " + message.content


def test_a_late_reply_keeps_its_callbacks_id(captured, fake_wecom_api) -> None:
    out = captured("text")
    sections = app_sections(api_base=fake_wecom_api.url, wechatbot={"store": "memory://", "reply_deadline": "0.1"})
    fake_wecom_api.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
    app = make_app(sections, {"slow": SlowPlugin()})
    query, body = simulated_wecom(app).signed_request(message_xml("text", content="hi", from_user="zhaoliu"))
    answer = app.test_client().post(query, data=body, headers={"X-Request-Id": "late-1"})
    assert answer.status_code == 200 and answer.get_data() == b"" and answer.headers["X-Request-Id"] == "late-1"
    assert fake_wecom_api.wait_for_sent(1, timeout=5)[0]["text"]["content"] == "late hi"
    time.sleep(0.1)
    lines = [line for line in out.getvalue().splitlines() if "[late-1]" in line]
    assert any("wechatbot.callback [late-1]: [wecom] text from zhaoliu: plugins still busy (late)" in l for l in lines), lines
    assert any("wechatbot.plugin.slow [late-1]: answering late" in l for l in lines), lines
    assert any("wechatbot.outbox [late-1]: [wecom] pushed text reply to zhaoliu" in l for l in lines), lines
    assert logs.current_request_id() == ""  # the request thread forgot it
