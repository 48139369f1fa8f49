"""Hostile callbacks, signed with the app's own keys: refused with a 4xx, never a 5xx, before any plugin runs."""
from __future__ import annotations

import time
import tracemalloc

import pytest

from wechatbot import hookimpl
from wechatbot.testing import app_sections, make_app
from wechatbot.testing.simulator import message_xml
from wechatbot.wecom.crypto import WeComCrypto, signature
from wechatbot.wecom.limits import MAX_ATTRIBUTES, MAX_DEPTH
from wechatbot.wecom.messages import MessageParseError, parse_message


class Counting:
    """Answers every text and counts how often it ran."""

    def __init__(self) -> None:
        self.runs = 0

    @hookimpl
    def handle_message(self, message):
        self.runs += 1
        return "seen"


@pytest.fixture
def plugin() -> Counting:
    return Counting()


@pytest.fixture
def sections() -> dict:
    return app_sections(wechatbot={"store": "memory://", "replay_window": "300", "max_body": str(4 * 1024 * 1024)})


@pytest.fixture
def client(sections, plugin):
    return make_app(sections, plugins={"counting": plugin}).test_client()


@pytest.fixture
def crypto(sections) -> WeComCrypto:
    app = sections["wecom"]
    return WeComCrypto(app["token"], app["encoding_aes_key"], app["corp_id"])


def post_signed(client, sections, crypto: WeComCrypto, plaintext: str, timestamp: str | None = None,
                nonce: str = "n0nce"):
    """POST ``plaintext`` sealed and signed exactly as WeCom would."""
    timestamp = timestamp or str(int(time.time()))
    encrypted = crypto.encrypt(plaintext)
    sig = signature(sections["wecom"]["token"], timestamp, nonce, encrypted)
    body = f"<xml><ToUserName><![CDATA[x]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return client.post("/callback", query_string={"msg_signature": sig, "timestamp": timestamp, "nonce": nonce},
                       data=body.encode(), content_type="text/xml")


def deep_document(depth: int) -> str:
    return "<xml>" + "<a>" * depth + "</a>" * depth + "</xml>"


def wide_document(attributes: int) -> str:
    attrs = " ".join(f"a{i}='1'" for i in range(attributes))
    return f"<xml><MsgType>text</MsgType><Content {attrs}>hi</Content></xml>"


def test_a_normal_message_still_runs_the_plugin(client, sections, crypto, plugin) -> None:
    assert post_signed(client, sections, crypto, message_xml("text", content="hi")).status_code == 200
    assert plugin.runs == 1


@pytest.mark.parametrize("document, reason", [
    (deep_document(100_000), "'<' characters"),
    (deep_document(MAX_DEPTH + 1), "nest deeper"),
    (wide_document(30_000), "attributes"),
    (wide_document(MAX_ATTRIBUTES + 1), "attributes"),
])
def test_absurd_structure_is_a_400_naming_the_cap(client, sections, crypto, plugin, document, reason) -> None:
    response = post_signed(client, sections, crypto, document)
    assert response.status_code == 400
    assert reason in response.text
    assert plugin.runs == 0


@pytest.mark.parametrize("document", [deep_document(100_000), wide_document(30_000)])
def test_absurd_structure_is_refused_without_building_anything(document) -> None:
    """Python allocates next to nothing beyond the document while refusing it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            with pytest.raises(MessageParseError):
                parse_message(document)
        grown = tracemalloc.get_traced_memory()[0] - before
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024
    assert peak < 2 * len(document) + 256 * 1024


def test_an_absurd_envelope_is_refused_before_the_signature(client) -> None:
    body = ("<xml>" + "<a>" * 100_000 + "</a>" * 100_000 + "<Encrypt>abc</Encrypt></xml>").encode()
    response = client.post(f"/callback?msg_signature=x&timestamp={int(time.time())}&nonce=n", data=body, content_type="text/xml")
    assert response.status_code == 400 and "'<' characters" in response.text
    attrs = " ".join(f"a{i}='1'" for i in range(30_000))
    response = client.post(f"/callback?msg_signature=x&timestamp={int(time.time())}&nonce=n",
                           data=f"<xml {attrs}><Encrypt>abc</Encrypt></xml>".encode(), content_type="text/xml")
    assert response.status_code == 400 and "attributes" in response.text


@pytest.mark.parametrize("nonce", ["a]]>b", "a\x01b", "x" * 500])
def test_a_nonce_the_reply_cannot_carry_is_refused_before_any_plugin(client, sections, crypto, plugin, nonce) -> None:
    response = post_signed(client, sections, crypto, message_xml("text", content="hi"), nonce=nonce)
    assert response.status_code == 400 and "nonce" in response.text
    assert plugin.runs == 0


def test_refusals_never_quote_decrypted_content(client, sections, crypto, caplog) -> None:
    secret_words = "SECRET-PAYLOAD-42"
    document = f"<xml><MsgType>text</MsgType><CreateTime>{secret_words}</CreateTime></xml>"
    with caplog.at_level("DEBUG"):
        response = post_signed(client, sections, crypto, document)
    # It decrypted, so it is answered 200 (an unknown callback), but its content is never quoted.
    assert response.status_code == 200
    assert secret_words not in response.text and secret_words not in caplog.text


def test_a_message_sealed_for_another_receive_id_does_not_quote_what_it_decrypted(sections, client) -> None:
    app = sections["wecom"]
    other = WeComCrypto(app["token"], app["encoding_aes_key"], "free text that is not an id: PAYLOAD")
    timestamp, nonce = str(int(time.time())), "n1"
    encrypted = other.encrypt(message_xml("text", content="hi"))
    sig = signature(app["token"], timestamp, nonce, encrypted)
    response = client.post("/callback", query_string={"msg_signature": sig, "timestamp": timestamp, "nonce": nonce},
                           data=f"<xml><Encrypt>{encrypted}</Encrypt></xml>".encode(), content_type="text/xml")
    assert response.status_code == 400
    assert "PAYLOAD" not in response.text and "bytes that are not an id" in response.text


@pytest.mark.parametrize("timestamp", ["9" * 400, "-" + "9" * 400, "1" * 21])
def test_an_absurd_timestamp_is_a_4xx_signed_or_not(client, sections, crypto, plugin, timestamp) -> None:
    assert 400 <= post_signed(client, sections, crypto, message_xml("text", content="hi"), timestamp=timestamp).status_code < 500
    encrypted = crypto.encrypt("1234")
    sig = signature(sections["wecom"]["token"], timestamp, "n", encrypted)
    query = {"msg_signature": sig, "timestamp": timestamp, "nonce": "n", "echostr": encrypted}
    assert 400 <= client.get("/callback", query_string=query).status_code < 500
    assert plugin.runs == 0
