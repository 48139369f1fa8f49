"""Tests for wechatbot.wecom.crypto: vectors, round trips, envelopes, errors, interop.

Interop runs against two other implementations: a minimal one on pycryptodome
(`wechatbot.testing.reference_crypto`; wechatbot itself uses `cryptography`), and the official
WXBizMsgCrypt3.py, extracted at test time from the shared seeds (skipped when
they are absent).
"""

from __future__ import annotations

import base64
import importlib
import json
import struct
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import wechatbot.wecom.crypto as crypto_module
from wechatbot.testing.reference_crypto import ref_decrypt, ref_encrypt, ref_frame, ref_open, ref_seal
from wechatbot.wecom.crypto import (
    AESKeyError,
    BuildReplyError,
    ComputeSignatureError,
    DecodeBase64Error,
    DecryptError,
    EncodeBase64Error,
    EncryptError,
    InvalidBufferError,
    ParseError,
    ReceiveIdError,
    SignatureError,
    WeComCrypto,
    WeComCryptoError,
    envelope_format,
    generate_aes_key,
    generate_token,
    parse_envelope,
    signature,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "crypto_vectors.json").read_text("utf-8"))
SEED = Path(__file__).resolve().parents[1].parent / "shared" / "seeds" / "000_6343c81ca4e74dd4.txt"

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORP = "ww1436e0e65a779aee"
TS = "1409659813"
NONCE = "VHh7ymSeb0jc4lSb"
TEXTS = [
    "",
    "hello",
    "我是中文abcd123",
    "emoji 😀👍🏽 and 企业微信",
    "<xml><Content><![CDATA[混合 ]]]]><![CDATA[> 内容]]></Content></xml>",
    "x" * 5000,
]


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(TOKEN, KEY, CORP)


# --- padding by hand (the pycryptodome reference is wechatbot.testing.reference_crypto)


def pad_to_32(data: bytes, pad_byte: int | None = None) -> bytes:
    """Pad ``data`` to a multiple of 32 with n bytes, each ``pad_byte`` (default n)."""
    n = 32 - len(data) % 32
    return data + bytes((n if pad_byte is None else pad_byte,)) * n


# --- helpers ------------------------------------------------------------------


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """No 8-character piece of any secret shows in the error text."""
    text = str(exc) + repr(exc.args)
    for secret in secrets:
        for i in range(len(secret) - 7):
            assert secret[i:i + 8] not in text, f"secret leaked into: {text}"


def xml_fields(envelope: str) -> dict[str, str]:
    root = ET.fromstring(envelope)
    return {child.tag: child.text or "" for child in root}


def sign_and_wrap_xml(encrypted: str, timestamp: str = TS, nonce: str = NONCE) -> tuple[str, str]:
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return body, signature(TOKEN, timestamp, nonce, encrypted)


# --- official vectors ---------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["url_verification"], ids=lambda v: v["nonce"])
def test_url_verification_vectors(v: dict) -> None:
    c = WeComCrypto(v["token"], v["encoding_aes_key"], v["receive_id"])
    assert signature(v["token"], v["timestamp"], v["nonce"], v["echostr"]) == v["msg_signature"]
    assert c.verify_url(v["msg_signature"], v["timestamp"], v["nonce"], v["echostr"]) == v["plaintext"]


@pytest.mark.parametrize("v", VECTORS["messages"], ids=lambda v: v["nonce"])
def test_message_vectors(v: dict) -> None:
    c = WeComCrypto(v["token"], v["encoding_aes_key"], v["receive_id"])
    for body in (v["body"], v["body"].encode()):
        assert c.decrypt_message(body, v["msg_signature"], v["timestamp"], v["nonce"]) == v["plaintext"]


@pytest.mark.parametrize("v", VECTORS["url_verification"], ids=lambda v: v["nonce"])
def test_vector_rejected_with_other_receive_id(v: dict) -> None:
    c = WeComCrypto(v["token"], v["encoding_aes_key"], "")
    with pytest.raises(ReceiveIdError) as err:
        c.verify_url(v["msg_signature"], v["timestamp"], v["nonce"], v["echostr"])
    assert err.value.code == -40005
    assert repr(v["receive_id"]) in str(err.value)
    assert_clean(err.value, v["token"], v["encoding_aes_key"])


# --- round trips --------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("receive_id", [CORP, ""])
def test_round_trip(text: str, receive_id: str) -> None:
    c = WeComCrypto(TOKEN, KEY, receive_id)
    assert c.decrypt(c.encrypt(text)) == text


def test_every_padding_length(crypto: WeComCrypto) -> None:
    seen_pads = set()
    for size in range(70):
        text = "a" * size
        encrypted = crypto.encrypt(text)
        framed = 20 + size + len(CORP)
        raw = base64.b64decode(encrypted)
        assert len(raw) == (framed // 32 + 1) * 32
        seen_pads.add(ref_open(KEY, encrypted)[-1])
        assert crypto.decrypt(encrypted) == text
    assert seen_pads == set(range(1, 33))


def test_length_counts_utf8_bytes(crypto: WeComCrypto) -> None:
    text = "我是中文abcd123"
    plain = ref_open(KEY, crypto.encrypt(text))
    assert struct.unpack(">I", plain[16:20])[0] == len(text.encode()) != len(text)


def test_each_encryption_uses_a_fresh_prefix(crypto: WeComCrypto) -> None:
    a, b = crypto.encrypt("same"), crypto.encrypt("same")
    assert a != b
    assert ref_decrypt(KEY, a)[0] != ref_decrypt(KEY, b)[0]


# --- interop with the pycryptodome implementation -----------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_reference_decrypts_ours(crypto: WeComCrypto, text: str) -> None:
    prefix, msg, receive_id = ref_decrypt(KEY, crypto.encrypt(text))
    assert (len(prefix), msg, receive_id) == (16, text, CORP)


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("prefix", [b"1234567890123456", bytes(range(240, 256)), b"\x00" * 16])
def test_we_decrypt_reference(crypto: WeComCrypto, text: str, prefix: bytes) -> None:
    assert crypto.decrypt(ref_encrypt(KEY, text, CORP, prefix)) == text


def test_one_app_many_messages_many_threads_match_the_reference() -> None:
    """Each thread keeps its AES contexts open: message after message, in any
    order and length, the reference (a fresh context each time) reads ours
    and we read the reference's."""
    import threading

    shared = WeComCrypto(TOKEN, KEY, CORP)
    failures: list[str] = []

    def work(seed: int) -> None:
        for i in range(60):
            text = TEXTS[(seed + i) % len(TEXTS)] * (1 + (seed * i) % 5)
            prefix = bytes((seed + i + k) % 256 for k in range(16))
            sealed = ref_encrypt(KEY, text, CORP, prefix)
            if shared.decrypt(sealed) != text:
                failures.append(f"decrypt {seed}/{i}")
            ours = shared.encrypt(text)
            if ref_decrypt(KEY, ours)[1:] != (text, CORP):
                failures.append(f"encrypt {seed}/{i}")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_ai_bot_json_round_trip_with_reference() -> None:
    bot = WeComCrypto(TOKEN, KEY, "")
    plaintext = json.dumps({"msgid": "abc", "msgtype": "text", "text": {"content": "你好 🤖"}}, ensure_ascii=False)
    encrypted = ref_encrypt(KEY, plaintext, "")
    body = json.dumps({"encrypt": encrypted})
    sig = signature(TOKEN, TS, NONCE, encrypted)
    assert json.loads(bot.decrypt_message(body, sig, TS, NONCE))["text"]["content"] == "你好 🤖"

    reply = json.loads(bot.encrypt_reply('{"msgtype":"text","text":{"content":"好"}}', NONCE, TS, fmt="json"))
    assert ref_decrypt(KEY, reply["encrypt"])[1:] == ('{"msgtype":"text","text":{"content":"好"}}', "")


# --- envelopes ----------------------------------------------------------------


def test_xml_reply_envelope(crypto: WeComCrypto) -> None:
    reply = crypto.encrypt_reply("<xml><Content><![CDATA[回复 😀]]></Content></xml>", NONCE, TS)
    assert reply.startswith("<xml><Encrypt><![CDATA[")
    assert f"<Nonce><![CDATA[{NONCE}]]></Nonce>" in reply
    root = ET.fromstring(reply)
    assert root.tag == "xml"
    assert [child.tag for child in root] == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
    fields = xml_fields(reply)
    assert fields["TimeStamp"] == TS and fields["Nonce"] == NONCE
    crypto.verify_signature(fields["MsgSignature"], TS, NONCE, fields["Encrypt"])
    assert crypto.decrypt(fields["Encrypt"]) == "<xml><Content><![CDATA[回复 😀]]></Content></xml>"


def test_json_reply_envelope(crypto: WeComCrypto) -> None:
    reply = json.loads(crypto.encrypt_reply('{"a": "b"}', NONCE, TS, fmt="json"))
    assert set(reply) == {"encrypt", "msgsignature", "timestamp", "nonce"}
    assert reply["timestamp"] == TS and reply["nonce"] == NONCE
    crypto.verify_signature(reply["msgsignature"], TS, NONCE, reply["encrypt"])
    assert crypto.decrypt(reply["encrypt"]) == '{"a": "b"}'


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_reply_envelopes_decrypt_as_callbacks(crypto: WeComCrypto, fmt: str) -> None:
    reply = crypto.encrypt_reply("往返 round trip", NONCE, TS, fmt=fmt)
    sig = (xml_fields(reply)["MsgSignature"] if fmt == "xml" else json.loads(reply)["msgsignature"])
    assert envelope_format(reply) == fmt
    assert crypto.decrypt_message(reply, sig, TS, NONCE) == "往返 round trip"
    assert crypto.decrypt_message(reply.encode(), sig, TS, NONCE) == "往返 round trip"


def test_reply_timestamp_defaults_to_now(crypto: WeComCrypto) -> None:
    before = int(time.time())
    fields = xml_fields(crypto.encrypt_reply("x", NONCE))
    assert before <= int(fields["TimeStamp"]) <= int(time.time())
    crypto.verify_signature(fields["MsgSignature"], fields["TimeStamp"], NONCE, fields["Encrypt"])


def test_json_reply_accepts_any_nonce(crypto: WeComCrypto) -> None:
    nonce = 'a]]>"b'
    reply = json.loads(crypto.encrypt_reply("x", nonce, TS, fmt="json"))
    crypto.verify_signature(reply["msgsignature"], TS, nonce, reply["encrypt"])


@pytest.mark.parametrize(
    "template",
    [
        "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID>"
        "<Encrypt><![CDATA[{enc}]]></Encrypt></xml>",
        "\n  <?xml version=\"1.0\" encoding=\"utf-8\"?>\n<xml>\n<Encrypt><![CDATA[{enc}]]></Encrypt>\n"
        "<ToUserName><![CDATA[{corp}]]></ToUserName>\n<AgentID><![CDATA[]]></AgentID>\n</xml>\n",
        "<xml><Encrypt>{enc}</Encrypt></xml>",
        '{{"ToUserName": "{corp}", "AgentID": "1", "Encrypt": "{enc}"}}',
        '  {{"tousername": "{corp}", "encrypt": "{enc}", "agentid": 218}}',
        '{{"encrypt": "{enc}"}}',
    ],
)
def test_envelope_shapes(crypto: WeComCrypto, template: str) -> None:
    encrypted = crypto.encrypt("payload")
    body = template.format(corp=CORP, enc=encrypted)
    sig = signature(TOKEN, TS, NONCE, encrypted)
    for form in (body, body.encode(), b"\xef\xbb\xbf" + body.encode()):
        assert parse_envelope(form) == encrypted
        assert crypto.decrypt_message(form, sig, TS, NONCE) == "payload"


@pytest.mark.parametrize(
    "body,fmt",
    [("<xml/>", "xml"), (b"  \r\n<xml/>", "xml"), ("{}", "json"), (b"\xef\xbb\xbf\n{}", "json"), ("\ufeff<a/>", "xml")],
)
def test_envelope_format(body: bytes | str, fmt: str) -> None:
    assert envelope_format(body) == fmt


@pytest.mark.parametrize("body", ["", b"   ", "hello", b"\xff\xfe<\x00x\x00", "[1]", 42])
def test_envelope_format_refuses_other_bodies(body: object) -> None:
    with pytest.raises(ParseError) as err:
        envelope_format(body)  # type: ignore[arg-type]
    assert err.value.code == -40002


ENVELOPE_CASES = [
    # Read by the pattern alone (WeCom's own shape, with and without CDATA).
    b"<xml><ToUserName><![CDATA[ww1]]></ToUserName><Encrypt><![CDATA[QUJD+/==]]></Encrypt>"
    b"<AgentID><![CDATA[1000002]]></AgentID></xml>",
    b"<xml>\n  <ToUserName>ww</ToUserName>\n  <AgentID>1</AgentID>\n  <Encrypt>QUJD</Encrypt>\n</xml>\r\n",
    b"<xml><Encrypt>QUJD</Encrypt><AgentID></AgentID></xml>",
    # Left to expat: each differs from WeCom's shape in one way.
    b"<xml><Encrypt><![CDATA[ QUJD ]]></Encrypt></xml>",
    b"<xml><ToUserName>\xe4\xbd\xa0</ToUserName><Encrypt>QUJD</Encrypt></xml>",
    b"<xml><ToUserName>a&amp;b</ToUserName><Encrypt>QUJD</Encrypt></xml>",
    b"<xml><Encrypt>QUJD</Encrypt><Encrypt>QUJD</Encrypt></xml>",
    b"<xml><Encrypt>QUJD</Encrypt><Other><Encrypt>x</Encrypt></Other></xml>",
    b"<xml a='1'><Encrypt>QUJD</Encrypt></xml>",
    b"<xml><Encrypt>QUJD</Encrypt></xml>junk",
    b"<xml>\x0c<Encrypt>QUJD</Encrypt></xml>",
    b"<xml><ToUserName>\xff</ToUserName><Encrypt>QUJD</Encrypt></xml>",
    b"<xml><A>x</B><Encrypt>QUJD</Encrypt></xml>",
    b"<xml><Encrypt></Encrypt></xml>",
]


@pytest.mark.parametrize("body", ENVELOPE_CASES)
def test_envelope_pattern_agrees_with_expat(body: bytes) -> None:
    """WeCom's usual envelope skips expat; the answer (or the error) is the same."""
    try:
        expected: object = crypto_module._parse_xml_envelope(body)
    except ParseError as exc:
        expected = (ParseError, str(exc))
    try:
        got: object = parse_envelope(body)
    except ParseError as exc:
        got = (ParseError, str(exc))
    assert got == expected


def test_wecom_envelope_is_read_without_expat(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_expat(_data: object) -> str:
        raise AssertionError("expat was used")

    monkeypatch.setattr(crypto_module, "_parse_xml_envelope", no_expat)
    assert parse_envelope(ENVELOPE_CASES[0]) == "QUJD+/=="
    with pytest.raises(AssertionError):
        parse_envelope(ENVELOPE_CASES[3])


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_open_callback_tells_the_format(crypto: WeComCrypto, fmt: str) -> None:
    encrypted = crypto.encrypt("payload")
    body = f"<xml><Encrypt>{encrypted}</Encrypt></xml>" if fmt == "xml" else json.dumps({"encrypt": encrypted})
    sig = signature(TOKEN, TS, NONCE, encrypted)
    assert crypto.open_callback(body.encode(), sig, TS, NONCE) == ("payload", fmt)


# --- errors: signature --------------------------------------------------------


def test_tampered_signature(crypto: WeComCrypto) -> None:
    encrypted = crypto.encrypt("x")
    good = signature(TOKEN, TS, NONCE, encrypted)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    body, _ = sign_and_wrap_xml(encrypted)
    for call in (
        lambda: crypto.decrypt_message(body, bad, TS, NONCE),
        lambda: crypto.verify_url(bad, TS, NONCE, encrypted),
        lambda: crypto.decrypt_message(body, good, TS, NONCE + "1"),
        lambda: crypto.decrypt_message(body, good.upper() + " ", TS, NONCE),
        lambda: crypto.decrypt_message(body, "签名", TS, NONCE),
    ):
        with pytest.raises(SignatureError) as err:
            call()
        assert err.value.code == -40001
        assert "Token" in str(err.value) and "admin page" in str(err.value)
        assert good not in str(err.value)  # the right signature would be a forging oracle
        assert_clean(err.value, TOKEN, KEY)


def test_signature_from_another_token_is_refused() -> None:
    other = WeComCrypto("another-token-entirely-000000000", KEY, CORP)
    v = VECTORS["url_verification"][0]
    with pytest.raises(SignatureError):
        other.verify_url(v["msg_signature"], v["timestamp"], v["nonce"], v["echostr"])


@pytest.mark.parametrize("missing", ["msg_signature", "timestamp", "nonce"])
def test_missing_query_parameter_is_a_signature_error(crypto: WeComCrypto, missing: str) -> None:
    encrypted = crypto.encrypt("x")
    args = {"msg_signature": signature(TOKEN, TS, NONCE, encrypted), "timestamp": TS, "nonce": NONCE}
    args[missing] = None
    with pytest.raises(SignatureError) as err:
        crypto.verify_url(args["msg_signature"], args["timestamp"], args["nonce"], encrypted)
    assert err.value.code == -40001
    assert missing in str(err.value)


def test_signature_is_order_independent() -> None:
    assert signature("a", "b", "c", "d") == signature("d", "c", "b", "a") != signature("a", "b", "c", "e")


@pytest.mark.parametrize("args", [(TOKEN, 1409659813, NONCE, "e"), (TOKEN, TS, None, "e"), (TOKEN, TS, "\ud800", "e")])
def test_compute_signature_error(args: tuple) -> None:
    with pytest.raises(ComputeSignatureError) as err:
        signature(*args)
    assert err.value.code == -40003
    assert_clean(err.value, TOKEN)


def test_compute_signature_error_from_reply(crypto: WeComCrypto) -> None:
    with pytest.raises(ComputeSignatureError) as err:
        crypto.encrypt_reply("x", 12345)  # type: ignore[arg-type]
    assert err.value.code == -40003 and "nonce" in str(err.value)


# --- errors: decryption -------------------------------------------------------


def expect_decrypt_error(crypto: WeComCrypto, encrypted: str, cls: type, code: int, *hints: str) -> WeComCryptoError:
    """Both through decrypt() and through a correctly signed callback."""
    body, sig = sign_and_wrap_xml(encrypted)
    for call in (lambda: crypto.decrypt(encrypted), lambda: crypto.decrypt_message(body, sig, TS, NONCE)):
        with pytest.raises(cls) as err:
            call()
        assert err.value.code == code
        for hint in hints:
            assert hint in str(err.value)
        assert_clean(err.value, TOKEN, KEY)
    return err.value


def test_wrong_receive_id(crypto: WeComCrypto) -> None:
    err = expect_decrypt_error(crypto, ref_encrypt(KEY, "x", "wwsomeoneelse"), ReceiveIdError, -40005,
                               "'wwsomeoneelse'", "receive_id", CORP)
    assert "empty receive_id" in str(err)


def test_empty_receive_id_from_ai_bot_is_named(crypto: WeComCrypto) -> None:
    expect_decrypt_error(crypto, ref_encrypt(KEY, "x", ""), ReceiveIdError, -40005, "receive id ''")


def test_receive_id_is_shown_safely(crypto: WeComCrypto) -> None:
    err = expect_decrypt_error(crypto, ref_encrypt(KEY, "x", "evil\nINFO forged line" + "z" * 200), ReceiveIdError, -40005)
    assert "\n" not in str(err)
    assert len(str(err)) < 400


@pytest.mark.parametrize(
    "padded",
    [
        pytest.param(pad_to_32(ref_frame(b"hello", CORP.encode()), 0), id="pad-byte-0"),
        pytest.param(ref_frame(b"hello", CORP.encode()) + b"\x21" * 21, id="pad-byte-33"),
        pytest.param(pad_to_32(ref_frame(b"hello", CORP.encode()))[:-2] + b"\x01\x15", id="pad-bytes-differ"),
        pytest.param(pad_to_32(ref_frame(b"hello", CORP.encode()))[:-1] + b"\xff", id="pad-byte-255"),
    ],
)
def test_corrupted_padding(crypto: WeComCrypto, padded: bytes) -> None:
    assert len(padded) % 32 == 0
    expect_decrypt_error(crypto, ref_seal(KEY, padded), InvalidBufferError, -40008, "padding", "EncodingAESKey")


@pytest.mark.parametrize("claimed", [6, 100, 0xFFFFFFFF])
def test_corrupted_length_field(crypto: WeComCrypto, claimed: int) -> None:
    # The real message is 5 bytes followed by the 18-byte receive id, so 23 bytes follow the field.
    framed = b"0123456789abcdef" + struct.pack(">I", min(claimed + len(CORP), 0xFFFFFFFF)) + b"hello" + CORP.encode()
    expect_decrypt_error(crypto, ref_seal(KEY, pad_to_32(framed)), InvalidBufferError, -40008,
                         "length field", "EncodingAESKey")


@pytest.mark.parametrize("framed", [b"0123456789abcdef", b"0123456789abcdef\x00\x00\x00"])
def test_too_short_for_length_field(crypto: WeComCrypto, framed: bytes) -> None:
    expect_decrypt_error(crypto, ref_seal(KEY, pad_to_32(framed)), InvalidBufferError, -40008, "too short")


def test_message_not_utf8(crypto: WeComCrypto) -> None:
    framed = ref_frame(b"\xff\xfe bad", CORP.encode())
    expect_decrypt_error(crypto, ref_seal(KEY, pad_to_32(framed)), InvalidBufferError, -40008, "UTF-8")


def test_ciphertext_from_another_key(crypto: WeComCrypto) -> None:
    other_key = generate_aes_key()
    # A wrong key almost always breaks the padding; a rare lucky padding then
    # breaks the length field or the receive id, all checked before any text is returned.
    with pytest.raises((InvalidBufferError, ReceiveIdError)):
        crypto.decrypt(ref_encrypt(other_key, "secret text " * 3, CORP))


@pytest.mark.parametrize(
    "encrypted",
    ["not*base64!", "abc", "密文密文", "AAAA AAAA" + "A" * 35 + "=",
     "+" * 4 + "\n" + "A" * 40],
)
def test_not_base64(crypto: WeComCrypto, encrypted: str) -> None:
    expect_decrypt_error(crypto, encrypted, DecodeBase64Error, -40010, "base64", "URL-decoded")


def test_query_plus_turned_into_space(crypto: WeComCrypto) -> None:
    encrypted = next(e for e in (crypto.encrypt(str(i)) for i in range(200)) if "+" in e)
    with pytest.raises(DecodeBase64Error):
        crypto.decrypt(encrypted.replace("+", " "))


@pytest.mark.parametrize("size", [16, 31, 33, 48])
def test_wrong_length(crypto: WeComCrypto, size: int) -> None:
    encrypted = base64.b64encode(bytes(size)).decode()
    expect_decrypt_error(crypto, encrypted, DecryptError, -40007, f"{size} bytes", "multiple of 32")


def test_empty_ciphertext(crypto: WeComCrypto) -> None:
    with pytest.raises(DecryptError) as err:
        crypto.verify_url(signature(TOKEN, TS, NONCE, ""), TS, NONCE, "")
    assert err.value.code == -40007 and "0 bytes" in str(err.value)


# --- errors: envelopes --------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    "<xml><Encrypt>&lol2;</Encrypt></xml>"
)
XXE = '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Encrypt>&x;</Encrypt></xml>'
# UTF-16 without a byte-order mark hides the declaration from a plain text search.
XXE_UTF16 = ('<?xml version="1.0" encoding="UTF-16"?>' + XXE).encode("utf-16-le")


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, XXE, XXE.encode(), b"\xef\xbb\xbf" + XXE.encode(), XXE_UTF16, "<!doctype xml><xml><Encrypt>a</Encrypt></xml>",
     '<xml><Encrypt>a</Encrypt></xml><!ENTITY x "y">'],
)
def test_doctype_and_entities_refused(crypto: WeComCrypto, body: bytes | str) -> None:
    with pytest.raises(ParseError) as err:
        crypto.decrypt_message(body, "0" * 40, TS, NONCE)
    assert err.value.code == -40002
    assert "DOCTYPE" in str(err.value)
    assert "root:" not in str(err.value)


def test_utf16_envelope_without_declarations_is_read() -> None:
    body = '<?xml version="1.0" encoding="UTF-16"?><xml><Encrypt>abc</Encrypt></xml>'.encode("utf-16-le")
    assert parse_envelope(body) == "abc"


@pytest.mark.parametrize(
    "body",
    [
        "<xml><ToUserName><![CDATA[x]]></ToUserName></xml>",
        "<xml><Wrapper><Encrypt>abc</Encrypt></Wrapper></xml>",
        "<xml><Encrypt><![CDATA[]]></Encrypt></xml>",
        "<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>",
        "<xml><Encrypt>abc</xml>",
        "<xml><Encrypt>abc</Encrypt></xml>trailing",
        b"<xml><Encrypt>\xff\xfe</Encrypt></xml>",
        '{"tousername": "x"}',
        '{"encrypt": 12345}',
        '{"encrypt": ""}',
        '{"encrypt": "abc"',
        "{" * 100000,
        "[" * 100000,
        b'{"encrypt": "\xff"}',
        "",
        "plain text",
        None,
    ],
)
def test_malformed_envelopes(crypto: WeComCrypto, body: object) -> None:
    with pytest.raises(ParseError) as err:
        crypto.decrypt_message(body, "0" * 40, TS, NONCE)  # type: ignore[arg-type]
    assert err.value.code == -40002
    assert_clean(err.value, TOKEN, KEY)


def test_missing_encrypt_message_says_what_to_check() -> None:
    with pytest.raises(ParseError) as err:
        parse_envelope("<xml><ToUserName>x</ToUserName></xml>")
    assert "<Encrypt>" in str(err.value) and "encrypted mode" in str(err.value)
    with pytest.raises(ParseError) as err:
        parse_envelope('{"ToUserName": "x"}')
    assert "'encrypt'" in str(err.value)


# --- errors: keys, encryption, replies ----------------------------------------


@pytest.mark.parametrize(
    "bad_key",
    [KEY[:-1], KEY + "A", " " + KEY[1:], KEY[:-1] + "+", KEY[:-1] + "é", KEY[:20] + "/" + KEY[21:], '"' + KEY[1:]],
)
def test_bad_aes_key(bad_key: str) -> None:
    with pytest.raises(AESKeyError) as err:
        WeComCrypto(TOKEN, bad_key, CORP)
    assert err.value.code == -40004
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert "encoding_aes_key" in message and "43" in message and "[A-Za-z0-9]" in message
    assert_clean(err.value, TOKEN, KEY, bad_key)


@pytest.mark.parametrize("bad_key", [None, KEY.encode(), 43])
def test_aes_key_of_wrong_type(bad_key: object) -> None:
    with pytest.raises(AESKeyError) as err:
        WeComCrypto(TOKEN, bad_key, CORP)  # type: ignore[arg-type]
    assert err.value.code == -40004 and "encoding_aes_key" in str(err.value)


def test_key_last_character_bits_are_ignored_like_wecom() -> None:
    # 43 base64 characters carry 258 bits; the last 2 do not reach the key.
    c = WeComCrypto(TOKEN, KEY[:-1] + "v", CORP)
    assert ref_decrypt(KEY[:-1] + "v", c.encrypt("x"))[1] == "x"


@pytest.mark.parametrize("plaintext", [b"bytes", None, "\ud800 lone surrogate"])
def test_encrypt_error(crypto: WeComCrypto, plaintext: object) -> None:
    with pytest.raises(EncryptError) as err:
        crypto.encrypt(plaintext)  # type: ignore[arg-type]
    assert err.value.code == -40006 and "plaintext" in str(err.value)
    with pytest.raises(EncryptError):
        crypto.encrypt_reply(plaintext, NONCE, TS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs,hint",
    [
        ({"fmt": "yaml"}, "'xml' or 'json'"),
        ({"nonce": "a]]>b"}, "]]>"),
        ({"nonce": "a\x00b"}, "nonce"),
        ({"timestamp": "1\x01"}, "timestamp"),
    ],
)
def test_build_reply_error(crypto: WeComCrypto, kwargs: dict, hint: str) -> None:
    args = {"plaintext": "x", "nonce": NONCE, "timestamp": TS, **kwargs}
    with pytest.raises(BuildReplyError) as err:
        crypto.encrypt_reply(**args)
    assert err.value.code == -40011 and hint in str(err.value)
    assert_clean(err.value, TOKEN, KEY)


def test_reply_timestamp_is_escaped_in_xml(crypto: WeComCrypto) -> None:
    fields = xml_fields(crypto.encrypt_reply("x", NONCE, "1<2&3"))
    assert fields["TimeStamp"] == "1<2&3"
    crypto.verify_signature(fields["MsgSignature"], "1<2&3", NONCE, fields["Encrypt"])


@pytest.mark.parametrize(
    "cls,code",
    [
        (SignatureError, -40001), (ParseError, -40002), (ComputeSignatureError, -40003), (AESKeyError, -40004),
        (ReceiveIdError, -40005), (EncryptError, -40006), (DecryptError, -40007), (InvalidBufferError, -40008),
        (EncodeBase64Error, -40009), (DecodeBase64Error, -40010), (BuildReplyError, -40011),
    ],
)
def test_error_codes(cls: type, code: int) -> None:
    assert issubclass(cls, WeComCryptoError)
    assert cls("m").code == code and str(cls("m")) == "m"


def test_repr_hides_secrets(crypto: WeComCrypto) -> None:
    assert_clean(Exception(repr(crypto)), TOKEN, KEY)
    assert CORP in repr(crypto)


# --- generated credentials ----------------------------------------------------


def test_generated_credentials_work() -> None:
    tokens = {generate_token() for _ in range(5)}
    keys = {generate_aes_key() for _ in range(5)}
    assert len(tokens) == 5 and len(keys) == 5
    for token in tokens:
        assert len(token) == 32 and token.isascii() and token.isalnum()
    for key in keys:
        assert len(key) == 43 and key.isascii() and key.isalnum()
        c = WeComCrypto(tokens.pop(), key, CORP)
        assert ref_decrypt(key, c.encrypt("密钥"))[1] == "密钥"


# --- interop with the official WXBizMsgCrypt3.py -----------------------------


def _added_source(seed_text: str, name: str) -> str:
    """The new side of the diff section ``## <name>`` in the seed file."""
    marker = f"## {name}\n"
    start = seed_text.find(marker)
    if start < 0:
        return ""
    end = seed_text.find("\n## ", start + len(marker))
    section = seed_text[start:end if end >= 0 else None]
    lines = [
        line[1:] for line in section.splitlines()
        if line[:1] in ("+", " ") and not line.startswith("+++") and not line.startswith(" * ")
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory):
    if not SEED.is_file():
        pytest.skip(f"official sample not available ({SEED})")
    text = SEED.read_text("utf-8")
    source = _added_source(text, "wework_callback/WXBizMsgCrypt3.py")
    codes = _added_source(text, "wework_callback/ierror.py")
    if "class WXBizMsgCrypt" not in source or "WXBizMsgCrypt_OK" not in codes:
        pytest.skip("the seed does not hold the full WXBizMsgCrypt3.py")
    root = tmp_path_factory.mktemp("official")
    package = root / "official_wework_callback"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "WXBizMsgCrypt3.py").write_text(source, "utf-8")
    (package / "ierror.py").write_text(codes, "utf-8")
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("official_wework_callback.WXBizMsgCrypt3")
    finally:
        sys.path.remove(str(root))
    yield module.WXBizMsgCrypt
    for name in [n for n in sys.modules if n.startswith("official_wework_callback")]:
        del sys.modules[name]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("receive_id", [CORP, ""])
def test_official_decrypts_our_replies(official, text: str, receive_id: str) -> None:
    ours = WeComCrypto(TOKEN, KEY, receive_id)
    reply = ours.encrypt_reply(text, NONCE, TS)
    ret, plain = official(TOKEN, KEY, receive_id).DecryptMsg(reply, xml_fields(reply)["MsgSignature"], TS, NONCE)
    assert ret == 0
    assert plain.decode() == text


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("receive_id", [CORP, ""])
def test_we_decrypt_official_messages(official, text: str, receive_id: str) -> None:
    ret, envelope = official(TOKEN, KEY, receive_id).EncryptMsg(text, NONCE, TS)
    assert ret == 0
    ours = WeComCrypto(TOKEN, KEY, receive_id)
    assert ours.decrypt_message(envelope, xml_fields(envelope)["MsgSignature"], TS, NONCE) == text


def test_official_url_verification_of_our_echostr(official, crypto: WeComCrypto) -> None:
    echostr = crypto.encrypt("5927350116212375201")
    sig = signature(TOKEN, TS, NONCE, echostr)
    assert official(TOKEN, KEY, CORP).VerifyURL(sig, TS, NONCE, echostr) == (0, b"5927350116212375201")


def test_official_rejects_our_reply_for_other_receive_id(official, crypto: WeComCrypto) -> None:
    reply = crypto.encrypt_reply("x", NONCE, TS)
    ret, _ = official(TOKEN, KEY, "wwother").DecryptMsg(reply, xml_fields(reply)["MsgSignature"], TS, NONCE)
    assert ret == -40005


def test_random_prefixes_differ_across_a_fork() -> None:
    import os

    from wechatbot.wecom.crypto import _random_prefix

    _random_prefix()  # the parent now holds unused random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, _random_prefix())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 16)
    assert len(child) == 16 and child != _random_prefix()
