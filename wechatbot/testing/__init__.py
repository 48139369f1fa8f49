"""Testing a wechatbot host or plugin: simulated WeCom, fake WeCom API, pytest fixtures.

The pytest fixtures (``wecom``, ``wechatbot_app`` …) are installed as the pytest
plugin ``wechatbot.testing.pytest_plugin``; the helpers below are for tests that
build hosts themselves.
"""
from .hosts import (
    TEST_CORP_ID, app_sections, close_built_hosts, flask_transport, free_port, ini_text, make_app, simulated_wecom, redis_test_url,
    wait_until_serving,
)

__all__ = [
    "TEST_CORP_ID", "app_sections", "close_built_hosts", "flask_transport", "free_port", "ini_text", "make_app", "redis_test_url",
    "simulated_wecom", "wait_until_serving",
]
