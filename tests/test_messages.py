"""Decrypted WeCom XML → typed messages and events."""

from __future__ import annotations

import random

import pytest

from wechatbot.wecom import messages
from wechatbot.wecom.messages import (
    parse_xml,
    BatchJobResultEvent,
    ChangeContactEvent,
    ClickEvent,
    EnterAgentEvent,
    Event,
    FileMessage,
    ImageMessage,
    LinkMessage,
    LocationEvent,
    LocationMessage,
    LocationSelectEvent,
    MediaMessage,
    Message,
    MessageParseError,
    OpenApprovalChangeEvent,
    PicPhotoOrAlbumEvent,
    PicSysPhotoEvent,
    PicWeixinEvent,
    ScanCodePushEvent,
    ScanCodeWaitMsgEvent,
    SelectedItem,
    SubscribeEvent,
    TaskCardClickEvent,
    TemplateCardEvent,
    TemplateCardMenuEvent,
    TextMessage,
    UnsubscribeEvent,
    VideoMessage,
    ViewEvent,
    ViewMiniprogramEvent,
    VoiceMessage,
    message_from_dict,
    parse_message,
)
from wechatbot.testing.simulator import event_xml, message_xml

HEAD = """<xml>
<ToUserName><![CDATA[ww_corp]]></ToUserName>
<FromUserName><![CDATA[zhangsan]]></FromUserName>
<CreateTime>1348831860</CreateTime>
"""


def msg(body: str, msg_id: str = "1234567890123456789", agent: str = "1000002") -> str:
    return f"{HEAD}{body}\n<MsgId>{msg_id}</MsgId>\n<AgentID>{agent}</AgentID>\n</xml>"


def event(name: str, body: str = "", agent: str | None = "1000002") -> str:
    agent_xml = f"<AgentID>{agent}</AgentID>\n" if agent is not None else ""
    return (
        f"{HEAD}<MsgType><![CDATA[event]]></MsgType>\n"
        f"<Event><![CDATA[{name}]]></Event>\n{body}\n{agent_xml}</xml>"
    )


# --- messages ---------------------------------------------------------------


def test_text_message_fields():
    m = parse_message(msg("<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[你好 world]]></Content>"))
    assert type(m) is TextMessage
    assert m.content == "你好 world"
    assert (m.type, m.to_user, m.from_user) == ("text", "ww_corp", "zhangsan")
    assert m.create_time == 1348831860
    assert m.msg_id == "1234567890123456789"
    assert m.agent_id == "1000002"
    assert m.is_event is False


def test_text_content_keeps_surrounding_whitespace_and_markup():
    content = "  indented\n<b>&amp; ]]&gt;\n"
    xml = msg(f"<MsgType>text</MsgType>\n<Content><![CDATA[{content}]]></Content>")
    assert parse_message(xml).content == content


def test_image_message_fields():
    m = parse_message(msg(
        "<MsgType><![CDATA[image]]></MsgType>\n"
        "<PicUrl><![CDATA[https://wework.qpic.cn/x.jpg]]></PicUrl>\n"
        "<MediaId><![CDATA[media_img]]></MediaId>"
    ))
    assert type(m) is ImageMessage
    assert (m.pic_url, m.media_id) == ("https://wework.qpic.cn/x.jpg", "media_img")


def test_voice_message_fields():
    m = parse_message(msg(
        "<MsgType><![CDATA[voice]]></MsgType>\n"
        "<MediaId><![CDATA[media_voice]]></MediaId>\n<Format><![CDATA[amr]]></Format>"
    ))
    assert type(m) is VoiceMessage
    assert (m.media_id, m.format) == ("media_voice", "amr")


def test_video_message_fields():
    m = parse_message(msg(
        "<MsgType><![CDATA[video]]></MsgType>\n"
        "<MediaId><![CDATA[media_video]]></MediaId>\n<ThumbMediaId><![CDATA[thumb]]></ThumbMediaId>"
    ))
    assert type(m) is VideoMessage
    assert (m.media_id, m.thumb_media_id) == ("media_video", "thumb")


def test_file_message_keeps_media_id_and_unknown_fields():
    m = parse_message(msg(
        "<MsgType><![CDATA[file]]></MsgType>\n"
        "<MediaId><![CDATA[media_file]]></MediaId>\n<FileName><![CDATA[report.pdf]]></FileName>"
    ))
    assert type(m) is FileMessage
    assert m.media_id == "media_file"
    assert m.raw["FileName"] == "report.pdf"


def test_every_media_message_is_a_media_message():
    kinds = {"image": ImageMessage, "voice": VoiceMessage, "video": VideoMessage, "file": FileMessage}
    for kind, cls in kinds.items():
        m = parse_message(msg(f"<MsgType>{kind}</MsgType><MediaId>id_{kind}</MediaId>"))
        assert isinstance(m, MediaMessage) and type(m) is cls
        assert m.media_id == f"id_{kind}"


def test_location_message_fields():
    m = parse_message(msg(
        "<MsgType><![CDATA[location]]></MsgType>\n"
        "<Location_X>23.134521</Location_X>\n<Location_Y>113.358803</Location_Y>\n"
        "<Scale>20</Scale>\n<Label><![CDATA[位置信息]]></Label>\n<AppType><![CDATA[wxwork]]></AppType>"
    ))
    assert type(m) is LocationMessage
    assert m.latitude == pytest.approx(23.134521)
    assert m.longitude == pytest.approx(113.358803)
    assert m.scale == 20
    assert m.label == "位置信息"
    assert m.app_type == "wxwork"


def test_link_message_fields():
    m = parse_message(msg(
        "<MsgType><![CDATA[link]]></MsgType>\n"
        "<Title><![CDATA[this is a title!]]></Title>\n"
        "<Description><![CDATA[this is a description!]]></Description>\n"
        "<Url><![CDATA[https://example.com/a?b=1&c=2]]></Url>\n"
        "<PicUrl><![CDATA[https://example.com/p.png]]></PicUrl>"
    ))
    assert type(m) is LinkMessage
    assert (m.title, m.description) == ("this is a title!", "this is a description!")
    assert m.url == "https://example.com/a?b=1&c=2"
    assert m.pic_url == "https://example.com/p.png"


def test_unknown_msg_type_is_a_generic_message_with_everything_in_raw():
    xml = msg(
        "<MsgType><![CDATA[mixed]]></MsgType>\n"
        "<Items><Item><Kind>text</Kind><Body>a</Body></Item><Item><Kind>image</Kind></Item></Items>"
    )
    m = parse_message(xml)
    assert type(m) is Message
    assert m.type == "mixed" and m.from_user == "zhangsan" and m.msg_id == "1234567890123456789"
    assert m.raw["Items"]["Item"] == [{"Kind": "text", "Body": "a"}, {"Kind": "image"}]
    assert set(m.raw) == {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Items", "MsgId", "AgentID"}


def test_raw_is_the_whole_document():
    xml = msg("<MsgType>text</MsgType><Content>hi</Content><Extra a=\"1\">x</Extra>")
    m = parse_message(xml)
    assert m.raw == {
        "ToUserName": "ww_corp",
        "FromUserName": "zhangsan",
        "CreateTime": "1348831860",
        "MsgType": "text",
        "Content": "hi",
        "Extra": {"@a": "1", "#text": "x"},
        "MsgId": "1234567890123456789",
        "AgentID": "1000002",
    }


# --- events -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("subscribe", SubscribeEvent),
        ("unsubscribe", UnsubscribeEvent),
        ("enter_agent", EnterAgentEvent),
    ],
)
def test_simple_events(name, cls):
    e = parse_message(event(name, "<EventKey><![CDATA[]]></EventKey>"))
    assert type(e) is cls
    assert e.is_event is True
    assert e.type == "event" and e.event == name
    assert e.event_key is None
    assert e.msg_id is None
    assert e.agent_id == "1000002"


def test_location_event_is_lower_cased():
    e = parse_message(event(
        "LOCATION",
        "<Latitude>23.104105</Latitude>\n<Longitude>113.320107</Longitude>\n"
        "<Precision>65.000000</Precision>\n<AppType><![CDATA[wxwork]]></AppType>",
    ))
    assert type(e) is LocationEvent
    assert e.event == "location"
    assert e.raw["Event"] == "LOCATION"
    assert (e.latitude, e.longitude, e.precision) == pytest.approx((23.104105, 113.320107, 65.0))
    assert e.app_type == "wxwork"


@pytest.mark.parametrize(
    ("name", "key", "cls"),
    [
        ("click", "MENU_KEY_1", ClickEvent),
        ("view", "https://example.com/x?a=1&b=2", ViewEvent),
        ("view_miniprogram", "pages/index/index", ViewMiniprogramEvent),
    ],
)
def test_menu_events_carry_the_key(name, key, cls):
    e = parse_message(event(name, f"<EventKey><![CDATA[{key}]]></EventKey>"))
    assert type(e) is cls
    assert e.event_key == key


@pytest.mark.parametrize(
    ("name", "cls"), [("scancode_push", ScanCodePushEvent), ("scancode_waitmsg", ScanCodeWaitMsgEvent)]
)
def test_scan_code_events(name, cls):
    e = parse_message(event(
        name,
        "<EventKey><![CDATA[scan#1]]></EventKey>\n"
        "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
        "<ScanResult><![CDATA[https://example.com/code]]></ScanResult></ScanCodeInfo>",
    ))
    assert type(e) is cls
    assert (e.event_key, e.scan_type, e.scan_result) == ("scan#1", "qrcode", "https://example.com/code")


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("pic_sysphoto", PicSysPhotoEvent),
        ("pic_photo_or_album", PicPhotoOrAlbumEvent),
        ("pic_weixin", PicWeixinEvent),
    ],
)
def test_picture_events(name, cls):
    e = parse_message(event(
        name,
        "<EventKey><![CDATA[photo]]></EventKey>\n<SendPicsInfo><Count>2</Count>\n"
        "<PicList><item><PicMd5Sum><![CDATA[md5a]]></PicMd5Sum></item>"
        "<item><PicMd5Sum><![CDATA[md5b]]></PicMd5Sum></item></PicList></SendPicsInfo>",
    ))
    assert type(e) is cls
    assert e.count == 2
    assert e.pic_md5_list == ["md5a", "md5b"]


def test_picture_event_with_one_picture_and_repeated_pic_list():
    one = parse_message(event(
        "pic_weixin",
        "<SendPicsInfo><Count>1</Count><PicList><item><PicMd5Sum>m1</PicMd5Sum></item></PicList></SendPicsInfo>",
    ))
    assert one.pic_md5_list == ["m1"]
    repeated = parse_message(event(
        "pic_weixin",
        "<SendPicsInfo><Count>2</Count>"
        "<PicList><item><PicMd5Sum>m1</PicMd5Sum></item></PicList>"
        "<PicList><item><PicMd5Sum>m2</PicMd5Sum></item></PicList></SendPicsInfo>",
    ))
    assert repeated.pic_md5_list == ["m1", "m2"]


def test_location_select_event():
    e = parse_message(event(
        "location_select",
        "<EventKey><![CDATA[loc]]></EventKey>\n<SendLocationInfo>"
        "<Location_X><![CDATA[23]]></Location_X><Location_Y><![CDATA[113]]></Location_Y>"
        "<Scale><![CDATA[15]]></Scale><Label><![CDATA[ 广州市海珠区客村艺苑路 106号]]></Label>"
        "<Poiname><![CDATA[海珠区]]></Poiname></SendLocationInfo>\n<AppType><![CDATA[wxwork]]></AppType>",
    ))
    assert type(e) is LocationSelectEvent
    assert (e.latitude, e.longitude, e.scale) == (23.0, 113.0, 15)
    assert e.label == " 广州市海珠区客村艺苑路 106号"
    assert e.poiname == "海珠区"
    assert e.app_type == "wxwork"


def test_batch_job_result_event_from_sys():
    xml = (
        "<xml><ToUserName><![CDATA[ww_corp]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        "<CreateTime>1425284517</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[batch_job_result]]></Event><BatchJob><JobId><![CDATA[S0MrnndvRG5fadSlLwiBqiDDbM143UqTmKP3152FZk4]]></JobId>"
        "<JobType><![CDATA[sync_user]]></JobType><ErrCode>0</ErrCode><ErrMsg><![CDATA[ok]]></ErrMsg></BatchJob></xml>"
    )
    e = parse_message(xml)
    assert type(e) is BatchJobResultEvent
    assert e.from_user == "sys" and e.agent_id is None
    assert e.job_id == "S0MrnndvRG5fadSlLwiBqiDDbM143UqTmKP3152FZk4"
    assert (e.job_type, e.err_code, e.err_msg) == ("sync_user", 0, "ok")


def test_change_contact_update_user():
    e = parse_message(event(
        "change_contact",
        "<ChangeType>update_user</ChangeType>\n<UserID><![CDATA[zhangsan]]></UserID>\n"
        "<NewUserID><![CDATA[zhangsan001]]></NewUserID>\n<Name><![CDATA[张三]]></Name>\n"
        "<Department><![CDATA[1,2,3]]></Department>\n<ExtAttr><Item><Name><![CDATA[爱好]]></Name>"
        "<Type>0</Type><Text><Value><![CDATA[旅游]]></Value></Text></Item></ExtAttr>",
        agent=None,
    ))
    assert type(e) is ChangeContactEvent
    assert (e.change_type, e.user_id, e.new_user_id) == ("update_user", "zhangsan", "zhangsan001")
    assert e.agent_id is None
    assert e.raw["Name"] == "张三" and e.raw["Department"] == "1,2,3"
    assert e.raw["ExtAttr"]["Item"]["Text"]["Value"] == "旅游"


def test_change_contact_party_and_tag():
    party = parse_message(event("change_contact", "<ChangeType>create_party</ChangeType><Id>2</Id>"
                                "<Name><![CDATA[张三]]></Name><ParentId><![CDATA[1]]></ParentId>", agent=None))
    assert (party.change_type, party.party_id, party.user_id) == ("create_party", "2", None)
    tag = parse_message(event("change_contact", "<ChangeType>update_tag</ChangeType><TagId>1</TagId>"
                              "<AddUserItems><![CDATA[zhangsan,lisi]]></AddUserItems>", agent=None))
    assert (tag.change_type, tag.tag_id) == ("update_tag", "1")
    assert tag.raw["AddUserItems"] == "zhangsan,lisi"


def test_open_approval_change():
    e = parse_message(event(
        "open_approval_change",
        "<ApprovalInfo><ThirdNo><![CDATA[201806010001]]></ThirdNo>"
        "<OpenSpName><![CDATA[付款]]></OpenSpName><OpenTemplateId><![CDATA[1234567890]]></OpenTemplateId>"
        "<OpenSpStatus>1</OpenSpStatus><ApplyTime>1527837645</ApplyTime>"
        "<ApplyUserName><![CDATA[xiaoming]]></ApplyUserName><ApplyUserId><![CDATA[1]]></ApplyUserId>"
        "<ApprovalNodes><ApprovalNode><NodeStatus>1</NodeStatus><Items><Item>"
        "<ItemName><![CDATA[xiaohong]]></ItemName><ItemStatus>1</ItemStatus></Item></Items>"
        "</ApprovalNode></ApprovalNodes></ApprovalInfo>",
    ))
    assert type(e) is OpenApprovalChangeEvent
    assert (e.third_no, e.open_sp_name, e.open_template_id) == ("201806010001", "付款", "1234567890")
    assert (e.open_sp_status, e.apply_time) == (1, 1527837645)
    assert (e.apply_user_name, e.apply_user_id) == ("xiaoming", "1")
    assert e.approval_info["ApprovalNodes"]["ApprovalNode"]["Items"]["Item"]["ItemName"] == "xiaohong"


def test_legacy_task_card_click_reads_lower_case_agent_id():
    xml = (
        f"{HEAD}<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[taskcard_click]]></Event>"
        "<EventKey><![CDATA[key111]]></EventKey><TaskId><![CDATA[taskid111]]></TaskId>"
        "<AgentId><![CDATA[1]]></AgentId></xml>"
    )
    e = parse_message(xml)
    assert type(e) is TaskCardClickEvent
    assert (e.event_key, e.task_id, e.agent_id) == ("key111", "taskid111", "1")


def test_template_card_event_with_selections():
    e = parse_message(event(
        "template_card_event",
        "<EventKey><![CDATA[key111]]></EventKey>\n<TaskId><![CDATA[taskid111]]></TaskId>\n"
        "<CardType><![CDATA[vote_interaction]]></CardType>\n<ResponseCode><![CDATA[RC123]]></ResponseCode>\n"
        "<SelectedItems>\n<SelectedItem>\n<QuestionKey><![CDATA[q1]]></QuestionKey>\n"
        "<OptionIds>\n<OptionId><![CDATA[o1]]></OptionId>\n<OptionId><![CDATA[o2]]></OptionId>\n</OptionIds>\n"
        "</SelectedItem>\n<SelectedItem>\n<QuestionKey><![CDATA[q2]]></QuestionKey>\n"
        "<OptionIds>\n<OptionId><![CDATA[o3]]></OptionId>\n</OptionIds>\n</SelectedItem>\n</SelectedItems>",
    ))
    assert type(e) is TemplateCardEvent
    assert (e.event_key, e.task_id, e.card_type, e.response_code) == ("key111", "taskid111", "vote_interaction", "RC123")
    assert e.selected_items == [SelectedItem("q1", ["o1", "o2"]), SelectedItem("q2", ["o3"])]
    assert e.accepts_passive_reply is True


def test_template_card_event_without_selections():
    e = parse_message(event(
        "template_card_event",
        "<EventKey><![CDATA[approve]]></EventKey><TaskId><![CDATA[t1]]></TaskId>"
        "<CardType><![CDATA[button_interaction]]></CardType><ResponseCode><![CDATA[rc]]></ResponseCode>",
    ))
    assert e.selected_items == []
    assert e.event_key == "approve"


def test_template_card_menu_event():
    e = parse_message(event(
        "template_card_menu_event",
        "<EventKey><![CDATA[menu_a]]></EventKey><TaskId><![CDATA[t9]]></TaskId>"
        "<CardType><![CDATA[text_notice]]></CardType><ResponseCode><![CDATA[rc9]]></ResponseCode>",
    ))
    assert type(e) is TemplateCardMenuEvent
    assert (e.event_key, e.task_id, e.card_type, e.response_code) == ("menu_a", "t9", "text_notice", "rc9")


def test_unknown_event_is_a_generic_event_with_everything_in_raw():
    e = parse_message(event(
        "CHANGE_EXTERNAL_CONTACT",
        "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
        "<ExternalUserID><![CDATA[wmABC]]></ExternalUserID><WelcomeCode><![CDATA[WELCOME]]></WelcomeCode>",
    ))
    assert type(e) is Event
    assert e.is_event and e.event == "change_external_contact"
    assert e.raw["Event"] == "CHANGE_EXTERNAL_CONTACT"
    assert e.raw["ExternalUserID"] == "wmABC" and e.raw["WelcomeCode"] == "WELCOME"


def test_which_events_take_a_passive_reply():
    assert parse_message(event("click", "<EventKey>k</EventKey>")).accepts_passive_reply
    assert parse_message(event("scancode_waitmsg")).accepts_passive_reply
    assert not parse_message(event("scancode_push")).accepts_passive_reply
    assert not parse_message(event("batch_job_result")).accepts_passive_reply
    assert not parse_message(event("something_new")).accepts_passive_reply
    assert parse_message(msg("<MsgType>text</MsgType><Content>x</Content>")).accepts_passive_reply


# --- dicts and errors --------------------------------------------------------


def test_message_from_dict_accepts_inner_or_whole_document():
    inner = {"MsgType": "text", "Content": "hi", "FromUserName": "u", "CreateTime": "5"}
    for d in (inner, {"xml": inner}):
        m = message_from_dict(d)
        assert type(m) is TextMessage
        assert (m.content, m.from_user, m.create_time) == ("hi", "u", 5)
        assert m.raw == inner


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "not xml at all",
        "<xml><ToUserName>a</ToUserName>",
        "<xml><MsgType>text</MsgType></xml><xml/>",
        "<xml>just text</xml>",
    ],
)
def test_broken_xml_is_refused(xml):
    with pytest.raises(MessageParseError):
        parse_message(xml)


def test_missing_msg_type_is_refused_clearly():
    with pytest.raises(MessageParseError, match="MsgType"):
        parse_message("<xml><ToUserName>a</ToUserName><Content>x</Content></xml>")


@pytest.mark.parametrize(
    "xml",
    [
        '<!DOCTYPE xml [<!ENTITY boom "x">]><xml><MsgType>text</MsgType><Content>&boom;</Content></xml>',
        '<?xml version="1.0"?>\n<!DOCTYPE xml SYSTEM "http://example.com/x.dtd"><xml><MsgType>text</MsgType></xml>',
        '<!-- <a> --><!DOCTYPE xml><xml><MsgType>text</MsgType></xml>',
        '<!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><xml><MsgType>&b;</MsgType></xml>',
    ],
)
def test_doctype_and_entities_are_refused(xml):
    with pytest.raises(MessageParseError, match="DOCTYPE"):
        parse_message(xml)


def test_doctype_text_inside_content_is_just_text():
    m = parse_message(msg("<MsgType>text</MsgType><Content><![CDATA[<!DOCTYPE html><!ENTITY x>]]></Content>"))
    assert m.content == "<!DOCTYPE html><!ENTITY x>"


def test_malformed_number_is_refused_with_the_field_name():
    with pytest.raises(MessageParseError, match="CreateTime"):
        parse_message("<xml><MsgType>text</MsgType><CreateTime>yesterday</CreateTime></xml>")
    with pytest.raises(MessageParseError, match="Location_X"):
        parse_message(msg("<MsgType>location</MsgType><Location_X>north</Location_X>"))


def test_parse_error_is_a_value_error():
    assert issubclass(MessageParseError, ValueError)


def test_bytes_input_is_read_as_utf8():
    m = parse_message(msg("<MsgType>text</MsgType><Content>你好</Content>").encode("utf-8"))
    assert m.content == "你好"
    with pytest.raises(MessageParseError):
        parse_message(b"<xml><MsgType>text</MsgType><Content>\xff</Content></xml>")


@pytest.mark.parametrize("xml", [
    "<xml><A>1</A><B><![CDATA[ two \n lines ]]></B><C/></xml>",
    "<xml>\n  <Items>\n    <item><Id>1</Id></item>\n    <item><Id>2</Id></item>\n  </Items>\n</xml>",
    '<xml><Tag kind="x">text</Tag><Tag>again</Tag><Deep><Er><Est>3</Est></Er></Deep></xml>',
    "<xml><Mixed>before<Child>c</Child></Mixed><Space>   </Space></xml>",
])
def test_parse_xml_matches_xmltodict(xml: str) -> None:
    import xmltodict

    def drop_layout(_path, key, value):
        return None if key == "#text" and not value.strip() else (key, value)

    expected = xmltodict.parse(xml, strip_whitespace=False, postprocessor=drop_layout)["xml"]
    assert parse_xml(xml) == expected


# --- the flat fast path -------------------------------------------------------

TYPICAL = (
    "<xml><ToUserName><![CDATA[ww_corp]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>"
    "<CreateTime>1732600000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[hello 你好]]></Content><MsgId>1234567890123456</MsgId><AgentID>1000002</AgentID></xml>"
)


@pytest.fixture
def expat_parse_xml(monkeypatch):
    """parse_xml with the fast path switched off: the behaviour to match."""

    def parse(xml):
        with monkeypatch.context() as patch:
            patch.setattr(messages, "_flat_xml_to_dict", lambda _xml: None)
            return parse_xml(xml)

    return parse


def outcome(parse, xml):
    """The parsed body with its key order, or the error raised."""
    try:
        body = parse(xml)
    except Exception as exc:  # the slow path may raise more than MessageParseError
        return type(exc), str(exc)
    return body, list(body)


def text_msg(content: str) -> str:
    return msg(f"<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[{content}]]></Content>")


EQUIVALENCE_DOCS = [
    TYPICAL,
    TYPICAL.replace("><", ">\n<"),
    TYPICAL.replace("><", ">\r\n  <"),
    "\n  " + TYPICAL + "\n\n",
    TYPICAL.encode("utf-8"),
    # the shapes the tests above use
    text_msg("你好 world"),
    msg("<MsgType>text</MsgType>\n<Content><![CDATA[  indented\n<b>&amp; ]]&gt;\n]]></Content>"),
    msg("<MsgType><![CDATA[image]]></MsgType>\n<PicUrl><![CDATA[https://wework.qpic.cn/x.jpg]]></PicUrl>\n"
        "<MediaId><![CDATA[media_img]]></MediaId>"),
    msg("<MsgType><![CDATA[voice]]></MsgType>\n<MediaId><![CDATA[v]]></MediaId>\n<Format><![CDATA[amr]]></Format>"),
    msg("<MsgType><![CDATA[video]]></MsgType>\n<MediaId><![CDATA[v]]></MediaId>\n<ThumbMediaId>t</ThumbMediaId>"),
    msg("<MsgType><![CDATA[file]]></MsgType>\n<MediaId><![CDATA[f]]></MediaId>\n<FileName><![CDATA[a.pdf]]></FileName>"),
    msg("<MsgType><![CDATA[location]]></MsgType>\n<Location_X>23.134521</Location_X>\n<Location_Y>113.358803</Location_Y>\n"
        "<Scale>20</Scale>\n<Label><![CDATA[位置信息]]></Label>\n<AppType><![CDATA[wxwork]]></AppType>"),
    msg("<MsgType><![CDATA[link]]></MsgType>\n<Title><![CDATA[t!]]></Title>\n<Description><![CDATA[d!]]></Description>\n"
        "<Url><![CDATA[https://example.com/a?b=1&c=2]]></Url>\n<PicUrl><![CDATA[https://example.com/p.png]]></PicUrl>"),
    msg("<MsgType><![CDATA[mixed]]></MsgType>\n"
        "<Items><Item><Kind>text</Kind><Body>a</Body></Item><Item><Kind>image</Kind></Item></Items>"),
    msg("<MsgType>text</MsgType><Content>hi</Content><Extra a=\"1\">x</Extra>"),
    event("subscribe", "<EventKey><![CDATA[]]></EventKey>"),
    event("LOCATION", "<Latitude>23.104105</Latitude>\n<Longitude>113.320107</Longitude>\n<Precision>65.000000</Precision>"),
    event("view", "<EventKey><![CDATA[https://example.com/x?a=1&b=2]]></EventKey>"),
    event("scancode_push", "<EventKey><![CDATA[scan#1]]></EventKey>\n<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
          "<ScanResult><![CDATA[https://example.com/code]]></ScanResult></ScanCodeInfo>"),
    event("pic_weixin", "<SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>m1</PicMd5Sum></item></PicList>"
          "<PicList><item><PicMd5Sum>m2</PicMd5Sum></item></PicList></SendPicsInfo>"),
    event("location_select", "<SendLocationInfo><Location_X><![CDATA[23]]></Location_X>"
          "<Label><![CDATA[ 广州市海珠区客村艺苑路 106号]]></Label></SendLocationInfo>"),
    "<xml><ToUserName><![CDATA[ww_corp]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>1425284517</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[batch_job_result]]></Event>"
    "<BatchJob><JobId><![CDATA[S0Mrnn]]></JobId><JobType><![CDATA[sync_user]]></JobType><ErrCode>0</ErrCode>"
    "<ErrMsg><![CDATA[ok]]></ErrMsg></BatchJob></xml>",
    event("change_contact", "<ChangeType>update_user</ChangeType>\n<UserID><![CDATA[zhangsan]]></UserID>\n"
          "<ExtAttr><Item><Name><![CDATA[爱好]]></Name><Type>0</Type><Text><Value><![CDATA[旅游]]></Value></Text></Item></ExtAttr>",
          agent=None),
    event("change_contact", "<ChangeType>update_tag</ChangeType><TagId>1</TagId><AddUserItems><![CDATA[a,b]]></AddUserItems>"),
    event("open_approval_change", "<ApprovalInfo><ThirdNo><![CDATA[201806010001]]></ThirdNo><OpenSpStatus>1</OpenSpStatus>"
          "<ApprovalNodes><ApprovalNode><Items><Item><ItemName><![CDATA[x]]></ItemName></Item></Items></ApprovalNode>"
          "</ApprovalNodes></ApprovalInfo>"),
    f"{HEAD}<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[taskcard_click]]></Event>"
    "<EventKey><![CDATA[key111]]></EventKey><TaskId><![CDATA[taskid111]]></TaskId><AgentId><![CDATA[1]]></AgentId></xml>",
    event("template_card_event", "<TaskId><![CDATA[t]]></TaskId>\n<SelectedItems>\n<SelectedItem>\n"
          "<QuestionKey><![CDATA[q1]]></QuestionKey>\n<OptionIds>\n<OptionId><![CDATA[o1]]></OptionId>\n"
          "<OptionId><![CDATA[o2]]></OptionId>\n</OptionIds>\n</SelectedItem>\n</SelectedItems>"),
    event("template_card_menu_event", "<EventKey><![CDATA[menu_a]]></EventKey><TaskId><![CDATA[t9]]></TaskId>"),
    event("CHANGE_EXTERNAL_CONTACT", "<ExternalUserID><![CDATA[wmABC]]></ExternalUserID>"),
    event("scancode_push"),
    message_xml("text", content="hi there", msg_id="1"),
    message_xml("text", content="a < b & c > d", msg_id="1"),
    message_xml("image", media_id="m", pic_url="https://x/y?a=1&b=2", msg_id="1"),
    event_xml("enter_agent", event_key=""),
    "<xml><A>1</A><B><![CDATA[ two \n lines ]]></B><C/></xml>",
    "<xml>\n  <Items>\n    <item><Id>1</Id></item>\n    <item><Id>2</Id></item>\n  </Items>\n</xml>",
    "<xml><Mixed>before<Child>c</Child></Mixed><Space>   </Space></xml>",
    # text kept exactly: Chinese, emoji, whitespace, markup-like text, "]]"
    text_msg("表情 😀👍🏽 ok"),
    text_msg("  leading and trailing  "),
    text_msg("\n\nnewlines\n"),
    text_msg("\tlast"),
    text_msg("a ]] b ]"),
    text_msg("]"),
    text_msg("]]"),
    text_msg("<!DOCTYPE html><!ENTITY x>"),
    text_msg("<b>bold</b> &amp; &#x4F60;"),
    text_msg("line\r\nwindows\rmac"),
    text_msg("\x85\u2028\u3000 \xa0"),
    "<xml><Content>plain ]] text &gt; ></Content><MsgType>text</MsgType></xml>",
    "<xml><Content>   </Content><MsgType>text</MsgType></xml>",
    "<xml><Content>a\r\nb</Content><MsgType>text</MsgType></xml>",
    "<xml>\r\n<MsgType>text</MsgType>\r\n<Content>x</Content>\r\n</xml>\r\n",
    "<xml>\t<MsgType>text</MsgType>\t</xml>",
    "<xml><a.b-c_1>x</a.b-c_1><_u/><xml>inner</xml></xml>",
    # empty elements
    "<xml><A></A><B/><C><![CDATA[]]></C><D>x</D></xml>",
    "<xml><A/></xml>",
    # repeated names, nesting, attributes
    "<xml><A>1</A><A>2</A></xml>",
    "<xml><A>1</A><B/><A/><A>3</A></xml>",
    "<xml><A><B>1</B></A></xml>",
    '<xml><A k="v">1</A></xml>',
    '<xml><A k="v"/></xml>',
    '<xml x="1"><A>1</A></xml>',
    # entities and character references
    "<xml><A>&amp;</A></xml>",
    "<xml><A>&#x4F60;&#22909;</A></xml>",
    "<xml><A>a &lt; b</A></xml>",
    "<xml><A>&nbsp;</A></xml>",
    "<xml><A>&</A></xml>",
    # CDATA that is not the whole text
    "<xml><A> <![CDATA[x]]></A></xml>",
    "<xml><A><![CDATA[x]]> </A></xml>",
    "<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A></xml>",
    "<xml><A><![CDATA[x]]>y]]></A></xml>",
    "<xml><A><![CDATA[x]]></A>]]></A></xml>",
    "<xml><A><![CDATA[unterminated</A></xml>",
    # not flat in other ways
    '<?xml version="1.0" encoding="utf-8"?><xml><A>1</A></xml>',
    "<!-- c --><xml><A>1</A></xml>",
    "<xml><!-- c --><A>1</A></xml>",
    "<xml><A>1</A><!-- c --></xml>",
    "<xml><A>1</A></xml><!-- c -->",
    "<xml><?pi x?><A>1</A></xml>",
    "\ufeff<xml><A>1</A></xml>",
    "<xml ><A>1</A></xml>",
    "<xml><A >1</A></xml>",
    "<xml><A>1</A ></xml>",
    "<xml><A>1</A></xml >",
    "<xml>text<A>1</A></xml>",
    "<xml><A>1</A>text</xml>",
    "<xml><A>1</A>&#10;</xml>",
    "<xml><a:b>1</a:b></xml>",
    "<xml><名字>值</名字></xml>",
    "<XML><A>1</A></XML>",
    "<root><A>1</A></root>",
    # broken
    "",
    "   ",
    "<xml>",
    "<xml></xml>",
    "<xml/>",
    "<xml>  </xml>",
    "<xml>just text</xml>",
    "<xml><A>1</B></xml>",
    "<xml><A>1</a></xml>",
    "<xml><A>1</A>",
    "<xml><A>1</A></xml></xml>",
    "<xml><A>1</A></xml><xml/>",
    "<xml><A>1</A></xml>trailing",
    "<xml><1A>1</1A></xml>",
    "<xml><A>a]]>b</A></xml>",
    "<xml><A>\x01</A></xml>",
    "<xml><A><![CDATA[\x08]]></A></xml>",
    "<xml><A>\ufffe</A></xml>",
    "<xml><A>\ud800</A></xml>",
    b"<xml><A>\xff</A></xml>",
    # DOCTYPE
    '<!DOCTYPE xml [<!ENTITY boom "x">]><xml><MsgType>text</MsgType><Content>&boom;</Content></xml>',
    "<!DOCTYPE xml><xml><A>1</A></xml>",
    '<?xml version="1.0"?>\n<!DOCTYPE xml SYSTEM "http://example.com/x.dtd"><xml><A>1</A></xml>',
]


@pytest.mark.parametrize("xml", EQUIVALENCE_DOCS)
def test_fast_path_agrees_with_expat(xml, expat_parse_xml):
    assert outcome(parse_xml, xml) == outcome(expat_parse_xml, xml)


def test_fast_path_agrees_with_expat_on_random_documents(expat_parse_xml):
    rng = random.Random(20241126)
    names = ["A", "B", "C", "MsgType", "Content", "_x", "a.b-c", "X1", "xml", "ToUserName", "AgentID"]
    bad_names = ["1a", "a:b", "名", "a b", "A"]
    safe = ["a", "Z", "0", " ", "\n", "\t", "]", "]]", ">", "你好", "😀", "'", '"', "é", "/", "\u3000"]
    wild = safe + ["\r", "\r\n", "<", "&", "&amp;", "&#x4F60;", "&lt;", "]]>", "<![CDATA[", "<b>", "\x01", "\ufffe"]

    def text():
        pieces = wild if rng.random() < 0.2 else safe
        return "".join(rng.choice(pieces) for _ in range(rng.randrange(6)))

    def flat_child():
        name = rng.choice(names)
        return rng.choice([
            f"<{name}>{text()}</{name}>",
            f"<{name}><![CDATA[{text()}]]></{name}>",
            f"<{name}><![CDATA[{text()}]]></{name}>",
            f"<{name}/>",
            f"<{name}></{name}>",
        ])

    def odd_child():
        name, other = rng.choice(names + bad_names), rng.choice(names)
        return rng.choice([
            f"<{name}>{text()}</{name}>",
            f"<{name}>{text()}<![CDATA[{text()}]]>{text()}</{name}>",
            f"<{name}><{other}>{text()}</{other}></{name}>",
            f'<{name} k="{text()}">{text()}</{name}>',
            f"<{name}>{text()}</{other}>",
            f"<{name} />",
            f"{text()}<!--{text()}-->",
        ])

    def document():
        gaps = ["", "", "\n", "  ", "\r\n", "\t "]
        children = [rng.choice(gaps) + flat_child() for _ in range(rng.randrange(1, 7))]
        start, end = "<xml>", rng.choice(gaps) + "</xml>"
        odd = rng.randrange(8)
        if odd == 0:
            children.insert(rng.randrange(len(children) + 1), odd_child())
        elif odd == 1:
            children.insert(rng.randrange(len(children) + 1), text())
        elif odd == 2:
            start = rng.choice(["\n<xml>", "<xml >", "<xml a='1'>", '<?xml version="1.0"?><xml>', "<xml/>", ""])
        elif odd == 3:
            end = rng.choice(["\n</xml>\n", "</xm>", "", "</xml><xml/>", "</xml>x", "</xml></xml>"])
        return start + "".join(children) + end

    fast = 0
    for _ in range(3000):
        xml = document()
        assert outcome(parse_xml, xml) == outcome(expat_parse_xml, xml), repr(xml)
        fast += messages._flat_xml_to_dict(xml) is not None
    assert 600 < fast < 2400  # both paths were well exercised


def test_typical_message_takes_the_fast_path(monkeypatch):
    def no_expat(xml):
        raise AssertionError("the expat path was used")

    monkeypatch.setattr(messages, "_xml_to_dict", no_expat)
    m = parse_message(TYPICAL)
    assert type(m) is TextMessage
    assert (m.content, m.from_user, m.create_time, m.msg_id) == ("hello 你好", "zhangsan", 1732600000, "1234567890123456")
    assert parse_message(msg("<MsgType>text</MsgType>\n<Content><![CDATA[ hi\n]]></Content>")).content == " hi\n"
    assert parse_message(text_msg("[微笑] ]] 😀")).content == "[微笑] ]] 😀"
    assert parse_message(event("enter_agent", "<EventKey><![CDATA[]]></EventKey>")).event_key is None
    assert parse_message(message_xml("text", content="hi")).content == "hi"
    assert parse_xml("<xml>\r\n<A/>\r\n<B></B>\r\n</xml>\r\n") == {"A": None, "B": None}


@pytest.mark.parametrize("xml", [
    "<xml><A>1</A><A>2</A></xml>",
    "<xml><A><B>1</B></A></xml>",
    '<xml><A k="v">1</A></xml>',
    "<xml><A>&amp;</A></xml>",
    "<xml><A>&#x4F60;</A></xml>",
    "<xml><A>a\r\nb</A></xml>",
    "<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A></xml>",
    '<?xml version="1.0"?><xml><A>1</A></xml>',
    "<xml><!-- c --><A>1</A></xml>",
    "<xml>text<A>1</A></xml>",
])
def test_unusual_documents_take_the_expat_path(monkeypatch, xml):
    calls = []
    real = messages._xml_to_dict
    monkeypatch.setattr(messages, "_xml_to_dict", lambda doc: calls.append(doc) or real(doc))
    parse_xml(xml)
    assert calls == [xml]
