"""The AI bot's and the group robot's replies: their wire form and WeCom's limits."""
from __future__ import annotations

import base64
import hashlib

import pytest
import xmltodict

from wechatbot import GroupTextReply, StreamReply, StreamWithTemplateCardReply, TemplateCardReply, TemplateCardUpdateReply
from wechatbot.wecom.bot_replies import (
    STREAM_CONTENT_LIMIT,
    BotReplyError,
    StreamImage,
    check_template_card,
    cut_utf8,
    group_markdown_xml,
    markdown_body,
)
from wechatbot.wecom.replies import ReplyFormError, as_reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
BUTTONS = {
    "card_type": "button_interaction", "task_id": "TASK1", "main_title": {"title": "审批"},
    "button_list": [{"text": "同意", "key": "yes"}, {"text": "拒绝", "key": "no"}],
}


@pytest.mark.parametrize("text", ["a" * 30000, "中" * 8000, "🎉" * 6000, "a" + "中" * 7000, "ab" + "🎉" * 6000])
def test_cut_utf8_never_splits_a_character(text):
    head, rest = cut_utf8(text, STREAM_CONTENT_LIMIT)
    assert head + rest == text
    assert len(head.encode()) <= STREAM_CONTENT_LIMIT
    assert len(head.encode()) > STREAM_CONTENT_LIMIT - 4  # as full as characters allow
    assert cut_utf8("short", 10) == ("short", "")


def test_stream_reply_json():
    reply = StreamReply("<think>hm</think>答案", finish=False, stream_id="S1", feedback_id="FB")
    assert reply.to_json() == {"msgtype": "stream", "stream": {
        "id": "S1", "finish": False, "content": "<think>hm</think>答案", "feedback": {"id": "FB"}}}
    done = StreamReply("x", stream_id="S1", images=[StreamImage(PNG)]).to_json()["stream"]
    assert done["finish"] is True
    assert done["msg_item"] == [{"msgtype": "image", "image": {
        "base64": base64.b64encode(PNG).decode(), "md5": hashlib.md5(PNG).hexdigest()}}]


def test_stream_reply_limits():
    with pytest.raises(BotReplyError, match="20480"):
        StreamReply("中" * 6827, stream_id="S").to_json()  # 20481 bytes
    StreamReply("中" * 6826, stream_id="S").to_json()
    with pytest.raises(BotReplyError, match="finishes"):
        StreamReply("x", finish=False, stream_id="S", images=[StreamImage(PNG)]).to_json()
    with pytest.raises(BotReplyError, match="at most 10"):
        StreamReply("x", stream_id="S", images=[StreamImage(PNG)] * 11).to_json()
    with pytest.raises(BotReplyError, match="256"):
        StreamReply("x", stream_id="S", feedback_id="f" * 257).to_json()
    with pytest.raises(BotReplyError, match="stream id"):
        StreamReply("x").to_json()
    with pytest.raises(BotReplyError, match="JPG or PNG"):
        StreamImage(b"GIF89a....")


def test_stream_reply_is_not_an_app_reply():
    reply = StreamReply("x", stream_id="S")
    assert not reply.fits_passive
    with pytest.raises(ReplyFormError):
        reply.to_xml("u", "c")
    with pytest.raises(ReplyFormError):
        reply.to_send_body()
    assert as_reply(reply) is reply


def test_template_card_reply():
    reply = TemplateCardReply(BUTTONS)
    assert reply.to_json() == {"msgtype": "template_card", "template_card": BUTTONS}
    assert reply.to_send_body() == reply.to_json()  # message/send takes the same card
    combined = StreamWithTemplateCardReply("看这里", BUTTONS, stream_id="S").to_json()
    assert combined["msgtype"] == "stream_with_template_card"
    assert combined["stream"] == {"id": "S", "finish": True, "content": "看这里"}
    assert combined["template_card"] == BUTTONS


@pytest.mark.parametrize("card, problem", [
    ({"card_type": "poster"}, "card_type"),
    ({"card_type": "text_notice"}, "card_action"),
    ({"card_type": "news_notice", "card_action": {"type": 1}}, "card_image"),
    ({"card_type": "button_interaction", "button_list": []}, "task_id"),
    ({**BUTTONS, "button_list": [{"text": str(i), "key": str(i)} for i in range(7)]}, "button_list"),
    ({"card_type": "vote_interaction", "task_id": "T",
      "checkbox": {"question_key": "q", "option_list": [{"id": str(i), "text": "x"} for i in range(21)]}}, "20 options"),
    ({"card_type": "multiple_interaction", "task_id": "T",
      "select_list": [{"question_key": "q", "option_list": []}] * 4}, "select_list"),
    ({**BUTTONS, "task_id": "t" * 1025}, "task_id"),
    ("not a card", "dict"),
])
def test_template_card_limits(card, problem):
    with pytest.raises(BotReplyError, match=problem):
        check_template_card(card)


def test_update_template_card_for_the_aibot():
    reply = TemplateCardUpdateReply({"card_type": "button_interaction", "main_title": {"title": "已处理"}},
                                    userids=["zhangsan"])
    assert reply.to_aibot_json("TASK1") == {
        "response_type": "update_template_card", "userids": ["zhangsan"],
        "template_card": {"card_type": "button_interaction", "main_title": {"title": "已处理"}, "task_id": "TASK1"}}
    with pytest.raises(ValueError, match="task_id"):
        TemplateCardUpdateReply({**BUTTONS, "task_id": "OTHER"}).to_aibot_json("TASK1")
    assert "userids" not in TemplateCardUpdateReply(BUTTONS).to_aibot_json("TASK1")


def test_response_url_markdown():
    assert markdown_body("# hi") == {"msgtype": "markdown", "markdown": {"content": "# hi"}}
    with pytest.raises(BotReplyError, match="20480"):
        markdown_body("x" * 20481)


def test_group_text_reply_with_mentions():
    reply = GroupTextReply("请处理 ]]> 这个", mentioned_list=["zhangsan", "@all"], mentioned_mobile_list=["13800000000"])
    doc = xmltodict.parse(reply.to_group_xml())["xml"]
    assert doc["MsgType"] == "text"
    assert doc["Text"]["Content"] == "请处理 ]]> 这个"
    assert doc["Text"]["MentionedList"]["Item"] == ["zhangsan", "@all"]
    assert doc["Text"]["MentionedMobileList"]["Item"] == "13800000000"
    assert reply.to_webhook_body() == {"msgtype": "text", "text": {
        "content": "请处理 ]]> 这个", "mentioned_list": ["zhangsan", "@all"], "mentioned_mobile_list": ["13800000000"]}}
    visible = xmltodict.parse(GroupTextReply("x", visible_to_user=["a", "b"]).to_group_xml())["xml"]
    assert visible["VisibleToUser"] == "a|b"
    with pytest.raises(BotReplyError, match="2048"):
        GroupTextReply("字" * 683)
    with pytest.raises(BotReplyError, match="content"):
        GroupTextReply("")


def test_group_markdown():
    doc = xmltodict.parse(group_markdown_xml("**粗体**"))["xml"]
    assert doc == {"MsgType": "markdown", "Markdown": {"Content": "**粗体**"}}
    with pytest.raises(BotReplyError, match="4096"):
        group_markdown_xml("x" * 4097)


def test_an_iterator_reply_is_chunked_and_joins_for_apps():
    from wechatbot.wecom.replies import ChunkedReply, TextReply

    def answer():
        yield "你好，"
        yield None
        yield "world"

    reply = as_reply(answer())
    assert isinstance(reply, ChunkedReply) and not reply.fits_passive
    assert reply.joined() == TextReply("你好，world")
    assert as_reply(iter([])).joined() is None
    with pytest.raises(ReplyFormError, match="join"):
        as_reply(iter(["x"])).to_xml("u", "c")
    with pytest.raises(TypeError, match="str chunks"):
        as_reply(iter([b"bytes"])).text()
    with pytest.raises(TypeError, match="list"):
        as_reply(["a list is not an iterator"])


def test_an_async_iterator_reply():
    async def answer():
        for word in ("a", "b", "c"):
            yield word

    assert as_reply(answer()).text() == "abc"
