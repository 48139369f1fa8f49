"""Fuzzed callbacks: whatever the query string, the envelope or the signed plaintext, never a 5xx or an exception.

The app runs with ``testing = True``, so an exception the host does not turn
into an answer reaches the test instead of becoming a quiet 500.
"""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wechatbot import hookimpl
from wechatbot.testing import app_sections, make_app
from wechatbot.wecom.crypto import WeComCrypto, signature

from fuzz_strategies import numbers, xml_documents

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

FIELD_NAMES = ["MsgType", "Content", "CreateTime", "MsgId", "FromUserName", "ToUserName", "AgentID", "Event",
               "EventKey", "PicUrl", "MediaId", "Location_X", "Scale", "Image", "SelectedItems", "x"]
MSG_TYPES = ["text", "image", "voice", "video", "file", "location", "link", "event", "", "TEXT", "unknown"]


class Echo:
    @hookimpl
    def handle_message(self, message):
        return getattr(message, "content", None) or "ok"

    @hookimpl
    def handle_event(self, event):
        return f"event {event.event}"


@pytest.fixture
def sections() -> dict:
    return app_sections(wechatbot={"store": "memory://", "replay_window": "300"})


@pytest.fixture
def client(sections):
    app = make_app(sections, plugins={"echo": Echo()})
    app.testing = True
    return app.test_client()


@pytest.fixture
def crypto(sections) -> WeComCrypto:
    app = sections["wecom"]
    return WeComCrypto(app["token"], app["encoding_aes_key"], app["corp_id"])


def signed_query(token: str, encrypted: str, timestamp: str | None = None, nonce: str = "fuzz") -> dict:
    timestamp = timestamp if timestamp is not None else str(int(time.time()))
    return {"msg_signature": signature(token, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}


def assert_answered(response) -> None:
    assert response.status_code < 500, response.text


texts = st.text(max_size=60)
field_values = st.one_of(texts, numbers, st.sampled_from(MSG_TYPES))


def documents() -> st.SearchStrategy[str]:
    """XML plaintext shaped like WeCom's, with fields, nesting and values that go wrong."""
    return xml_documents(FIELD_NAMES, field_values, max_depth=3, max_fields=8)


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]),
                              st.one_of(texts, numbers), max_size=5),
       method=st.sampled_from(["GET", "POST"]))
def test_any_query_string_is_answered(client, crypto, params, method) -> None:
    body = f"<xml><Encrypt><![CDATA[{crypto.encrypt('<xml></xml>')}]]></Encrypt></xml>"
    assert_answered(client.open("/callback", method=method, query_string=params, data=body.encode(),
                                content_type="text/xml"))


@FUZZ
@given(timestamp=numbers, nonce=st.text(max_size=200))
def test_signed_hostile_timestamps_and_nonces_get_a_4xx_or_an_answer(client, sections, crypto, timestamp, nonce) -> None:
    encrypted = crypto.encrypt("<xml><MsgType>text</MsgType><Content>hi</Content></xml>")
    query = signed_query(sections["wecom"]["token"], encrypted, timestamp, nonce)
    assert_answered(client.post("/callback", query_string=query, data=f"<xml><Encrypt>{encrypted}</Encrypt></xml>".encode(),
                                content_type="text/xml"))
    query = signed_query(sections["wecom"]["token"], encrypted, timestamp, nonce)
    assert_answered(client.get("/callback", query_string={**query, "echostr": encrypted}))


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), texts.map(str.encode), documents().map(str.encode),
                      st.builds(lambda prefix, middle: f"{prefix}<Encrypt>{middle}</Encrypt></xml>".encode(),
                                st.sampled_from(["<xml>", "", "{", "<xml><Encrypt>", "<!DOCTYPE x><xml>"]), texts)))
def test_any_envelope_is_answered(client, body) -> None:
    query = {"msg_signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "n"}
    assert_answered(client.post("/callback", query_string=query, data=body, content_type="text/xml"))


@FUZZ
@given(plaintext=st.one_of(documents(), texts, st.builds(lambda d: '{"MsgType": ' + repr(d) + "}", texts)))
def test_any_signed_plaintext_is_answered(client, sections, crypto, plaintext) -> None:
    encrypted = crypto.encrypt(plaintext)
    query = signed_query(sections["wecom"]["token"], encrypted)
    response = client.post("/callback", query_string=query, data=f"<xml><Encrypt>{encrypted}</Encrypt></xml>".encode(),
                           content_type="text/xml")
    assert_answered(response)
    assert response.status_code in (200, 400)
