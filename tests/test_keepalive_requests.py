"""Kept-alive connections are closed after their share of requests, so no worker keeps them all.

A reverse proxy's upstream keep-alive (or any client holding its
connections open) stays with the worker that accepted each connection. If
one worker happened to accept them all, it served every request alone
while the other sat idle. The request-buffering worker answers
``Connection: close`` after ``$WECHATBOT_KEEPALIVE_REQUESTS`` requests; the
client opens a new connection, which the worker that is free takes.
Real gunicorn, 2 workers, real sockets.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from wechatbot.testing import app_sections, ini_text
from wechatbot.testing.gunicorn import Gunicorn
from wechatbot.testing.simulator import SimulatedWeCom, message_xml

ROOT = Path(__file__).resolve().parent.parent
PER_CONNECTION = 5


@pytest.fixture
def host(tmp_path):
    sections = app_sections(wechatbot={"store": f"sqlite:///{tmp_path}/state.db", "plugins": "echo"})
    config = tmp_path / "config.ini"
    config.write_text(ini_text(sections))
    try:
        running = Gunicorn(ROOT, config, tmp_path / "gunicorn.log", workers=2, threads=2,
                           env={"WECHATBOT_KEEPALIVE_REQUESTS": str(PER_CONNECTION)})
    except RuntimeError as exc:
        pytest.fail(str(exc))
    until = time.monotonic() + 60
    while running.log_text().count("wechatbot: endpoint [wecom]") < 2:  # each worker has built its host
        if time.monotonic() > until:
            running.stop()
            pytest.fail(f"both workers did not start within 60 s: {running.log_text()[-2000:]}")
        time.sleep(0.1)
    wecom = sections["wecom"]
    running.wecom = SimulatedWeCom(lambda *_: (0, ""), wecom["token"], wecom["encoding_aes_key"], wecom["corp_id"])
    yield running
    running.stop()


def _connect(host: Gunicorn) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(host.url.rsplit(":", 1)[1])), timeout=10)


def _callback(host: Gunicorn, sock: socket.socket, text: str) -> dict[str, str]:
    """POST one signed callback on ``sock``; its answer's headers (lower-cased names), checked to echo ``text``."""
    query, body = host.wecom.signed_request(message_xml("text", content=text))
    sock.sendall(f"POST {query} HTTP/1.1\r\nHost: test\r\nContent-Type: text/xml\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer to {text!r}: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    assert status == "HTTP/1.1 200 OK", (status, rest)
    assert host.wecom.open_reply(rest.decode())["Content"] == text
    return headers


def test_a_kept_alive_connection_is_closed_after_its_share_of_requests(host) -> None:
    with _connect(host) as sock:
        answers = [_callback(host, sock, f"request {i}") for i in range(PER_CONNECTION)]
        assert sock.recv(1) == b""  # closed by the host after the last answer
    assert [a["connection"] for a in answers] == ["keep-alive"] * (PER_CONNECTION - 1) + ["close"]


def test_connections_one_worker_took_all_of_reach_the_other_once_they_are_opened_again(host) -> None:
    stopped = host.worker_pids()[1]
    os.kill(stopped, signal.SIGSTOP)  # until it goes on, the other worker accepts every connection
    try:
        connections = [_connect(host) for _ in range(8)]
        first = {_callback(host, sock, "while one worker is stopped")["x-request-id"][:8] for sock in connections}
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert len(first) == 1  # X-Request-Id begins with its worker's own prefix
    workers_after = set()
    for round_no in range(4 * PER_CONNECTION):
        for i, sock in enumerate(connections):
            headers = _callback(host, sock, f"round {round_no} connection {i}")
            workers_after.add(headers["x-request-id"][:8])
            if headers["connection"] == "close":  # as a proxy does: open another
                sock.close()
                connections[i] = _connect(host)
    for sock in connections:
        sock.close()
    assert len(workers_after) == 2, workers_after


def test_a_setting_that_is_not_a_number_is_refused_with_its_name(monkeypatch) -> None:
    from wechatbot.config import ConfigError
    from wechatbot.serving import DEFAULT_KEEPALIVE_REQUESTS, _setting

    assert _setting("WECHATBOT_KEEPALIVE_REQUESTS", int, DEFAULT_KEEPALIVE_REQUESTS) == DEFAULT_KEEPALIVE_REQUESTS
    monkeypatch.setenv("WECHATBOT_KEEPALIVE_REQUESTS", "0")
    assert _setting("WECHATBOT_KEEPALIVE_REQUESTS", int, DEFAULT_KEEPALIVE_REQUESTS) == 0
    monkeypatch.setenv("WECHATBOT_KEEPALIVE_REQUESTS", "many")
    with pytest.raises(ConfigError, match=r"\$WECHATBOT_KEEPALIVE_REQUESTS must be a int, got 'many'"):
        _setting("WECHATBOT_KEEPALIVE_REQUESTS", int, DEFAULT_KEEPALIVE_REQUESTS)
    monkeypatch.setenv("WECHATBOT_REQUEST_TIMEOUT", "-1")
    with pytest.raises(ConfigError, match=r"\$WECHATBOT_REQUEST_TIMEOUT must not be negative"):
        _setting("WECHATBOT_REQUEST_TIMEOUT", float, 5.0)
