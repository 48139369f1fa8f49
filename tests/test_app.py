"""The callback endpoint over HTTP (Flask's test client), as WeCom uses it."""
from __future__ import annotations

import logging
import time

import pytest

from wechatbot import hookimpl
from wechatbot.wecom.crypto import signature
from wechatbot.wecom.replies import (
    Article,
    ButtonUpdateReply,
    ImageReply,
    NewsReply,
    TextReply,
    VideoReply,
    VoiceReply,
)
from wechatbot.testing.simulator import message_xml
from wechatbot.testing import app_sections, make_app, simulated_wecom


class Replies:
    """Answers text 'kind' with a reply of that kind."""

    @hookimpl
    def handle_message(self, message):
        return {
            "text": TextReply("文本 ]]> <b>&amp; 🎉"),
            "image": ImageReply("MEDIA_IMG"),
            "voice": VoiceReply("MEDIA_VOICE"),
            "video": VideoReply("MEDIA_VIDEO", "标题", "描述"),
            "news": NewsReply([Article("第一篇", "d1", "https://example.com/1", "https://example.com/1.png"), Article("second")]),
            "card": ButtonUpdateReply("已处理"),
            "plain": "plain str",
        }.get(message.content)

    @hookimpl
    def handle_event(self, event):
        return f"event {event.event} key={event.event_key}"


@pytest.fixture
def app():
    return make_app(plugins={"replies": Replies()})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sim(app):
    return simulated_wecom(app)


def test_url_verification_answers_the_decrypted_echostr(sim) -> None:
    assert sim.verify_url().isdigit()


def test_echostr_with_plus_turned_into_space_still_verifies(app, client) -> None:
    endpoint = app.extensions["wechatbot"].endpoints[""]
    for _ in range(20):  # find a ciphertext with a '+' in it
        echostr = endpoint.crypto.encrypt("1234567890")
        if "+" in echostr:
            break
    ts, nonce = str(int(time.time())), "n1"
    sig = signature(endpoint.config.token, ts, nonce, echostr)
    query = f"msg_signature={sig}&timestamp={ts}&nonce={nonce}&echostr={echostr}"  # '+' unencoded: read as space
    response = client.get("/callback?" + query)
    assert response.status_code == 200 and response.text == "1234567890"


@pytest.mark.parametrize("kind, fields", [
    ("text", {"MsgType": "text", "Content": "文本 ]]> <b>&amp; 🎉"}),
    ("plain", {"MsgType": "text", "Content": "plain str"}),
    ("image", {"MsgType": "image", "Image": {"MediaId": "MEDIA_IMG"}}),
    ("voice", {"MsgType": "voice", "Voice": {"MediaId": "MEDIA_VOICE"}}),
    ("video", {"MsgType": "video", "Video": {"MediaId": "MEDIA_VIDEO", "Title": "标题", "Description": "描述"}}),
])
def test_every_reply_type_decrypts_to_the_expected_xml(sim, kind, fields) -> None:
    received = sim.text(kind, from_user="zhangsan")
    assert received.raw["ToUserName"] == "zhangsan"
    assert received.raw["FromUserName"] == "ww_corp"
    assert int(received.raw["CreateTime"]) >= int(time.time()) - 5
    for key, value in fields.items():
        assert received.raw[key] == value


def test_news_and_card_update_replies(sim) -> None:
    news = sim.text("news").raw
    assert news["MsgType"] == "news" and news["ArticleCount"] == "2"
    first, second = news["Articles"]["item"]
    assert first == {"Title": "第一篇", "Description": "d1", "PicUrl": "https://example.com/1.png", "Url": "https://example.com/1"}
    assert second["Title"] == "second"
    card = sim.text("card").raw
    assert card["MsgType"] == "update_button" and card["Button"]["ReplaceName"] == "已处理"


def test_events_reach_handle_event(sim) -> None:
    assert sim.event("click", event_key="MENU_1").content == "event click key=MENU_1"
    assert sim.event("enter_agent").content == "event enter_agent key=None"


def test_wrong_signature_is_403_and_logged_without_secrets(app, client, caplog) -> None:
    endpoint = app.extensions["wechatbot"].endpoints[""]
    encrypted = endpoint.crypto.encrypt(message_xml("text", content="hi"))
    ts = str(int(time.time()))
    with caplog.at_level(logging.WARNING):
        response = client.post(f"/callback?msg_signature={'0' * 40}&timestamp={ts}&nonce=1",
                               data=f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    assert response.status_code == 403 and "Token" in response.text
    assert "Traceback" not in response.text
    logged = caplog.text
    assert "403" in logged and endpoint.config.token not in logged and endpoint.config.encoding_aes_key not in logged


@pytest.mark.parametrize("query, body, status", [
    ("", b"<xml/>", 400),
    ("msg_signature=x&timestamp=1", b"<xml/>", 400),
    ("msg_signature=x&timestamp={ts}&nonce=1", b"not xml at all", 400),
    ("msg_signature=x&timestamp={ts}&nonce=1", b'<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>', 400),
    ("msg_signature=x&timestamp={ts}&nonce=1", b"<xml><ToUserName>x</ToUserName></xml>", 400),
])
def test_malformed_requests_are_400(client, query, body, status) -> None:
    response = client.post("/callback?" + query.format(ts=int(time.time())), data=body)
    assert response.status_code == status
    assert "Traceback" not in response.text and response.text.strip()


def test_body_over_max_body_is_413() -> None:
    app = make_app(app_sections(wechatbot={"max_body": "2000", "store": "memory://"}), plugins={"replies": Replies()})
    response = app.test_client().post(f"/callback?msg_signature=x&timestamp={int(time.time())}&nonce=1", data=b"x" * 5000)
    assert response.status_code == 413
    assert simulated_wecom(app).text("plain").content == "plain str"  # still serving


def test_stale_timestamp_is_refused_unless_window_is_off() -> None:
    old = str(int(time.time()) - 600)
    app = make_app(plugins={"replies": Replies()})
    sim = simulated_wecom(app)
    assert sim.post_xml(message_xml("text", content="plain"), timestamp=old).status == 403
    app = make_app(app_sections(wechatbot={"replay_window": "0", "store": "memory://"}), plugins={"replies": Replies()})
    assert simulated_wecom(app).post_xml(message_xml("text", content="plain"), timestamp=old).content == "plain str"


def test_several_apps_in_one_host_each_with_its_keys_and_plugins() -> None:
    class Hr:
        @hookimpl
        def handle_message(self):
            return "hr here"

    hr = app_sections()["wecom"] | {"plugins": "hr"}
    sections = app_sections(**{"wecom:hr": hr})
    sections["wecom"]["plugins"] = "replies"
    app = make_app(sections, plugins={"replies": Replies(), "hr": Hr()})
    assert simulated_wecom(app).text("plain").content == "plain str"
    hr_sim = simulated_wecom(app, "hr")
    assert hr_sim.path == "/callback/hr" and hr_sim.text("plain").content == "hr here"
    hr_sim.path = "/callback"  # the hr app's keys do not open the default app's door
    assert hr_sim.text("plain").status == 403


def test_healthz(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.text == "ok\n"


def test_json_envelope_is_accepted(app, client) -> None:
    endpoint = app.extensions["wechatbot"].endpoints[""]
    encrypted = endpoint.crypto.encrypt(message_xml("text", content="plain"))
    ts, nonce = str(int(time.time())), "abc"
    sig = signature(endpoint.config.token, ts, nonce, encrypted)
    response = client.post(f"/callback?msg_signature={sig}&timestamp={ts}&nonce={nonce}",
                           json={"ToUserName": "ww", "AgentID": "1", "Encrypt": encrypted})
    assert response.status_code == 200
    answer = response.get_json()
    assert set(answer) == {"encrypt", "msgsignature", "timestamp", "nonce"} and answer["nonce"] == nonce
    endpoint.crypto.verify_signature(answer["msgsignature"], str(answer["timestamp"]), nonce, answer["encrypt"])
    assert "<Content><![CDATA[plain str]]></Content>" in endpoint.crypto.decrypt(answer["encrypt"])


@pytest.mark.parametrize("query", [
    "msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780",
    "nonce=1&nonce=2&timestamp=",
    "a&b=&=c&&timestamp=9",
    "nonce=a%2Bb+c&msg_signature=%7E",
    "",
])
def test_query_params_match_parse_qsl(query: str) -> None:
    from urllib.parse import parse_qsl

    from wechatbot.ext import query_params

    assert query_params(query) == dict(parse_qsl(query))
