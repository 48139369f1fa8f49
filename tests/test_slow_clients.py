"""Slow clients and bursts under a real gunicorn (2 workers, the shipped gunicorn.conf.py).

WeCom gives up on a callback it has no answer to within 5 s. Neither
hundreds of clients that never finish sending their request, nor a burst
of callbacks to plugins that take long, may keep any callback from being
answered in time; the replies the answers could not carry are pushed later,
once each.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from wechatbot import hookimpl
from wechatbot.testing import app_sections, ini_text, make_app
from wechatbot.testing.fake_api import FakeWeComAPI
from wechatbot.testing.gunicorn import Gunicorn
from wechatbot.testing.simulator import SimulatedWeCom, http_transport, message_xml
from wechatbot.testing.slow_clients import SlowClients

ROOT = Path(__file__).resolve().parent.parent
WECOM_WAITS = 5.0

WAITER = '''
"""Records each run as a line in [plugin:waiter] runs; "wait ..." waits until the file [plugin:waiter] go exists."""
import os
import time

from wechatbot import hookimpl


@hookimpl
def handle_message(message, context):
    fd = os.open(context.config["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (message.content + "\\n").encode())
    os.close(fd)
    if message.content.startswith("wait"):
        until = time.monotonic() + 60
        while not os.path.exists(context.config["go"]) and time.monotonic() < until:
            time.sleep(0.05)
    return "got " + message.content
'''


class Host:
    """gunicorn (2 workers, the configured threads) serving wsgi:app with the waiter plugin."""

    def __init__(self, tmp: Path, fake: FakeWeComAPI) -> None:
        plugins_dir = tmp / "plugins"
        plugins_dir.mkdir()
        (plugins_dir / "waiter.py").write_text(WAITER)
        self.runs = tmp / "runs.txt"
        self.runs.touch()
        self.go = tmp / "go"
        sections = app_sections(
            api_base=fake.url,
            wechatbot={"store": f"sqlite:///{tmp}/state.db", "plugins_dir": str(plugins_dir), "plugins": "waiter"},
            **{"plugin:waiter": {"runs": str(self.runs), "go": str(self.go)}},
        )
        fake.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
        config = tmp / "config.ini"
        config.write_text(ini_text(sections))
        try:
            self.gunicorn = Gunicorn(ROOT, config, tmp / "gunicorn.log", workers=2, threads=8)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        self._wait_for_workers(2)
        self.url = self.gunicorn.url
        wecom = sections["wecom"]
        self.wecom = SimulatedWeCom(http_transport(self.url + "/callback"), wecom["token"], wecom["encoding_aes_key"],
                                    wecom["corp_id"], path="")

    def _wait_for_workers(self, workers: int, timeout: float = 60) -> None:
        """Until every worker has built its host (/healthz answers once one has): slow clients reach all of them."""
        until = time.monotonic() + timeout
        while self.gunicorn.log_text().count("wechatbot: endpoint [wecom]") < workers:
            if time.monotonic() > until:
                pytest.fail(f"not all {workers} workers started within {timeout:g} s: {self.gunicorn.log_text()[-2000:]}")
            time.sleep(0.1)

    def post(self, request: tuple[str, bytes], timeout: float = 30) -> tuple[requests.Response, float]:
        """POST one signed callback on a connection of its own, as WeCom does; the answer and how long it took."""
        started = time.monotonic()
        response = requests.post(self.url + "/callback" + request[0], data=request[1], timeout=timeout,
                                 headers={"Connection": "close"})
        return response, time.monotonic() - started

    def run_lines(self) -> list[str]:
        return self.runs.read_text().splitlines()


@pytest.fixture
def host(tmp_path, fake_wecom_api):
    running = Host(tmp_path, fake_wecom_api)
    yield running
    running.go.touch()  # let waiting plugins end before gunicorn stops
    running.gunicorn.stop()


def test_three_hundred_slow_clients_do_not_keep_callbacks_from_being_answered(host) -> None:
    with SlowClients(host.url, count=300) as slow:
        time.sleep(1.0)  # every slow connection accepted and trickling
        for i in range(6):  # spread over ~9 s: across the moments the server cuts slow clients off
            response, took = host.post(host.wecom.signed_request(message_xml("text", content=f"probe {i}")))
            assert response.status_code == 200, (i, response.status_code, response.text)
            assert host.wecom.open_reply(response.text)["Content"] == "got " + f"probe {i}"
            assert took < WECOM_WAITS, (i, took)
            time.sleep(1.5)
    # Each slow client was cut off with a 408 once its time was up, and came back.
    assert slow.opened > 300 and set(slow.statuses) == {"408"}, (slow.opened, slow.statuses)
    assert host.run_lines() == [f"probe {i}" for i in range(6)]


def test_a_request_that_does_not_arrive_in_time_is_answered_408(host) -> None:
    with socket.create_connection(("127.0.0.1", int(host.url.rsplit(":", 1)[1])), timeout=15) as sock:
        sock.sendall(b"POST /callback?msg_signature=x&timestamp=0&nonce=1 HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n<xml>")
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 3 < waited < 10, waited
    # The host goes on answering.
    response, _ = host.post(host.wecom.signed_request(message_xml("text", content="after")))
    assert host.wecom.open_reply(response.text)["Content"] == "got after"


def test_a_burst_of_two_hundred_callbacks_to_a_slow_plugin_is_answered_in_time_and_pushed_once(host, fake_wecom_api) -> None:
    users = [f"user{i}" for i in range(200)]
    prepared = [host.wecom.signed_request(message_xml("text", content="wait for " + u, from_user=u)) for u in users]
    start = threading.Barrier(len(prepared))
    results: list[tuple[int, str, float] | BaseException] = [None] * len(prepared)  # type: ignore[list-item]

    def send(i: int) -> None:
        try:
            start.wait(30)
            response, took = host.post(prepared[i])
            results[i] = (response.status_code, response.text, took)
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(prepared))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    failed = [r for r in results if not isinstance(r, tuple)]
    assert not failed, failed[:3]
    late = sorted(took for _, _, took in results if took >= WECOM_WAITS)
    assert not late, f"{len(late)} of 200 answered after {WECOM_WAITS:g} s: {late[:5]} ..."
    assert [(status, text) for status, text, _ in results] == [(200, "")] * 200  # nothing to say yet: empty
    host.go.touch()  # the plugins finish
    sent = fake_wecom_api.wait_for_sent(200, timeout=90)
    time.sleep(2)  # anything pushed twice would show up by now
    assert sorted(m["touser"] for m in fake_wecom_api.sent) == sorted(users)
    assert all(m["text"]["content"] == f"got wait for {m['touser']}" for m in sent)
    assert sorted(host.run_lines()) == sorted(f"wait for {u}" for u in users)  # each run once


def test_reply_deadline_counts_from_the_arrival_the_server_stamped(fake_wecom_api) -> None:
    class Quick:
        runs: list[str] = []

        @hookimpl
        def handle_message(self, message):
            self.runs.append(message.content)
            return "done " + message.content

    sections = app_sections(api_base=fake_wecom_api.url, wechatbot={"store": "memory://", "reply_deadline": "2"})
    fake_wecom_api.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
    app = make_app(sections, {"quick": Quick()})
    client = app.test_client()
    wecom = sections["wecom"]
    arrived = {"at": 0.0}

    def send(method: str, path: str, body: bytes | None) -> tuple[int, str]:
        response = client.open(path, method=method, data=body, content_type="text/xml",
                               environ_overrides={"wechatbot.arrived": arrived["at"]})
        return response.status_code, response.get_data(as_text=True)

    sim = SimulatedWeCom(send, wecom["token"], wecom["encoding_aes_key"], wecom["corp_id"])
    arrived["at"] = time.monotonic()
    assert sim.text("in time", from_user="a").content == "done in time"
    arrived["at"] = time.monotonic() - 3  # waited for a thread longer than reply_deadline
    late = sim.text("too late", from_user="b")
    assert late.status == 200 and late.body == ""  # WeCom stopped waiting: answered empty at once
    sent = fake_wecom_api.wait_for_sent(1, timeout=10)
    assert sent[0]["touser"] == "b" and sent[0]["text"]["content"] == "done too late"
    assert Quick.runs == ["in time", "too late"]


def test_a_callbacks_time_counts_from_its_arrival_in_the_log_and_metrics(caplog) -> None:
    """The wait for a request thread shows in the callback's line and in wechatbot_callback_seconds."""
    from wechatbot.metrics import sample

    class Echo:
        wechatbot_inline = True

        @hookimpl
        def handle_message(self, message):
            return message.content

    sections = app_sections(wechatbot={"store": "memory://"})
    app = make_app(sections, {"echo_now": Echo()})
    client = app.test_client()
    wecom = sections["wecom"]

    def send(method: str, path: str, body: bytes | None) -> tuple[int, str]:
        response = client.open(path, method=method, data=body, content_type="text/xml",
                               environ_overrides={"wechatbot.arrived": time.monotonic() - 1.5})
        return response.status_code, response.get_data(as_text=True)

    before = sample("wechatbot_callback_seconds_sum", app="wecom")
    with caplog.at_level("INFO", logger="wechatbot.callback"):
        assert SimulatedWeCom(send, wecom["token"], wecom["encoding_aes_key"], wecom["corp_id"]).text("hi").content == "hi"
    assert sample("wechatbot_callback_seconds_sum", app="wecom") - before >= 1.5
    line = next(r.getMessage() for r in caplog.records if r.name == "wechatbot.callback")
    assert float(line.rsplit(" in ", 1)[1].split()[0]) >= 1500


def test_while_requests_wait_for_a_thread_no_callback_waits_for_its_plugins(fake_wecom_api) -> None:
    class Quick:
        @hookimpl
        def handle_message(self, message):
            return "done " + message.content

    sections = app_sections(api_base=fake_wecom_api.url, wechatbot={"store": "memory://", "reply_deadline": "4"})
    fake_wecom_api.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
    client = make_app(sections, {"quick": Quick()}).test_client()
    crowded = {"now": False}

    def send(method: str, path: str, body: bytes | None) -> tuple[int, str]:
        response = client.open(path, method=method, data=body, content_type="text/xml",
                               environ_overrides={"wechatbot.arrived": time.monotonic(),
                                                  "wechatbot.crowded": lambda: crowded["now"]})
        return response.status_code, response.get_data(as_text=True)

    wecom = sections["wecom"]
    sim = SimulatedWeCom(send, wecom["token"], wecom["encoding_aes_key"], wecom["corp_id"])
    assert sim.text("calm", from_user="a").content == "done calm"
    crowded["now"] = True
    assert sim.text("crowded", from_user="b").body == ""
    fake_wecom_api.wait_for_sent(1, timeout=10)
    time.sleep(0.5)  # no second push follows
    assert [(m["touser"], m["text"]["content"]) for m in fake_wecom_api.sent] == [("b", "done crowded")]


def _raw(host: Host) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(host.url.rsplit(":", 1)[1])), timeout=10)


def _read_answer(sock: socket.socket, data: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One HTTP answer from ``sock`` (after ``data`` already read): status line, body, and what followed it."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
    while len(rest) < length:
        chunk = sock.recv(4096)
        assert chunk, rest
        rest += chunk
    return head.split(b"\r\n", 1)[0], rest[:length], rest[length:]


def _post_bytes(host: Host, content: str, headers: str = "", body_override: bytes | None = None) -> tuple[bytes, bytes]:
    query, body = host.wecom.signed_request(message_xml("text", content=content))
    head = (f"POST /callback{query} HTTP/1.1\r\nHost: test\r\nContent-Type: text/xml\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def test_requests_in_pieces_pipelined_chunked_or_expecting_100_are_answered(host) -> None:
    # Two requests on one kept-alive connection, the second a byte at a time (but in time), then two pipelined.
    with _raw(host) as sock:
        head, body = _post_bytes(host, "first")
        sock.sendall(head + body)
        status, answer, _ = _read_answer(sock)
        assert status == b"HTTP/1.1 200 OK" and host.wecom.open_reply(answer.decode())["Content"] == "got first"
        head, body = _post_bytes(host, "trickled")
        for i in range(0, len(head + body), 40):
            sock.sendall((head + body)[i:i + 40])
            time.sleep(0.01)
        status, answer, _ = _read_answer(sock)
        assert host.wecom.open_reply(answer.decode())["Content"] == "got trickled"
        pipelined = b"".join(b"".join(_post_bytes(host, text)) for text in ("one", "two"))
        sock.sendall(pipelined)
        _, answer, rest = _read_answer(sock)
        assert host.wecom.open_reply(answer.decode())["Content"] == "got one"
        _, answer, _ = _read_answer(sock, rest)
        assert host.wecom.open_reply(answer.decode())["Content"] == "got two"
    # A chunked body, sent in pieces.
    query, body = host.wecom.signed_request(message_xml("text", content="chunked"))
    pieces = (body[i:i + 100] for i in range(0, len(body), 100))
    response = requests.post(host.url + "/callback" + query, data=pieces, timeout=10)
    assert host.wecom.open_reply(response.text)["Content"] == "got chunked"
    # Expect: 100-continue gets exactly one interim answer before the body is sent.
    with _raw(host) as sock:
        head, body = _post_bytes(host, "expected", headers="Expect: 100-continue\r\n")
        sock.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, answer, _ = _read_answer(sock)
        assert status == b"HTTP/1.1 200 OK", (status, answer)
        assert host.wecom.open_reply(answer.decode())["Content"] == "got expected"
    # A broken Content-Length is refused at once, not waited for.
    with _raw(host) as sock:
        sock.sendall(b"POST /callback HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
    assert host.run_lines() == ["first", "trickled", "one", "two", "chunked", "expected"]


def test_a_kept_alive_connection_whose_next_request_stalls_is_answered_408(host) -> None:
    with _raw(host) as sock:
        head, body = _post_bytes(host, "first")
        sock.sendall(head + body)
        _, answer, _ = _read_answer(sock)
        assert host.wecom.open_reply(answer.decode())["Content"] == "got first"
        head, body = _post_bytes(host, "stalled")
        sock.sendall(head + body[:10])
        sock.settimeout(15)
        status, _, _ = _read_answer(sock)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert host.run_lines() == ["first"]
