"""The benchmark's floor (``benchmarks/floor_app.py``) does the whole path it stands for.

It is the yardstick the performance targets are measured against, so it must
not be cheaper than the path for skipping part of it: the reply must open as
WeCom opens it, a repeated MsgId must not be answered again, and a wrong
signature or receive id must be refused.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from wechatbot.testing import flask_transport
from wechatbot.testing.reference_crypto import ref_decrypt, ref_encrypt, ref_signature
from wechatbot.testing.simulator import SimulatedWeCom, message_xml
from wechatbot.wecom.crypto import generate_aes_key, generate_token

FLOOR = Path(__file__).resolve().parent.parent / "benchmarks" / "floor_app.py"
CORP_ID = "ww_floor_corp"


@pytest.fixture
def floor(tmp_path, monkeypatch):
    """``(app, token, key)``: the floor app loaded with fresh credentials and database."""
    token, key = generate_token(), generate_aes_key()
    monkeypatch.setenv("BENCH_TOKEN", token)
    monkeypatch.setenv("BENCH_ENCODING_AES_KEY", key)
    monkeypatch.setenv("BENCH_CORP_ID", CORP_ID)
    monkeypatch.setenv("BENCH_FLOOR_DB", str(tmp_path / "floor.db"))
    spec = importlib.util.spec_from_file_location("floor_app_under_test", FLOOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app, token, key


def test_the_echo_opens_as_wecom_opens_it_and_a_repeat_is_not_answered(floor):
    app, token, key = floor
    wecom = SimulatedWeCom(flask_transport(app), token, key, CORP_ID)
    path, body = wecom.signed_request(message_xml("text", to_user=CORP_ID, msg_id="4242", content="hello floor"))
    client = app.test_client()

    first = client.post(path, data=body)
    assert first.status_code == 200
    reply = first.get_data(as_text=True)
    encrypted = reply.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    timestamp = reply.split("<TimeStamp>")[1].split("</TimeStamp>")[0]
    nonce = reply.split("<Nonce><![CDATA[")[1].split("]]>")[0]
    assert reply.split("<MsgSignature><![CDATA[")[1].split("]]>")[0] == ref_signature(token, timestamp, nonce, encrypted)
    _, plain, receive_id = ref_decrypt(key, encrypted)
    assert receive_id == CORP_ID
    assert "<Content><![CDATA[hello floor]]></Content>" in plain
    assert "<ToUserName><![CDATA[zhangsan]]></ToUserName>" in plain

    again = client.post(path, data=body)
    assert again.status_code == 200 and again.get_data() == b""


def test_a_wrong_signature_or_receive_id_is_refused(floor):
    app, token, key = floor
    wecom = SimulatedWeCom(flask_transport(app), token, key, CORP_ID)
    path, body = wecom.signed_request(message_xml("text", to_user=CORP_ID, msg_id="1", content="x"))
    client = app.test_client()
    assert client.post(path.replace("msg_signature=", "msg_signature=0"), data=body).status_code == 403

    other = ref_encrypt(key, message_xml("text", msg_id="2", content="y"), "ww_someone_else")
    query = f"/callback?msg_signature={ref_signature(token, '1', 'n', other)}&timestamp=1&nonce=n"
    assert client.post(query, data=f"<xml><Encrypt><![CDATA[{other}]]></Encrypt></xml>").status_code == 403
