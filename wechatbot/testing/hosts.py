"""Helpers for tests that build hosts: credentials, config text, apps in this process or in others."""
from __future__ import annotations

import secrets
import socket
import time
from typing import TYPE_CHECKING, Any, Mapping

from flask import Flask

from ..config import config_from_sections
from ..wecom.crypto import generate_aes_key, generate_token
from .bot_simulator import SimulatedAibot, SimulatedGroupRobot
from .simulator import SimulatedWeCom, Transport

if TYPE_CHECKING:
    from ..host import Host

TEST_CORP_ID = "ww_test_corp"


def app_sections(api_base: str | None = None, **overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """INI sections for a test app with fresh random credentials."""
    sections: dict[str, dict[str, str]] = {
        "wecom": {
            "corp_id": TEST_CORP_ID, "token": generate_token(), "encoding_aes_key": generate_aes_key(),
            "agent_id": "1000002", "secret": "test-secret-" + secrets.token_hex(4),
        },
        "wechatbot": {"store": "memory://", "replay_window": "300"},
    }
    if api_base:
        sections["wecom"]["api_base"] = api_base
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return sections


def ini_text(sections: Mapping[str, Mapping[str, str]]) -> str:
    """INI-like sections as the text of a config file (for hosts in other processes)."""
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())
        for name, values in sections.items()
    )


# Hosts built by make_app and not closed yet (the pytest plugin closes them after each test).
_built: list[Host] = []


def make_app(sections: Mapping[str, Mapping[str, str]] | None = None, plugins: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Flask:
    """A wechatbot Flask app from INI-like sections (default: a fresh test app).

    With ``plugins``, exactly those plugin objects are used (unless the
    sections name others in ``[wechatbot] plugins``). The app's host is
    closed by :func:`close_built_hosts` (the pytest plugin calls it after
    every test).
    """
    from ..ext import create_app

    sections = {k: dict(v) for k, v in (sections or app_sections()).items()}
    if plugins is not None:
        sections.setdefault("wechatbot", {}).setdefault("plugins", ", ".join(plugins) or "")
    app = create_app(config_from_sections(sections, environ or {}), plugins=plugins)
    _built.append(app.extensions["wechatbot"])
    return app


def close_built_hosts() -> None:
    """Close every host :func:`make_app` built that is still open: their threads end, their stores close."""
    while _built:
        _built.pop().close()


def flask_transport(app: Flask) -> Transport:
    """A transport that sends the simulated requests through Flask's test client."""
    client = app.test_client()

    def send(method: str, path: str, body: bytes | None) -> tuple[int, str]:
        response = client.open(path, method=method, data=body, content_type="text/xml")
        return response.status_code, response.get_data(as_text=True)

    return send


def simulated_wecom(app: Flask, name: str = "", fake: Any = None) -> Any:
    """A simulated WeCom for the app's ``[wecom]`` (or ``[wecom:NAME]``) endpoint.

    For ``type = aibot`` it is a :class:`~.bot_simulator.SimulatedAibot` (its
    messages carry response_urls of ``fake``, a ``FakeWeComAPI``, when given),
    for ``type = group_robot`` a :class:`~.bot_simulator.SimulatedGroupRobot`
    (its WebhookUrl one of ``fake``'s).
    """
    endpoint = app.extensions["wechatbot"].endpoints[name]
    config = endpoint.config
    if config.type == "aibot":
        return SimulatedAibot(flask_transport(app), config.token, config.encoding_aes_key, endpoint.path,
                              response_url=fake.add_response_url if fake is not None else None, poll_every=0.05)
    if config.type == "group_robot":
        extra = {"webhook_url": fake.webhook_url("test-robot")} if fake is not None else {}
        return SimulatedGroupRobot(flask_transport(app), config.token, config.encoding_aes_key, endpoint.path, **extra)
    return SimulatedWeCom(flask_transport(app), config.token, config.encoding_aes_key, config.receive_id, endpoint.path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, timeout: float = 30.0) -> None:
    """Wait until a host started in another process answers ``<url>/healthz``."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url.rstrip("/") + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered {url}/healthz within {timeout:g} s")
        time.sleep(0.1)


def redis_test_url(which: int = 0) -> str:
    """The URL of a Redis database the tests may empty: ``which`` is 0 or 1.

    The server is the machine's at 127.0.0.1:6379. ``$WECHATBOT_TEST_REDIS_DB``
    names the first of the two databases (default 14), so that test runs from
    several checkouts at once keep out of each other's keys.
    """
    import os

    first = int(os.environ.get("WECHATBOT_TEST_REDIS_DB", "14"))
    return f"redis://127.0.0.1:6379/{first + which}"


def other_installed_plugins(*keep: str) -> list[str]:
    """The installed plugins (entry points) not in ``keep``: put them in ``disabled``.

    A test that lets ``*`` or the example config choose plugins then gets the
    same result whatever else is installed in the environment.
    """
    from ..plugins import installed_plugins

    return sorted(name for name in installed_plugins() if name not in keep)
