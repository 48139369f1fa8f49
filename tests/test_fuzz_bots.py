"""Fuzzed bot callbacks (``type = aibot``, JSON; ``type = group_robot``, XML): signed and sealed as WeCom
does, but absurd inside. Every answer is a 2xx or a 4xx with one log line, never a 5xx or a traceback,
and a worker that keeps answering them does not keep growing.

The apps run with ``testing = True``, so an exception the host does not turn
into an answer reaches the test instead of becoming a quiet 500. Each fuzzed
test tries 200 examples; ``WECHATBOT_FUZZ_EXAMPLES=3000`` tries more.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import re
import secrets
import threading
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wechatbot import hookimpl, metrics
from wechatbot.testing import app_sections, make_app
from wechatbot.testing.bot_simulator import SimulatedAibot, SimulatedGroupRobot
from wechatbot.logs import TextFormatter
from wechatbot.testing.hosts import flask_transport
from wechatbot.wecom.crypto import signature

from fuzz_strategies import WRAPPERS, numbers, xml_documents

FUZZ = settings(max_examples=int(os.environ.get("WECHATBOT_FUZZ_EXAMPLES", "200")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

TEXT = TextFormatter()
# Nowhere to go: a push through these fails at once, without the network.
DEAD_URLS = ["", "not a url", "http://127.0.0.1:9/cgi-bin/aibot/response?response_code=x", "ftp://x/y", "http://[::1"]


class Echo:
    """Answers everything with something: a text, or the text of the event."""

    @hookimpl
    def handle_message(self, message):
        return getattr(message, "content", None) or f"a {message.type}"

    @hookimpl
    def handle_event(self, event):
        return f"event {event.event}"


def bot_app(kind: str):
    sections = app_sections(wecom={"type": kind}, wechatbot={"queue": "memory://", "push_retry_for": "0"})
    app = make_app(sections, plugins={"echo": Echo()})
    app.testing = True
    endpoint = app.extensions["wechatbot"].endpoints[""]
    cls = SimulatedAibot if kind == "aibot" else SimulatedGroupRobot
    return app, cls(flask_transport(app), endpoint.config.token, endpoint.config.encoding_aes_key, endpoint.path)


@pytest.fixture
def aibot():
    app, sim = bot_app("aibot")
    yield app.test_client(), sim


@pytest.fixture
def group():
    app, sim = bot_app("group_robot")
    yield app.test_client(), sim


def post(client, sim, plaintext: str | bytes, *, timestamp: str | None = None, nonce: str | None = None,
         envelope: Any = None):
    """POST ``plaintext`` sealed and signed with the endpoint's keys, in the channel's envelope."""
    text = plaintext.decode("utf-8", "surrogateescape") if isinstance(plaintext, bytes) else plaintext
    text = text.encode("utf-8", "replace").decode()  # WeCom seals UTF-8: no lone surrogates
    encrypted = sim.crypto.encrypt(text)
    timestamp = timestamp if timestamp is not None else str(int(time.time()))
    nonce = nonce if nonce is not None else secrets.token_hex(8)
    query = {"msg_signature": signature(sim.token, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    if sim.envelope == "json":
        body = json.dumps(envelope if envelope is not None else {"encrypt": encrypted}).encode()
    else:
        body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    return client.post(sim.path, query_string=query, data=body,
                       content_type="application/json" if sim.envelope == "json" else "text/xml")


@pytest.fixture(autouse=True)
def no_tracebacks():
    """No wechatbot log line of the whole test (pushes in the pool too) carries a traceback or a second line."""
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info or "\n" in TEXT.format(record):
                seen.append(record)

    handler = Collect(logging.DEBUG)
    logger = logging.getLogger("wechatbot")
    logger.addHandler(handler)
    try:
        yield
        time.sleep(0.2)  # pushes still under way in the pool
    finally:
        logger.removeHandler(handler)
    assert not seen, [f"{r.name}: {r.getMessage()} {r.exc_info}" for r in seen[:5]]


class Lines:
    """The log records of one request, checked: one line for a refusal, never a traceback."""

    def __init__(self, caplog) -> None:
        self.caplog = caplog
        caplog.set_level(logging.INFO, logger="wechatbot")
        caplog.clear()

    def check(self, response) -> None:
        assert response.status_code < 500, response.text
        assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500
        records = [r for r in self.caplog.records if r.name.startswith("wechatbot")]
        assert not [r for r in records if r.exc_info], [r.getMessage() for r in records if r.exc_info]
        written = [TEXT.format(r) for r in records]  # as the log file shows them
        assert all("\n" not in line for line in written), [line for line in written if "\n" in line]
        if response.status_code >= 400:  # the request's own lines (pushes of earlier ones log from the pool)
            refusals = [r for r in records if r.levelno >= logging.WARNING and r.thread == threading.get_ident()]
            assert len(refusals) == 1, [r.getMessage() for r in records]


# -- what a JSON document can be -----------------------------------------------------

# Strings that break lines, markup, format strings or terminals, among any text.
NASTY = ["line\nbreak", "2026-12-01T00:00:00.000Z ERROR [1] forged\r\n", "nul\x00", "\u2028", "]]>", "<xml>",
         "%s%d%(x)s", "{0}", "\x1b[31mred", "a" * 5000]
texts = st.one_of(st.text(max_size=40), st.sampled_from(NASTY))
huge_numbers = st.one_of(st.integers(min_value=-10**40, max_value=10**40), st.floats(allow_nan=True),
                         st.just(10**4000), st.just(-(10**4000)))
scalars = st.one_of(st.none(), st.booleans(), huge_numbers, texts, st.text("0123456789²٣", max_size=30))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(texts, inner, max_size=4)), max_leaves=20)
MSGTYPES = ["text", "image", "mixed", "voice", "file", "video", "stream", "event", "quote", "", "TEXT", "unknown"]
EVENTTYPES = ["enter_chat", "template_card_event", "feedback_event", "disconnected_event", "", "x"]
odd = st.one_of(json_values, st.sampled_from(MSGTYPES))


@st.composite
def aibot_documents(draw) -> dict:
    """An AI bot callback's plaintext JSON with fields that go wrong: missing, mistyped, absurd."""
    kind = draw(st.one_of(st.sampled_from(MSGTYPES), json_values))
    doc: dict[str, Any] = {
        "msgid": draw(st.one_of(texts, json_values)), "aibotid": draw(st.one_of(texts, json_values)),
        "chattype": draw(st.one_of(st.sampled_from(["single", "group", ""]), json_values)),
        "from": draw(st.one_of(st.fixed_dictionaries({"userid": odd}), json_values)),
        "response_url": draw(st.one_of(st.sampled_from(DEAD_URLS), json_values)),
        "msgtype": kind, "chatid": draw(odd), "create_time": draw(st.one_of(huge_numbers, texts)),
    }
    key = kind if isinstance(kind, str) else "text"
    doc[key] = draw(st.one_of(
        st.fixed_dictionaries({"content": odd}),
        st.fixed_dictionaries({"id": odd}),  # a stream refresh for a stream nobody started
        st.fixed_dictionaries({"url": odd, "aeskey": odd}),
        st.fixed_dictionaries({"msg_item": st.lists(st.fixed_dictionaries({"msgtype": odd, "text": odd, "image": odd}),
                                                    max_size=3)}),
        st.fixed_dictionaries({"eventtype": st.one_of(st.sampled_from(EVENTTYPES), json_values),
                               "template_card_event": odd, "feedback_event": st.fixed_dictionaries({
                                   "id": odd, "type": odd, "inaccurate_reason_list": odd}),
                               "enter_chat": odd}),
        json_values))
    if draw(st.booleans()):
        doc["quote"] = draw(st.one_of(st.fixed_dictionaries({"msgtype": odd, "text": odd, "mixed": odd}), json_values))
    for name in draw(st.lists(st.sampled_from(sorted(doc)), max_size=3)):
        doc.pop(name, None)  # missing fields
    return doc


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


aibot_plaintexts = st.one_of(
    aibot_documents().map(lambda d: json.dumps(d, ensure_ascii=False)),
    json_values.map(json.dumps),
    texts,
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
    st.sampled_from([deep_json(100_000), deep_object(5000), json.dumps({"msgtype": "text", "text": {"content": "x" * 200_000}}),
                     "[" + ",".join(["{}"] * 50_000) + "]", '{"msgtype": "text", "text": {"content": "' + "\\ud800" * 10 + '"}}',
                     "{" + ",".join(f'"k{i}": {i}' for i in range(20_000)) + "}", "1e999999", "-" + "9" * 5000,
                     '{"msgtype": "stream", "stream": {"id": "no-such-stream"}}', '{"msgtype": 1, "1": {}}',
                     '{"msgtype": "event", "event": {"eventtype": "feedback_event", "feedback_event": '
                     '{"inaccurate_reason_list": ["²", "' + "9" * 5000 + '"]}}}']),
)


@FUZZ
@given(plaintext=aibot_plaintexts)
def test_any_signed_aibot_plaintext_is_answered(aibot, caplog, plaintext) -> None:
    client, sim = aibot
    lines = Lines(caplog)
    lines.check(post(client, sim, plaintext))




@FUZZ
@given(timestamp=st.one_of(numbers, texts), nonce=st.text(max_size=200), kind=st.sampled_from(["aibot", "group"]))
def test_signed_absurd_timestamps_and_nonces_get_a_4xx_or_an_answer(aibot, group, caplog, timestamp, nonce, kind) -> None:
    client, sim = aibot if kind == "aibot" else group
    plaintext = (json.dumps(sim.document("text", {"content": "hi"})) if kind == "aibot"
                 else sim.document("text", {"Text": {"Content": "@RobotA hi"}}))
    lines = Lines(caplog)
    lines.check(post(client, sim, plaintext, timestamp=timestamp, nonce=nonce))


@FUZZ
@given(envelope=st.one_of(json_values, st.fixed_dictionaries({"encrypt": json_values}),
                          st.fixed_dictionaries({"encrypt": texts, "x": json_values})))
def test_any_json_envelope_is_answered(aibot, caplog, envelope) -> None:
    client, sim = aibot
    lines = Lines(caplog)
    lines.check(post(client, sim, "{}", envelope=envelope))


@FUZZ
@given(body=st.one_of(st.binary(max_size=200), texts.map(str.encode),
                      st.sampled_from([b"[" * 100_000, b'{"encrypt": ' * 5000, b'{"encrypt": "' + b"A" * 300_000 + b'"}',
                                       b'{"encrypt": null}', b"\xff\xfe{}", b'{"encrypt": "%%%"}'])))
def test_any_aibot_body_is_answered(aibot, caplog, body) -> None:
    client, sim = aibot
    lines = Lines(caplog)
    query = {"msg_signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "n"}
    lines.check(client.post(sim.path, query_string=query, data=body, content_type="application/json"))


GROUP_FIELDS = ["MsgType", "From", "UserId", "Name", "Alias", "ChatId", "ChatType", "WebhookUrl", "GetChatInfoUrl",
                "MsgId", "Text", "Content", "Image", "ImageUrl", "MixedMessage", "MsgItem", "Event", "EventType",
                "Attachment", "CallbackId", "Actions", "Value", "Type", "PostId", "x"]
GROUP_TYPES = ["text", "image", "mixed", "event", "attachment", "command", "", "TEXT", "unknown"]


def group_documents() -> st.SearchStrategy[str]:
    """Group robot XML with the robot's fields, nested and valued wrongly."""
    return xml_documents(GROUP_FIELDS, st.one_of(texts, numbers, st.sampled_from(GROUP_TYPES + DEAD_URLS)),
                         max_depth=4, max_fields=10, wrappers=WRAPPERS + ["<xml><xml>{}</xml></xml>"])


@FUZZ
@given(plaintext=st.one_of(group_documents(), texts, json_values.map(json.dumps),
                           st.sampled_from(["<xml>" + "<a>" * 100_000 + "</a>" * 100_000 + "</xml>",
                                            "<xml><MsgType>text</MsgType><Text><Content>" + "x" * 300_000
                                            + "</Content></Text></xml>",
                                            "<xml><MsgType>attachment</MsgType><Attachment>" + "<Actions><Value>v</Value></Actions>" * 5000
                                            + "</Attachment></xml>"])))
def test_any_signed_group_robot_plaintext_is_answered(group, caplog, plaintext) -> None:
    client, sim = group
    lines = Lines(caplog)
    lines.check(post(client, sim, plaintext))


def garbage(n: int) -> list[str]:
    """``n`` different absurd AI bot callbacks: new msgids, msgtypes, events, users and stream ids each time."""
    out = []
    for i in range(n):
        tag = secrets.token_hex(6)
        out.append(json.dumps([
            {"msgid": tag, "msgtype": f"type-{tag}", "from": {"userid": f"user-{tag}"}, "response_url": ""},
            {"msgid": tag, "msgtype": "event", "event": {"eventtype": f"event-{tag}"}, "from": {"userid": tag}},
            {"msgid": tag, "msgtype": "stream", "stream": {"id": f"stream-{tag}"}, "from": {"userid": tag}},
            {"msgid": tag, "msgtype": "text", "text": {"content": tag}, "from": {"userid": [tag]}, "create_time": 1e308},
            [tag] * 3,
        ][i % 5]))
    return out


@pytest.mark.parametrize("kind", ["aibot", "group_robot"])
def test_a_worker_answering_absurd_callbacks_does_not_keep_growing(tmp_path, kind) -> None:
    sections = app_sections(wecom={"type": kind}, wechatbot={"store": f"sqlite:///{tmp_path / 'state.db'}"})
    app = make_app(sections, plugins={"echo": Echo()})
    endpoint = app.extensions["wechatbot"].endpoints[""]
    cls = SimulatedAibot if kind == "aibot" else SimulatedGroupRobot
    sim = cls(flask_transport(app), endpoint.config.token, endpoint.config.encoding_aes_key, endpoint.path)
    client = app.test_client()
    if kind == "aibot":
        batches = [garbage(400) for _ in range(3)]
    else:
        batches = [[sim.document(f"type-{secrets.token_hex(6)}", {"Event": {"EventType": secrets.token_hex(6)}},
                                 from_user=secrets.token_hex(6), chat_id=secrets.token_hex(6)) for _ in range(400)]
                   for _ in range(3)]

    def run(batch: list[str]) -> None:
        for plaintext in batch:
            assert post(client, sim, plaintext).status_code < 500

    class Written(logging.Handler):
        """Formats each line as a worker's log does, and keeps none (pytest's capture would)."""

        def emit(self, record: logging.LogRecord) -> None:
            TEXT.format(record)

    logger = logging.getLogger("wechatbot")
    handler = Written(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        run(batches[0])  # warm: caches, metrics, the pool's threads
        gc.collect()
        tracemalloc.start()
        try:
            run(batches[1])
            gc.collect()
            middle = tracemalloc.get_traced_memory()[0]
            run(batches[2])
            gc.collect()
            end = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    finally:
        logger.propagate = True
        logger.removeHandler(handler)
    print(f"{kind}: +{(end - middle) / 1024:.0f} KiB over the last 400 callbacks")
    assert end - middle < 64 * 1024  # under 160 bytes a callback: nothing kept per callback
    # /metrics keeps to a few kinds: the absurd ones count as "other".
    text = metrics.render()[0].decode()
    kinds = set(re.findall(r'^wechatbot_callbacks_total\{[^}]*kind="([^"]*)"', text, re.M))
    assert "other" in kinds and len(kinds) <= metrics.MAX_KINDS + 1
