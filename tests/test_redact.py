"""No token, key, secret or access token in any log line, whatever the logging configuration."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap

import pytest

from wechatbot.config import config_from_sections
from wechatbot.redact import redact
from wechatbot.testing import app_sections


@pytest.fixture
def root_output():
    """A root handler at WARNING, the way many applications configure logging."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def test_a_urllib3_warning_never_shows_an_access_token(root_output) -> None:
    logging.getLogger("urllib3.connectionpool").warning(
        "Retrying (Retry(total=2)) after connection broken: /cgi-bin/message/send?access_token=%s&debug=1", "TOK3N-abcdef")
    logging.getLogger("urllib3.util.retry").warning("GET /cgi-bin/gettoken?corpid=ww1&corpsecret=S3CRET-value")
    logging.getLogger("requests").warning("POST https://example/cgi-bin/webhook/send?key=HOOK-KEY-123")
    text = root_output.getvalue()
    assert "TOK3N-abcdef" not in text and "S3CRET-value" not in text and "HOOK-KEY-123" not in text
    assert "access_token=***" in text and "corpsecret=***" in text and "key=***" in text


def test_configured_secrets_never_reach_a_log_line(root_output) -> None:
    sections = app_sections()
    config_from_sections(sections)
    app = sections["wecom"]
    logging.getLogger("some.plugin").error("token %s key %s secret %s", app["token"], app["encoding_aes_key"], app["secret"])
    text = root_output.getvalue()
    assert app["token"] not in text and app["encoding_aes_key"] not in text and app["secret"] not in text
    assert text.count("***") == 3


def test_a_traceback_never_shows_an_access_token(root_output) -> None:
    try:
        raise ConnectionError("HTTPSConnectionPool: Max retries exceeded with url: /cgi-bin/media/get?access_token=TB-TOKEN-1")
    except ConnectionError:
        logging.getLogger("wechatbot.anything").exception("the call failed")
    text = root_output.getvalue()
    assert "TB-TOKEN-1" not in text and "access_token=***" in text and "Traceback" in text


def test_short_values_are_not_taken_for_secrets() -> None:
    config_from_sections(app_sections(wecom={"secret": "abc"}))
    assert redact("abc def") == "abc def"


def test_redaction_holds_under_dict_config_in_a_fresh_process(tmp_path) -> None:
    """logging.config set up after wechatbot is imported, as a web framework would do it."""
    script = textwrap.dedent("""
        import logging, logging.config
        import wechatbot.api
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False, "handlers": {"h": {"class": "logging.StreamHandler",
            "stream": "ext://sys.stdout"}}, "root": {"handlers": ["h"], "level": "WARNING"}})
        logging.getLogger("urllib3.connectionpool").warning("url /cgi-bin/user/get?access_token=FRESH-TOKEN")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "FRESH-TOKEN" not in out and "access_token=***" in out
