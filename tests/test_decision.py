"""How a reply leaves, decided without a server: passive, pushed now, pushed later, or nothing."""
from __future__ import annotations

import pytest

from wechatbot.channels import AppChannel, channel_for
from wechatbot.config import ConfigError, EndpointConfig
from wechatbot.decision import Route, decide
from wechatbot.testing.simulator import event_xml, message_xml
from wechatbot.wecom.replies import MarkdownReply, TextReply

CHANNEL = AppChannel(EndpointConfig(name="", corp_id="ww", token="t", encoding_aes_key="k" * 43))
TEXT = CHANNEL.parse(message_xml("text", content="hi"))


def test_a_short_text_in_time_goes_passive() -> None:
    assert decide(TextReply("hello"), TEXT, CHANNEL, time_left=1.0) is Route.PASSIVE


def test_no_reply_is_an_empty_answer() -> None:
    assert decide(None, TEXT, CHANNEL, time_left=1.0) is Route.EMPTY


@pytest.mark.parametrize("reply", [TextReply("长" * 683), MarkdownReply("**x**")])
def test_what_a_passive_answer_cannot_carry_is_pushed_now(reply) -> None:
    assert decide(reply, TEXT, CHANNEL, time_left=1.0) is Route.PUSH_NOW


def test_an_event_without_passive_replies_has_its_reply_pushed() -> None:
    photo = CHANNEL.parse(event_xml("pic_sysphoto"))
    click = CHANNEL.parse(event_xml("click", event_key="K"))
    assert decide(TextReply("x"), photo, CHANNEL, time_left=1.0) is Route.PUSH_NOW
    assert decide(TextReply("x"), click, CHANNEL, time_left=1.0) is Route.PASSIVE


def test_a_reply_after_the_deadline_is_pushed_now() -> None:
    assert decide(TextReply("hello"), TEXT, CHANNEL, time_left=0.0) is Route.PUSH_NOW
    assert decide(TextReply("hello"), TEXT, CHANNEL, time_left=-0.5) is Route.PUSH_NOW


def test_plugins_still_working_push_later() -> None:
    assert decide(None, TEXT, CHANNEL, time_left=0.0, finished=False) is Route.PUSH_LATER


def test_the_app_channel_renders_the_passive_xml_and_reads_back_what_it_dumps() -> None:
    xml = CHANNEL.render_passive(TextReply("hello"), TEXT, now=1700000000)
    assert "<ToUserName><![CDATA[zhangsan]]></ToUserName>" in xml and "<CreateTime>1700000000</CreateTime>" in xml
    again = CHANNEL.parse(CHANNEL.dump(TEXT))
    assert (again.content, again.msg_id, again.from_user) == (TEXT.content, TEXT.msg_id, TEXT.from_user)


def test_an_unknown_endpoint_type_is_a_config_error_naming_the_key() -> None:
    config = EndpointConfig(name="x", corp_id="ww", token="t", encoding_aes_key="k" * 43, type="fax")
    with pytest.raises(ConfigError, match=r"\[wecom:x\] type = 'fax'"):
        channel_for(config)
