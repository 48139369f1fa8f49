"""Reply types: passive XML, message/send bodies, limits and text splitting."""

from __future__ import annotations

import json

import pytest
import xmltodict

from wechatbot.wecom.replies import (
    TEXT_PASSIVE_LIMIT,
    Article,
    ButtonUpdateReply,
    ImageReply,
    MarkdownReply,
    NewsReply,
    Reply,
    ReplyError,
    ReplyFormError,
    TemplateCardUpdateReply,
    TextReply,
    TooManyArticles,
    VideoReply,
    VoiceReply,
    as_reply,
    split_text,
)

HOSTILE = [
    "plain",
    "]]>",
    "a]]>b]]>]]>c",
    "]]]]><![CDATA[>",
    "<xml><MsgType>image</MsgType></xml>",
    "&amp; & &lt; <",
    "emoji 😀👍🏽👨‍👩‍👧 and 中文",
    "中" * 5000,
    "line1\nline2\n\ttabbed",
]


def parse(xml: str) -> dict:
    # Whitespace kept so that a test sees exactly what WeCom would.
    return xmltodict.parse(xml, strip_whitespace=False)["xml"]


def header(d: dict) -> tuple:
    return d["ToUserName"], d["FromUserName"], d["CreateTime"], d["MsgType"]


# --- passive XML --------------------------------------------------------------


def test_text_reply_xml():
    d = parse(TextReply("hello").to_xml("zhangsan", "ww_corp", 1700000000))
    assert header(d) == ("zhangsan", "ww_corp", "1700000000", "text")
    assert d["Content"] == "hello"


def test_create_time_is_a_bare_number_and_defaults_to_now(monkeypatch):
    xml = TextReply("x").to_xml("u", "c", 1700000000)
    assert "<CreateTime>1700000000</CreateTime>" in xml
    monkeypatch.setattr("time.time", lambda: 1234567890.9)
    assert parse(TextReply("x").to_xml("u", "c"))["CreateTime"] == "1234567890"


@pytest.mark.parametrize("content", HOSTILE)
def test_hostile_text_round_trips(content):
    d = parse(TextReply(content).to_xml("u", "c", 1))
    assert d["Content"] == content
    assert d["MsgType"] == "text"
    assert set(d) == {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content"}


@pytest.mark.parametrize("name", ["]]>", "<ToUserName>", "a&b", "😀"])
def test_hostile_user_names_round_trip(name):
    d = parse(TextReply("x").to_xml(name, name + "c", 1))
    assert (d["ToUserName"], d["FromUserName"]) == (name, name + "c")


def test_characters_xml_cannot_carry_are_dropped_not_fatal():
    d = parse(TextReply("a\x00b\x08c\x1fd\ud800e").to_xml("u", "c", 1))
    assert d["Content"] == "abcde"


def test_image_and_voice_reply_xml():
    d = parse(ImageReply("m_img").to_xml("u", "c", 1))
    assert d["MsgType"] == "image" and d["Image"] == {"MediaId": "m_img"}
    d = parse(VoiceReply("m_voice").to_xml("u", "c", 1))
    assert d["MsgType"] == "voice" and d["Voice"] == {"MediaId": "m_voice"}


def test_video_reply_xml():
    d = parse(VideoReply("m_vid", title="标题 ]]>", description="<desc>").to_xml("u", "c", 1))
    assert d["MsgType"] == "video"
    assert d["Video"] == {"MediaId": "m_vid", "Title": "标题 ]]>", "Description": "<desc>"}


def test_news_reply_xml():
    articles = [
        Article("first ]]>", "desc & more", "https://e.com/1?a=1&b=2", "https://e.com/1.png"),
        Article("second", url="https://e.com/2"),
    ]
    d = parse(NewsReply(articles).to_xml("u", "c", 1))
    assert d["MsgType"] == "news"
    assert d["ArticleCount"] == "2"
    items = d["Articles"]["item"]
    assert items[0] == {
        "Title": "first ]]>",
        "Description": "desc & more",
        "PicUrl": "https://e.com/1.png",
        "Url": "https://e.com/1?a=1&b=2",
    }
    assert items[1]["Title"] == "second" and items[1]["Url"] == "https://e.com/2"


def test_news_limits():
    NewsReply([Article(str(i)) for i in range(8)])
    with pytest.raises(TooManyArticles, match="at most 8.*got 9"):
        NewsReply([Article(str(i)) for i in range(9)])
    with pytest.raises(ValueError, match="at least one"):
        NewsReply([])
    with pytest.raises(TypeError, match="dict"):
        NewsReply([{"title": "x"}])
    assert issubclass(TooManyArticles, ValueError)


def test_button_update_reply_xml():
    d = parse(ButtonUpdateReply("已处理 ]]>").to_xml("u", "c", 1))
    assert d["MsgType"] == "update_button"
    assert d["Button"] == {"ReplaceName": "已处理 ]]>"}


def test_template_card_update_reply_xml_uses_the_documented_element_names():
    card = {
        "card_type": "button_interaction",
        "source": {"icon_url": "https://e.com/i.png", "desc": "来源", "desc_color": 2},
        "main_title": {"title": "标题", "desc": "副标题"},
        "horizontal_content_list": [
            {"keyname": "申请人", "value": "张三"},
            {"keyname": "成员", "value": "李四", "type": 3, "userid": "lisi"},
        ],
        "jump_list": [{"type": 2, "title": "小程序", "appid": "wx123", "pagepath": "pages/a"}],
        "button_selection": {
            "question_key": "q1",
            "option_list": [{"id": "o1", "text": "一"}, {"id": "o2", "text": "二"}],
            "selected_id": "o1",
            "disable": True,
        },
        "button_list": [{"text": "同意", "style": 1, "key": "yes"}, {"text": "驳回", "style": 2, "key": "no"}],
        "replace_text": "已处理",
    }
    d = parse(TemplateCardUpdateReply(card).to_xml("u", "c", 1))
    assert d["MsgType"] == "update_template_card"
    tc = d["TemplateCard"]
    assert tc["CardType"] == "button_interaction"
    assert tc["Source"] == {"IconUrl": "https://e.com/i.png", "Desc": "来源", "DescColor": "2"}
    assert tc["MainTitle"] == {"Title": "标题", "Desc": "副标题"}
    assert tc["HorizontalContentList"] == [
        {"KeyName": "申请人", "Value": "张三"},
        {"KeyName": "成员", "Value": "李四", "Type": "3", "UserId": "lisi"},
    ]
    assert tc["JumpList"] == {"Type": "2", "Title": "小程序", "AppId": "wx123", "PagePath": "pages/a"}
    assert tc["ButtonSelection"]["OptionList"] == [{"Id": "o1", "Text": "一"}, {"Id": "o2", "Text": "二"}]
    assert tc["ButtonSelection"]["Disable"] == "true"
    assert [b["Key"] for b in tc["ButtonList"]] == ["yes", "no"]
    assert tc["ReplaceText"] == "已处理"


def test_template_card_numbers_and_flags_are_bare_text_in_cdata():
    xml = TemplateCardUpdateReply({
        "card_type": "vote_interaction",
        "checkbox": {"question_key": "q", "mode": 1, "option_list": [{"id": "a", "text": "A", "is_checked": False}]},
    }).to_xml("u", "c", 1)
    assert "<Mode>1</Mode>" in xml and "<IsChecked>false</IsChecked>" in xml
    assert "<CheckBox>" in xml and "<QuestionKey><![CDATA[q]]></QuestionKey>" in xml


def test_template_card_update_needs_a_card_type():
    with pytest.raises(ValueError, match="card_type"):
        TemplateCardUpdateReply({"main_title": {"title": "x"}})


def test_markdown_has_no_passive_form():
    reply = MarkdownReply("**bold**")
    assert reply.fits_passive is False
    with pytest.raises(ReplyFormError, match="message/send"):
        reply.to_xml("u", "c", 1)


# --- fits_passive -------------------------------------------------------------


def test_text_fits_passive_counts_utf8_bytes():
    assert TextReply("a" * TEXT_PASSIVE_LIMIT).fits_passive
    assert not TextReply("a" * (TEXT_PASSIVE_LIMIT + 1)).fits_passive
    assert TextReply("中" * 682).fits_passive  # 2046 bytes
    assert not TextReply("中" * 683).fits_passive  # 2049 bytes, 683 characters
    assert TEXT_PASSIVE_LIMIT == 2048


def test_media_news_and_card_replies_fit_passive():
    for reply in (ImageReply("m"), VoiceReply("m"), VideoReply("m"), NewsReply([Article("t")]),
                  ButtonUpdateReply("x"), TemplateCardUpdateReply({"card_type": "text_notice"})):
        assert reply.fits_passive


# --- message/send bodies --------------------------------------------------------


def test_send_bodies_match_message_send():
    assert TextReply("hi").to_send_body() == {"msgtype": "text", "text": {"content": "hi"}}
    assert MarkdownReply("# t").to_send_body() == {"msgtype": "markdown", "markdown": {"content": "# t"}}
    assert ImageReply("m1").to_send_body() == {"msgtype": "image", "image": {"media_id": "m1"}}
    assert VoiceReply("m2").to_send_body() == {"msgtype": "voice", "voice": {"media_id": "m2"}}
    assert VideoReply("m3", "T", "D").to_send_body() == {
        "msgtype": "video", "video": {"media_id": "m3", "title": "T", "description": "D"}}
    assert VideoReply("m3").to_send_body() == {"msgtype": "video", "video": {"media_id": "m3"}}


def test_news_send_body_uses_picurl_and_optional_mini_program():
    body = NewsReply([
        Article("a", "d", "https://e.com", "https://e.com/p.png"),
        Article("b", appid="wx1", pagepath="pages/i"),
    ]).to_send_body()
    assert body == {"msgtype": "news", "news": {"articles": [
        {"title": "a", "description": "d", "url": "https://e.com", "picurl": "https://e.com/p.png"},
        {"title": "b", "description": "", "url": "", "picurl": "", "appid": "wx1", "pagepath": "pages/i"},
    ]}}
    json.dumps(body)


def test_send_body_is_a_fresh_dict_each_time():
    reply = TextReply("hi")
    body = reply.to_send_body()
    body.pop("msgtype")
    assert reply.to_send_body()["msgtype"] == "text"


def test_card_updates_go_through_update_template_card():
    button = ButtonUpdateReply("已处理")
    assert button.push_api == "message/update_template_card"
    with pytest.raises(ReplyFormError, match="update_template_card"):
        button.to_send_body()
    assert button.to_update_body("RC", 1000002, userids=["zhangsan"]) == {
        "agentid": 1000002, "response_code": "RC", "userids": ["zhangsan"],
        "button": {"replace_name": "已处理"}}
    card = {"card_type": "text_notice", "main_title": {"title": "done"}}
    assert TemplateCardUpdateReply(card).to_update_body("RC", 7, atall=True) == {
        "agentid": 7, "response_code": "RC", "atall": 1, "template_card": card}
    with pytest.raises(ValueError, match="userids"):
        button.to_update_body("RC", 1)


def test_other_replies_push_through_message_send():
    assert TextReply("x").push_api == "message/send"
    assert NewsReply([Article("t")]).push_api == "message/send"


# --- as_reply and ReplyError ----------------------------------------------------


def test_as_reply():
    assert as_reply(None) is None
    assert as_reply("") is None
    assert as_reply("hi") == TextReply("hi")
    image = ImageReply("m")
    assert as_reply(image) is image
    for bad, name in ((42, "int"), ({"content": "x"}, "dict"), (b"hi", "bytes"), (["x"], "list")):
        with pytest.raises(TypeError, match=name):
            as_reply(bad)


def test_reply_error_carries_the_friendly_text():
    try:
        raise ReplyError("订单号不存在")
    except ReplyError as exc:
        assert exc.text == "订单号不存在" and str(exc) == "订单号不存在"
        assert exc.reply == TextReply("订单号不存在")


def test_every_reply_is_a_reply():
    for reply in (TextReply("x"), MarkdownReply("x"), ImageReply("m"), VoiceReply("m"), VideoReply("m"),
                  NewsReply([Article("t")]), ButtonUpdateReply("x"),
                  TemplateCardUpdateReply({"card_type": "text_notice"})):
        assert isinstance(reply, Reply)
        assert reply.msg_type


# --- split_text -----------------------------------------------------------------


def byte_sizes(parts: list[str]) -> list[int]:
    return [len(p.encode("utf-8")) for p in parts]


@pytest.mark.parametrize(
    "text",
    [
        "a" * 5000,
        "中" * 5000,
        "😀" * 1500,
        "👨‍👩‍👧" * 400,
        ("第一行文字，包含中文和 emoji 😀。\n" * 300),
        "mixed a中😀" * 700,
        "short",
    ],
)
def test_split_text_parts_fit_and_reassemble(text):
    parts = split_text(text)
    assert "".join(parts) == text
    assert all(0 < size <= TEXT_PASSIVE_LIMIT for size in byte_sizes(parts))
    total = len(text.encode("utf-8"))
    assert len(parts) >= -(-total // TEXT_PASSIVE_LIMIT)


def test_split_text_never_cuts_a_character():
    # 2047 ASCII bytes then a 4-byte emoji: the emoji must move to part two whole.
    text = "a" * 2047 + "😀" + "b"
    parts = split_text(text)
    assert parts == ["a" * 2047, "😀b"]


def test_split_text_prefers_line_breaks():
    lines = [f"line {i:03d} " + "x" * 40 for i in range(100)]
    text = "\n".join(lines)
    parts = split_text(text, 500)
    assert "".join(parts) == text
    for part in parts[:-1]:
        assert part.endswith("\n")
    assert all(size <= 500 for size in byte_sizes(parts))


def test_split_text_falls_back_to_spaces_and_cjk_punctuation():
    words = "word " * 300
    assert all(p.endswith(" ") for p in split_text(words, 100)[:-1])
    sentences = "这是一个句子。" * 300
    parts = split_text(sentences, 100)
    assert "".join(parts) == sentences
    assert all(p.endswith("。") for p in parts[:-1])


def test_split_text_ignores_a_line_break_that_would_leave_a_tiny_part():
    text = "ab\n" + "c" * 300
    parts = split_text(text, 100)
    assert len(parts[0].encode()) == 100
    assert "".join(parts) == text


def test_split_text_edge_cases():
    assert split_text("") == []
    assert split_text("x" * TEXT_PASSIVE_LIMIT) == ["x" * TEXT_PASSIVE_LIMIT]
    assert split_text("abcdef", 4) == ["abcd", "ef"]
    with pytest.raises(ValueError):
        split_text("abc", 3)


def test_split_parts_each_fit_a_text_reply():
    parts = split_text("中文😀" * 2000)
    assert all(TextReply(p).fits_passive for p in parts)
