"""Late bot answers through the callback's URL, against the fake WeCom API's real HTTP server."""
from __future__ import annotations

import pytest

from wechatbot.api.bot_push import post_to_url, shown_url
from wechatbot.api.hints import WeComAPIError, WeComNetworkError
from wechatbot.testing.fake_api import RESPONSE_CODE_INVALID, FakeWeComAPI
from wechatbot.wecom.bot_replies import markdown_body


@pytest.fixture
def fake():
    with FakeWeComAPI() as api:
        yield api


def test_a_response_url_takes_one_answer(fake, caplog):
    url = fake.add_response_url()
    assert post_to_url(url, markdown_body("**done**"))["errcode"] == 0
    code = url.rsplit("=", 1)[1]
    assert fake.responses == [(code, {"msgtype": "markdown", "markdown": {"content": "**done**"}})]
    with pytest.raises(WeComAPIError) as info:
        post_to_url(url, markdown_body("again"))
    assert info.value.errcode == RESPONSE_CODE_INVALID
    assert code not in str(info.value)  # the one-use code stays secret
    assert len(fake.responses) == 1


def test_a_response_url_expires(fake):
    url = fake.add_response_url(valid_for=-1)
    with pytest.raises(WeComAPIError):
        post_to_url(url, markdown_body("late"))


def test_the_response_url_checks_the_body(fake):
    with pytest.raises(WeComAPIError) as info:
        post_to_url(fake.add_response_url(), {"msgtype": "markdown", "markdown": {"content": "x" * 20481}})
    assert info.value.errcode == 45002
    with pytest.raises(WeComAPIError) as info:
        post_to_url(fake.add_response_url(), {"msgtype": "text", "text": {"content": "x"}})
    assert info.value.errcode == 40008
    card = {"msgtype": "template_card", "template_card": {"card_type": "text_notice", "card_action": {"type": 1}}}
    assert post_to_url(fake.add_response_url(), card)["errcode"] == 0


def test_a_group_robot_webhook_url(fake):
    url = fake.webhook_url("KEY-123")
    body = {"msgtype": "text", "text": {"content": "hi", "mentioned_list": ["zhangsan"]}}
    post_to_url(url, body)
    assert fake.wait_for_webhooks(1) == [("KEY-123", body)]
    with pytest.raises(WeComAPIError) as info:
        post_to_url(url.replace("KEY-123", "OTHER"), body)
    assert info.value.errcode == 93000 and "OTHER" not in str(info.value)


def test_unreachable_and_bad_urls():
    assert shown_url("https://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=SECRET") == \
        "https://qyapi.weixin.qq.com/cgi-bin/aibot/response"
    with pytest.raises(WeComNetworkError, match="not an http"):
        post_to_url("RESPONSEURL", {})
    with pytest.raises(WeComNetworkError) as info:
        post_to_url("http://127.0.0.1:9/cgi-bin/aibot/response?response_code=SECRET", {}, timeout=2)
    assert "SECRET" not in str(info.value)
