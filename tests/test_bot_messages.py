"""AI bot JSON, group robot XML and suite callbacks → typed messages.

The documents are the examples on the official pages (D:100719 messages,
D:101027 events, D:99399 group robot, D:90628 suite callbacks), and shapes
other implementations' parsers read (field names only).
"""
from __future__ import annotations

import json

import pytest

from wechatbot.wecom.aibot import (
    AibotCallback,
    AibotEvent,
    AibotFileMessage,
    AibotImageMessage,
    AibotMessage,
    AibotMixedMessage,
    AibotTemplateCardEvent,
    AibotTextMessage,
    AibotVideoMessage,
    AibotVoiceMessage,
    EnterChatEvent,
    FeedbackEvent,
    StreamRefresh,
    message_from_json,
    parse_aibot,
    split_mention,
)
from wechatbot.wecom.callbacks import SuiteEvent, UnknownCallback, acknowledgement, parse_app_callback
from wechatbot.wecom.group_robot import (
    AddToChatEvent,
    AttachmentEvent,
    DeleteFromChatEvent,
    GroupEnterChatEvent,
    GroupImageMessage,
    GroupMixedMessage,
    GroupRobotCallback,
    GroupRobotMessage,
    GroupTextMessage,
    parse_group_robot,
)
from wechatbot.wecom.messages import Event, ImageMessage, MessageParseError, TemplateCardEvent, TextMessage

# D:100719, the text example (a group message quoting a text).
AIBOT_TEXT = r"""{
    "msgid": "CAIQ16HMjQYY\/NGagIOAgAMgq4KM0AI=",
    "aibotid": "AIBOTID",
    "chatid": "CHATID",
    "chattype": "group",
    "from": {"userid": "USERID"},
    "response_url": "RESPONSEURL",
    "msgtype": "text",
    "text": {"content": "@RobotA hello robot"},
    "quote": {"msgtype": "text", "text": {"content": "这是今日的测试情况"}}
}"""


def common(**fields):
    doc = {
        "msgid": "CAIQ16HMjQYY/NGagIOAgAMgq4KM0AI=", "aibotid": "AIBOTID", "chattype": "single",
        "from": {"userid": "USERID"}, "response_url": "RESPONSEURL",
    }
    doc.update(fields)
    return doc


def test_aibot_text_from_the_official_page():
    m = parse_aibot(AIBOT_TEXT)
    assert type(m) is AibotTextMessage and isinstance(m, TextMessage) and isinstance(m, AibotCallback)
    assert (m.msg_id, m.from_user, m.aibot_id, m.chat_id, m.chat_type) == (
        "CAIQ16HMjQYY/NGagIOAgAMgq4KM0AI=", "USERID", "AIBOTID", "CHATID", "group")
    assert m.response_url == "RESPONSEURL"
    assert (m.type, m.is_event, m.is_group) == ("text", False, True)
    assert m.content == "hello robot" and m.mention == "RobotA"
    assert m.raw_content == "@RobotA hello robot"
    assert (m.quote.type, m.quote.content) == ("text", "这是今日的测试情况")
    assert m.raw == json.loads(AIBOT_TEXT)


def test_single_chat_text_keeps_a_leading_at_sign():
    m = message_from_json(common(msgtype="text", text={"content": "@zhangsan is out today"}))
    assert m.content == "@zhangsan is out today" and m.mention is None and m.quote is None and not m.is_group


def test_aibot_media_messages():
    image = message_from_json(common(msgtype="image", image={"url": "https://example.com/img"}))
    assert type(image) is AibotImageMessage and isinstance(image, ImageMessage)
    assert image.url == image.pic_url == "https://example.com/img"
    voice = message_from_json(common(msgtype="voice", voice={"content": "这是语音转成的文本"}))
    assert type(voice) is AibotVoiceMessage and voice.content == "这是语音转成的文本"
    file = message_from_json(common(msgtype="file", file={"url": "https://example.com/f"}))
    assert type(file) is AibotFileMessage and file.url == "https://example.com/f"
    video = message_from_json(common(msgtype="video", video={"url": "https://example.com/v"}))
    assert type(video) is AibotVideoMessage and video.url == "https://example.com/v"


def test_aibot_mixed_message():
    m = message_from_json(common(chattype="group", chatid="CHATID", msgtype="mixed", mixed={"msg_item": [
        {"msgtype": "text", "text": {"content": "@RobotA 看看这张图"}},
        {"msgtype": "image", "image": {"url": "https://example.com/1"}},
        {"msgtype": "text", "text": {"content": "是什么"}},
    ]}))
    assert type(m) is AibotMixedMessage and m.type == "mixed"
    assert [i.type for i in m.items] == ["text", "image", "text"]
    assert m.content == "看看这张图\n是什么" and m.mention == "RobotA"
    assert m.image_urls == ["https://example.com/1"]


def test_stream_refresh_poll():
    m = message_from_json(common(msgtype="stream", stream={"id": "STREAMID"}))
    assert type(m) is StreamRefresh and m.stream_id == "STREAMID" and m.is_stream_refresh
    assert not message_from_json(common(msgtype="text", text={"content": "x"})).is_stream_refresh


def test_aibot_events_from_the_official_page():
    enter = message_from_json({
        "msgid": "CAIQ16HMjQYY/NGagIOAgAMgq4KM0AI=", "create_time": 1700000000, "aibotid": "AIBOTID",
        "from": {"corpid": "wpxxxx", "userid": "USERID"}, "chattype": "single", "msgtype": "event",
        "event": {"eventtype": "enter_chat"},
    })
    assert type(enter) is EnterChatEvent and isinstance(enter, Event) and enter.is_event
    assert (enter.event, enter.from_user, enter.from_corp_id, enter.create_time) == (
        "enter_chat", "USERID", "wpxxxx", 1700000000)
    assert enter.accepts_passive_reply

    card = message_from_json(common(msgtype="event", response_url="RESPONSEURL", event={
        "eventtype": "template_card_event",
        "template_card_event": {
            "card_type": "vote_interaction", "event_key": "button_replace_text", "task_id": "TASKID",
            "selected_items": {"selected_item": [
                {"question_key": "button_selection_key1", "option_ids": {"option_id": ["one", "two"]}},
            ]},
        },
    }))
    assert type(card) is AibotTemplateCardEvent and isinstance(card, TemplateCardEvent)
    assert (card.event, card.card_type, card.event_key, card.task_id) == (
        "template_card_event", "vote_interaction", "button_replace_text", "TASKID")
    assert card.selected_items[0].question_key == "button_selection_key1"
    assert card.selected_items[0].option_ids == ["one", "two"]

    feedback = message_from_json(common(msgtype="event", event={
        "eventtype": "feedback_event",
        "feedback_event": {"id": "FEEDBACKID", "type": 2, "content": "答非所问", "inaccurate_reason_list": [2, 4]},
    }))
    assert type(feedback) is FeedbackEvent
    assert (feedback.feedback_id, feedback.feedback_type, feedback.content, feedback.reasons) == (
        "FEEDBACKID", 2, "答非所问", [2, 4])
    assert not feedback.accepts_passive_reply


def test_unknown_aibot_types_keep_everything():
    m = message_from_json(common(msgtype="hologram", hologram={"x": 1}))
    assert type(m) is AibotMessage and m.type == "hologram" and m.raw["hologram"] == {"x": 1}
    e = message_from_json(common(msgtype="event", event={"eventtype": "future_event", "future_event": {"k": "v"}}))
    assert type(e) is AibotEvent and e.event == "future_event" and e.detail == {"k": "v"}


def test_aibot_parse_errors():
    with pytest.raises(MessageParseError, match="JSON"):
        parse_aibot("{not json")
    with pytest.raises(MessageParseError, match="object"):
        parse_aibot("[1, 2]")


def test_split_mention():
    assert split_mention("@RobotA\u2005你好") == ("RobotA", "你好")
    assert split_mention("  @RobotA   hi there") == ("RobotA", "hi there")
    assert split_mention("hello @RobotA") == (None, "hello @RobotA")
    assert split_mention("@RobotA") == (None, "@RobotA")  # nothing after it: keep the text


# D:99399's text example.
GROUP_TEXT = """<xml>
    <WebhookUrl> <![CDATA[https://qyapi.weixin.qq.com/xxxxxxx]]></WebhookUrl>
    <ChatId><![CDATA[wrkSFfCgAALFgnrSsWU38puiv4yvExuw]]></ChatId>
    <GetChatInfoUrl><![CDATA[https://qyapi.weixin.qq.com/cgi-bin/webhook/get_chat_info?code=m49c5aRCdEP8_QQdZmTNR52yJ5TLGcIMzaLJk3x5KqY]]></GetChatInfoUrl>
    <From>
        <UserId>zhangsan</UserId>
        <Name><![CDATA[张三]]></Name>
        <Alias><![CDATA[xxx]]></Alias>
    </From>
    <MsgType>text</MsgType>
    <Text>
        <Content><![CDATA[@RobotA hello robot]]></Content>
    </Text>
    <MsgId>xxx</MsgId>
</xml>"""


def group_doc(body: str, chat_type: str = "group") -> str:
    return (
        "<xml><WebhookUrl><![CDATA[https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY]]></WebhookUrl>"
        "<ChatId><![CDATA[wrkSFfCg]]></ChatId>"
        f"<ChatType>{chat_type}</ChatType>"
        "<From><UserId>zhangsan</UserId><Name><![CDATA[张三]]></Name><Alias><![CDATA[san]]></Alias></From>"
        f"{body}<MsgId>CAIQ123</MsgId></xml>"
    )


def test_group_text_from_the_official_page():
    m = parse_group_robot(GROUP_TEXT)
    assert type(m) is GroupTextMessage and isinstance(m, TextMessage) and isinstance(m, GroupRobotCallback)
    assert (m.from_user, m.from_name, m.from_alias) == ("zhangsan", "张三", "xxx")
    assert m.chat_id == "wrkSFfCgAALFgnrSsWU38puiv4yvExuw"
    # The page writes a space before the CDATA section: kept as sent.
    assert m.webhook_url.strip() == "https://qyapi.weixin.qq.com/xxxxxxx"
    assert m.get_chat_info_url.startswith("https://qyapi.weixin.qq.com/cgi-bin/webhook/get_chat_info?code=")
    assert (m.msg_id, m.type, m.is_event) == ("xxx", "text", False)
    assert (m.content, m.mention, m.raw_content) == ("hello robot", "RobotA", "@RobotA hello robot")


def test_group_image_mixed_and_events():
    image = parse_group_robot(group_doc("<MsgType>image</MsgType><Image><ImageUrl><![CDATA[https://x/1]]></ImageUrl></Image>", "single"))
    assert type(image) is GroupImageMessage and image.url == image.pic_url == "https://x/1" and image.chat_type == "single"

    mixed = parse_group_robot(group_doc(
        "<MsgType>mixed</MsgType><MixedMessage>"
        "<MsgItem><MsgType>text</MsgType><Text><Content><![CDATA[@RobotA 这是什么]]></Content></Text></MsgItem>"
        "<MsgItem><MsgType>image</MsgType><Image><ImageUrl><![CDATA[https://x/2]]></ImageUrl></Image></MsgItem>"
        "</MixedMessage>"))
    assert type(mixed) is GroupMixedMessage and mixed.content == "这是什么" and mixed.mention == "RobotA"
    assert [(i.type, i.url) for i in mixed.items] == [("text", ""), ("image", "https://x/2")]

    for name, cls in (("add_to_chat", AddToChatEvent), ("delete_from_chat", DeleteFromChatEvent),
                      ("enter_chat", GroupEnterChatEvent)):
        e = parse_group_robot(group_doc(f"<MsgType>event</MsgType><Event><EventType>{name}</EventType></Event>"))
        assert type(e) is cls and e.event == name and e.is_event and e.from_user == "zhangsan"


def test_group_attachment_click():
    m = parse_group_robot(group_doc(
        "<MsgType>attachment</MsgType><Attachment><CallbackId><![CDATA[vote_1]]></CallbackId>"
        "<Actions><Name><![CDATA[yes]]></Name><Value><![CDATA[agree]]></Value><Type>button</Type></Actions>"
        "</Attachment>"))
    assert type(m) is AttachmentEvent and m.is_event
    assert m.callback_id == "vote_1" and [(a.name, a.value, a.type) for a in m.actions] == [("yes", "agree", "button")]
    assert m.event_key == "agree"


def test_group_unknown_type_keeps_everything():
    m = parse_group_robot(group_doc("<MsgType>command</MsgType><Command>x</Command>"))
    assert type(m) is GroupRobotMessage and m.type == "command" and m.raw["Command"] == "x"


# D:90628's examples, spaces before CDATA as the page writes them.
SUITE_TICKET = """<xml>
<SuiteId><![CDATA[ww4asffe99e54c0fxxxx]]></SuiteId>
<InfoType> <![CDATA[suite_ticket]]></InfoType>
<TimeStamp>1403610513</TimeStamp>
<SuiteTicket><![CDATA[asdfasfdasdfasdf]]></SuiteTicket>
</xml>"""
CANCEL_AUTH = """<xml>
<SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>
<InfoType><![CDATA[cancel_auth]]></InfoType>
<TimeStamp>1403610513</TimeStamp>
<AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId>
</xml>"""


def test_suite_callbacks_become_events_answered_success():
    ticket = parse_app_callback(SUITE_TICKET)
    assert type(ticket) is SuiteEvent and ticket.is_event
    assert (ticket.event, ticket.suite_id, ticket.suite_ticket, ticket.create_time) == (
        "suite_ticket", "ww4asffe99e54c0fxxxx", "asdfasfdasdfasdf", 1403610513)
    assert acknowledgement(ticket) == "success"
    cancel = parse_app_callback(CANCEL_AUTH)
    assert (cancel.event, cancel.auth_corp_id) == ("cancel_auth", "wxf8b4f85f3a794e77")


def test_unreadable_plaintext_is_an_unknown_callback_answered_empty():
    m = parse_app_callback("<xml><Nothing>here</Nothing></xml>")
    assert type(m) is UnknownCallback and m.is_event and "MsgType" in m.problem
    assert acknowledgement(m) == ""
    assert type(parse_app_callback("not xml at all")) is UnknownCallback
    text = parse_app_callback("<xml><MsgType>text</MsgType><Content>hi</Content></xml>")
    assert type(text) is TextMessage and acknowledgement(text) == ""


# Minimal documents as another implementation's test suite sends them (fields only).
@pytest.mark.parametrize("doc, cls, fields", [
    ({"msgtype": "event", "event": {"eventtype": "enter_chat"}}, EnterChatEvent, {"event": "enter_chat", "from_user": ""}),
    ({"msgtype": "text", "from": {"userid": "chenkang2"}, "text": {"content": "测试HTTP回调"}}, AibotTextMessage,
     {"content": "测试HTTP回调", "from_user": "chenkang2", "msg_id": None, "response_url": ""}),
    ({"msgtype": "stream", "stream": {"id": "stream-1"}}, StreamRefresh, {"stream_id": "stream-1"}),
    ({"msgid": "card-event-1", "msgtype": "event", "aibotid": "bot-1", "from": {"userid": "employee-1"},
      "chatid": "group-1", "chattype": "group", "response_url": "https://qyapi.weixin.qq.com/card-event-response",
      "event": {"eventtype": "template_card_event", "template_card_event": {
          "card_type": "vote_interaction", "event_key": "submit_vote", "task_id": "task-1",
          "selected_items": {"selected_item": [{"question_key": "risk_level", "option_ids": {"option_id": ["medium", "high"]}}]}}}},
     AibotTemplateCardEvent, {"task_id": "task-1", "event_key": "submit_vote", "chat_id": "group-1", "msg_id": "card-event-1",
                              "response_url": "https://qyapi.weixin.qq.com/card-event-response"}),
])
def test_minimal_documents_from_other_implementations(doc, cls, fields):
    m = message_from_json(doc)
    assert type(m) is cls
    for name, value in fields.items():
        assert getattr(m, name) == value, name
