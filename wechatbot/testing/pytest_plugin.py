"""Test a wechatbot plugin in a few lines (also loaded as a pytest plugin).

Fixtures, each meant to be overridden in your ``conftest.py``:

- ``wechatbot_plugins``: ``{name: module}`` of plugins under test (default: the
  installed ones chosen by ``[wechatbot] plugins``);
- ``wechatbot_sections``: extra INI sections, e.g. ``{"plugin:keyword": {...}}``;
- ``fake_wecom_api``: a fake WeCom server API on 127.0.0.1 (message/send, media …);
- ``wechatbot_app``: the Flask app, configured with generated credentials;
- ``wecom``: a simulated WeCom that sends a message or event in one call and
  returns the decrypted reply::

      def test_hello(wecom):
          assert wecom.text("hello").content == "hello"

  With ``wechatbot_sections = {"wecom": {"type": "aibot"}}`` it is a simulated
  AI bot that follows a streamed answer to its end::

      def test_streams(wecom):
          result = wecom.text("hello")
          assert result.finish and result.content == "hello, world"
          assert result.texts   # every text seen on the way
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import pytest
from flask import Flask

from .hosts import app_sections, close_built_hosts, make_app, simulated_wecom
from .simulator import SimulatedWeCom


@pytest.fixture(autouse=True)
def _wechatbot_close_hosts() -> Iterator[None]:
    """Close the hosts a test built with ``make_app`` (and these fixtures) when it ends."""
    yield
    close_built_hosts()


@pytest.fixture
def wechatbot_plugins() -> Mapping[str, Any] | None:
    """Plugins under test as ``{name: module}``; ``None`` uses the installed ones."""
    return None


@pytest.fixture
def wechatbot_sections() -> dict[str, dict[str, str]]:
    """Extra INI sections for the test app (``{"plugin:NAME": {...}}``)."""
    return {}


@pytest.fixture
def fake_wecom_api() -> Iterator[Any]:
    """A fake WeCom server API on 127.0.0.1 that records what the bot sends."""
    from .fake_api import FakeWeComAPI

    with FakeWeComAPI() as fake:
        yield fake


@pytest.fixture
def wechatbot_app(wechatbot_plugins: Mapping[str, Any] | None, wechatbot_sections: dict[str, dict[str, str]], fake_wecom_api: Any) -> Flask:
    """The Flask app under test, its API pointed at ``fake_wecom_api``."""
    sections = app_sections(api_base=fake_wecom_api.url, **wechatbot_sections)
    app_section = sections["wecom"]
    fake_wecom_api.add_app(app_section["corp_id"], app_section["secret"])
    return make_app(sections, wechatbot_plugins)


@pytest.fixture
def wecom(wechatbot_app: Flask, fake_wecom_api: Any) -> SimulatedWeCom:
    """A simulated WeCom talking to ``wechatbot_app`` (an AI bot or group robot for those types)."""
    return simulated_wecom(wechatbot_app, fake=fake_wecom_api)
