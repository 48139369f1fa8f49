"""wechatbot as a Flask extension: in a user's own app, in-process and under a real gunicorn.

The user's app below is written as a user writes one: its own routes,
``before_request`` / ``after_request`` hooks, an ``errorhandler(Exception)``
and ``MAX_CONTENT_LENGTH``, plus ``WeComBot(app, config=path)``. Its hooks
must see WeCom's POSTed callbacks, and its replies must open with wechatpy and
with the reference implementation of the official sample's algorithm.
"""
from __future__ import annotations

import importlib.util
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import xmltodict
from flask import Flask
from werkzeug.test import EnvironBuilder

from wechatbot import WeComBot, hookimpl
from wechatbot.config import config_from_sections
from wechatbot.testing import app_sections, free_port, ini_text, make_app, simulated_wecom, wait_until_serving
from wechatbot.testing.reference_crypto import ref_decrypt, ref_signature
from wechatbot.testing.simulator import SimulatedWeCom, http_transport, message_xml

USER_APP = '''
"""A user's Flask app that also answers WeCom."""
import os

from flask import Flask, jsonify, request

from wechatbot import WeComBot, hookimpl

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 4096


@app.before_request
def note_request():
    with open(os.environ["USER_APP_LOG"], "a") as log:
        log.write(f"before {request.method} {request.path} {os.getpid()}\\n")


@app.after_request
def stamp(response):
    response.headers["X-User-App"] = "stamped"
    return response


@app.errorhandler(Exception)
def as_json(error):
    return jsonify(error=type(error).__name__), getattr(error, "code", 500)


@app.get("/hello")
def hello():
    return "hello from the user's own route"


class Shout:
    @hookimpl
    def handle_message(self, message):
        return message.content.upper()


bot = WeComBot(app, config=os.environ["USER_WECHATBOT_CONFIG"], plugins={"shout": Shout()})
'''


def user_sections(**host: str) -> dict[str, dict[str, str]]:
    return app_sections(wechatbot={"store": "memory://", "plugins": "shout", **host})


def reply_opened_by_wechatpy(sections: dict, body: str) -> dict:
    """The reply XML as wechatpy's WeChatCrypto opens it (signature checked)."""
    from wechatpy.enterprise.crypto import WeChatCrypto

    wecom = sections["wecom"]
    envelope = xmltodict.parse(body)["xml"]
    plain = WeChatCrypto(wecom["token"], wecom["encoding_aes_key"], wecom["corp_id"]).decrypt_message(
        body, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    return xmltodict.parse(plain)["xml"]


def reply_opened_by_reference(sections: dict, body: str) -> dict:
    """The reply XML as the official sample's algorithm opens it (signature checked)."""
    wecom = sections["wecom"]
    envelope = xmltodict.parse(body)["xml"]
    assert ref_signature(wecom["token"], envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"]) == envelope["MsgSignature"]
    _, plain, receive_id = ref_decrypt(wecom["encoding_aes_key"], envelope["Encrypt"])
    assert receive_id == wecom["corp_id"]
    return xmltodict.parse(plain)["xml"]


@pytest.fixture
def closing() -> Iterator[list[Flask]]:
    """Apps whose hosts are closed when the test ends."""
    apps: list[Flask] = []
    yield apps
    for app in apps:
        app.extensions["wechatbot"].close()


def token_of(app: Flask) -> str:
    return app.extensions["wechatbot"].endpoints[""].config.token


# --- where the configuration comes from -----------------------------------------


@pytest.fixture
def config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Four config files, each with its own token, and a working directory holding ./config.ini."""
    files = {}
    for name in ("given", "app_config", "environ", "config.ini"):
        path = tmp_path / (name if name.endswith(".ini") else f"{name}.ini")
        path.write_text(ini_text(user_sections()))
        files[name] = path
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WECHATBOT_CONFIG", raising=False)
    return files


def tokens(files: dict[str, Path]) -> dict[str, str]:
    return {name: config_from_sections(_sections(path)).endpoint().token for name, path in files.items()}


def _sections(path: Path) -> dict:
    from wechatbot.config import read_ini

    parser = read_ini(path)
    return {s: dict(parser[s]) for s in parser.sections()}


def test_config_is_taken_first_match_wins(config_files, monkeypatch, closing) -> None:
    expected = tokens(config_files)
    monkeypatch.setenv("WECHATBOT_CONFIG", str(config_files["environ"]))

    def built(config: Any = None, app_config: Any = None) -> str:
        app = Flask("user")
        if app_config is not None:
            app.config["WECHATBOT_CONFIG"] = app_config
        WeComBot(app, config=config, plugins={"shout": object()})
        closing.append(app)
        return token_of(app)

    given = config_from_sections(_sections(config_files["given"]))
    assert built(given, app_config=str(config_files["app_config"])) == expected["given"]  # a Config
    assert built(str(config_files["given"]), app_config=str(config_files["app_config"])) == expected["given"]  # a path
    assert built(app_config=str(config_files["app_config"])) == expected["app_config"]  # app.config
    assert built(app_config=given) == expected["given"]  # app.config may hold a Config too
    assert built() == expected["environ"]  # $WECHATBOT_CONFIG
    monkeypatch.delenv("WECHATBOT_CONFIG")
    assert built() == expected["config.ini"]  # ./config.ini


def test_init_app_config_beats_the_constructors(config_files, closing) -> None:
    expected = tokens(config_files)
    bot = WeComBot(config=str(config_files["given"]), plugins={"shout": object()})
    first, second = Flask("one"), Flask("two")
    bot.init_app(first)
    bot.init_app(second, config=str(config_files["environ"]))
    closing.extend([first, second])
    assert (token_of(first), token_of(second)) == (expected["given"], expected["environ"])
    assert first.extensions["wechatbot"] is not second.extensions["wechatbot"]  # state per app, none on the extension
    assert not any(isinstance(v, type(first.extensions["wechatbot"])) for v in vars(bot).values())


def test_no_config_anywhere_is_a_clear_error(tmp_path, monkeypatch) -> None:
    from wechatbot.config import ConfigError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WECHATBOT_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="WECHATBOT_CONFIG"):
        WeComBot(Flask("user"))


def test_registering_twice_on_one_app_is_refused(closing) -> None:
    app = Flask("user")
    config = config_from_sections(user_sections())
    WeComBot(app, config, plugins={"shout": object()})
    closing.append(app)
    with pytest.raises(RuntimeError, match="already"):
        WeComBot(app, config, plugins={"shout": object()})


# --- url_prefix -----------------------------------------------------------------


class Shout:
    @hookimpl
    def handle_message(self, message):
        return message.content.upper()


@pytest.mark.parametrize("how", ["constructor", "init_app"])
def test_url_prefix_moves_every_endpoint(how, closing) -> None:
    hr = app_sections()["wecom"] | {"plugins": "shout"}
    config = config_from_sections(user_sections() | {"wecom:hr": hr})
    app = Flask("user")
    if how == "constructor":
        WeComBot(app, config=config, plugins={"shout": Shout()}, url_prefix="/wecom/")
    else:
        WeComBot(plugins={"shout": Shout()}).init_app(app, config, url_prefix="wecom")
    closing.append(app)
    main, other = simulated_wecom(app), simulated_wecom(app, "hr")
    assert (main.path, other.path) == ("/wecom/callback", "/wecom/callback/hr")
    assert main.verify_url() and main.text("hi").content == "HI" and other.text("hr").content == "HR"
    assert app.test_client().post("/callback").status_code == 404


# --- the user's app, in this process ------------------------------------------------


@pytest.fixture
def user_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Flask, dict, Path]]:
    """The user's module imported here, configured through the environment it reads."""
    sections = user_sections()
    (tmp_path / "wechatbot.ini").write_text(ini_text(sections))
    (tmp_path / "userapp.py").write_text(USER_APP)
    log = tmp_path / "requests.log"
    monkeypatch.setenv("USER_WECHATBOT_CONFIG", str(tmp_path / "wechatbot.ini"))
    monkeypatch.setenv("USER_APP_LOG", str(log))
    spec = importlib.util.spec_from_file_location("userapp_under_test", tmp_path / "userapp.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.app, sections, log
    module.bot.close(module.app)


def test_user_hooks_see_the_callbacks_and_replies_open_with_wechatpy_and_the_reference(user_app) -> None:
    app, sections, log = user_app
    wecom = simulated_wecom(app)
    path, body = wecom.signed_request(message_xml("text", content="hello", from_user="lisi"))
    response = app.test_client().post(path, data=body)
    assert response.status_code == 200 and response.headers["X-User-App"] == "stamped"
    for opened in (reply_opened_by_wechatpy(sections, response.text), reply_opened_by_reference(sections, response.text)):
        assert opened["Content"] == "HELLO" and opened["ToUserName"] == "lisi"
    assert wecom.verify_url()
    assert app.test_client().get("/hello").text == "hello from the user's own route"
    lines = [line.rsplit(" ", 1)[0] for line in log.read_text().splitlines()]
    assert lines == ["before POST /callback", "before GET /callback", "before GET /hello"]


def test_the_users_body_limit_and_error_handler_apply_to_callbacks(user_app) -> None:
    app, _, _ = user_app
    response = app.test_client().post(f"/callback?msg_signature=x&timestamp={int(time.time())}&nonce=1", data=b"x" * 5000)
    assert response.status_code == 413 and response.get_json() == {"error": "RequestEntityTooLarge"}
    assert response.headers["X-User-App"] == "stamped"


def test_an_unexpected_failure_reaches_the_users_error_handler(user_app, monkeypatch) -> None:
    app, _, _ = user_app
    channel = app.extensions["wechatbot"].endpoints[""].channel

    def broken(*_args: Any) -> str:
        raise RuntimeError("rendering broke")

    monkeypatch.setattr(channel, "render_passive", broken)
    received = simulated_wecom(app).text("boom")
    assert received.status == 500 and "RuntimeError" in received.body and "Traceback" not in received.body


def test_without_a_user_handler_a_failure_is_a_plain_500_without_traceback(monkeypatch) -> None:
    app = make_app(plugins={"shout": Shout()})
    monkeypatch.setattr(app.extensions["wechatbot"].endpoints[""].channel, "render_passive", lambda *a: 1 / 0)
    received = simulated_wecom(app).text("boom")
    assert received.status == 500 and "Traceback" not in received.body and "ZeroDivisionError" not in received.body


def test_a_store_that_is_down_still_answers_the_callback(caplog) -> None:
    # Nothing listens on port 1: every store call fails at once with a connection error.
    app = make_app(app_sections(wechatbot={"store": "redis://127.0.0.1:1/0", "queue": "memory://"}), plugins={"shout": Shout()})
    wecom = simulated_wecom(app)
    with caplog.at_level(logging.WARNING, logger="wechatbot"):
        received = wecom.text("still here")
    assert received.status == 200 and received.content == "STILL HERE"
    assert "unreachable" in caplog.text and "ConnectionError" in caplog.text  # one line, see wechatbot.outage


def post_chunked(app: Flask, target: str, data: bytes) -> Any:
    """POST ``data`` with no Content-Length, as gunicorn hands on a chunked body."""
    path, _, query = target.partition("?")
    environ = EnvironBuilder(path=path, query_string=query, method="POST", input_stream=io.BytesIO(data)).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True
    return app.test_client().open(environ)


def test_a_chunked_body_is_read_and_held_to_max_body() -> None:
    app = make_app(app_sections(wechatbot={"store": "memory://", "max_body": "3000"}), plugins={"shout": Shout()})
    wecom = simulated_wecom(app)
    target, body = wecom.signed_request(message_xml("text", content="chunks"))
    response = post_chunked(app, target, body)
    assert response.status_code == 200 and wecom.open_reply(response.text)["Content"] == "CHUNKS"
    assert post_chunked(app, target, b"<xml>" + b"x" * 4000 + b"</xml>").status_code == 413
    assert simulated_wecom(app).text("after").content == "AFTER"


@pytest.mark.parametrize("read", ["data", "stream"])
def test_a_hook_that_read_the_body_first_leaves_the_callback_answered(read: str, closing) -> None:
    app = Flask("user")
    seen: list[int] = []

    @app.before_request
    def peek() -> None:
        from flask import request

        seen.append(len(request.get_data() if read == "data" else request.stream.read()))

    WeComBot(app, config=config_from_sections(app_sections(wechatbot={"store": "memory://"})), plugins={"shout": Shout()})
    closing.append(app)
    wecom = simulated_wecom(app)
    received = wecom.text("read twice")
    assert seen[0] > 0
    assert received.status == (200 if read == "data" else 400)
    if read == "data":  # a consumed stream cannot be read again: the callback is refused, never mistaken
        assert received.content == "READ TWICE"


# --- the user's app under a real gunicorn -------------------------------------------


@pytest.fixture
def served_user_app(tmp_path: Path) -> Iterator[tuple[str, dict, Path]]:
    sections = user_sections(store=f"sqlite:///{tmp_path}/state.db")
    (tmp_path / "wechatbot.ini").write_text(ini_text(sections))
    (tmp_path / "userapp.py").write_text(USER_APP)
    log = tmp_path / "requests.log"
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "USER_WECHATBOT_CONFIG": str(tmp_path / "wechatbot.ini"), "USER_APP_LOG": str(log)}
    env.pop("WECHATBOT_CONFIG", None)
    output = open(tmp_path / "gunicorn.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", url[len("http://"):], "userapp:app"],
        cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving_route(url + "/hello")
    except TimeoutError:
        process.kill()
        pytest.fail("gunicorn did not start: " + (tmp_path / "gunicorn.log").read_text()[-3000:])
    yield url, sections, log
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
    output.close()


def wait_until_serving_route(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def test_under_gunicorn_the_users_hooks_see_callbacks_and_replies_open_elsewhere(served_user_app) -> None:
    url, sections, log = served_user_app
    wecom_section = sections["wecom"]
    wecom = SimulatedWeCom(http_transport(url), wecom_section["token"], wecom_section["encoding_aes_key"], wecom_section["corp_id"])
    assert wecom.verify_url()
    for n in range(6):  # spread over both workers
        path, body = wecom.signed_request(message_xml("text", content=f"hello {n}", from_user="wangwu"))
        response = requests.post(url + path, data=body, timeout=10)
        assert response.status_code == 200 and response.headers["X-User-App"] == "stamped"
        assert reply_opened_by_wechatpy(sections, response.text)["Content"] == f"HELLO {n}"
        assert reply_opened_by_reference(sections, response.text)["Content"] == f"HELLO {n}"
    # A chunked body (no Content-Length): gunicorn sets wsgi.input_terminated, werkzeug reads it.
    path, body = wecom.signed_request(message_xml("text", content="in chunks"))
    response = requests.post(url + path, data=iter([body[:40], body[40:]]), timeout=10)
    assert response.status_code == 200 and reply_opened_by_reference(sections, response.text)["Content"] == "IN CHUNKS"
    # The user's body limit and error handler, over HTTP.
    too_big = requests.post(url + path, data=b"x" * 5000, timeout=10)
    assert too_big.status_code == 413 and too_big.json() == {"error": "RequestEntityTooLarge"}
    lines = log.read_text().splitlines()
    posts = [line for line in lines if line.startswith("before POST /callback")]
    assert len(posts) == 8 and any(line.startswith("before GET /callback") for line in lines)


# --- closing ------------------------------------------------------------------------


def wechatbot_threads() -> dict[int, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.name.startswith("wechatbot") and t.ident is not None}


def test_close_stops_every_thread_the_host_started_and_closes_the_store(tmp_path) -> None:
    before = wechatbot_threads()
    app = Flask("user")
    bot = WeComBot(app, config_from_sections(user_sections(store=f"sqlite:///{tmp_path}/s.db")), plugins={"shout": Shout()})
    try:
        assert simulated_wecom(app).text("warm up").content == "WARM UP"
        started = {ident: name for ident, name in wechatbot_threads().items() if ident not in before}
        for kind in ("wechatbot-dedup-writer", "wechatbot-lease-heartbeat", "wechatbot-jobs-Worker-", "wechatbot-jobs-Scheduler"):
            assert any(name.startswith(kind) for name in started.values()), (kind, started)
    finally:
        bot.close(app)
    bot.close(app)  # closing twice is harmless
    assert not set(wechatbot_threads()) & set(started)
    with pytest.raises(RuntimeError, match="closed"):
        app.extensions["wechatbot"].store.get("anything")
