"""The keyword plugin as a user sees it: rules in the config, answers over HTTP
from a simulated WeCom, and start-up errors that name the broken rule."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from wechatbot import create_app
from wechatbot.testing.simulator import SimulatedWeCom
from wechatbot.testing import app_sections, make_app, simulated_wecom


def bot(rules: dict[str, str], plugins: str = "keyword") -> SimulatedWeCom:
    """A host running the installed plugins ``plugins`` with ``[plugin:keyword]`` = ``rules``."""
    sections = app_sections(**{"wechatbot": {"plugins": plugins}, "plugin:keyword": rules})
    return simulated_wecom(make_app(sections))


def rules_file(tmp_path: Path, rules: list, name: str = "rules.yaml") -> str:
    path = tmp_path / name
    text = json.dumps(rules, ensure_ascii=False) if name.endswith(".json") else yaml.safe_dump(rules, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def start_error(rules: dict[str, str]) -> str:
    """The start-up error the host gives for these rules."""
    with pytest.raises(RuntimeError) as info:
        bot(rules)
    return str(info.value)


# --- match kinds -----------------------------------------------------------


def test_exact_rule_answers_only_the_whole_text() -> None:
    wecom = bot({"hello": "你好"})
    assert wecom.text("hello").content == "你好"
    assert wecom.text("  hello\n").content == "你好"
    assert not wecom.text("hello there")
    assert not wecom.text("hell")


def test_contains_rule_answers_text_holding_the_pattern() -> None:
    wecom = bot({"contains 发票": "开发票请找财务部"})
    assert wecom.text("我想开发票，怎么办").content == "开发票请找财务部"
    assert not wecom.text("发 票")


def test_prefix_rule_answers_text_starting_with_the_pattern() -> None:
    wecom = bot({"prefix 天气": "天气查询在菜单里"})
    assert wecom.text("天气 北京").content == "天气查询在菜单里"
    assert not wecom.text("今天天气")


def test_regex_rule_fills_named_groups() -> None:
    wecom = bot({r"regex ^订单(?P<no>\d+)(?:-(?P<part>\d+))?$": "订单 {no} 第{part}部分已收到"})
    assert wecom.text("订单123-2").content == "订单 123 第2部分已收到"
    assert wecom.text("订单123").content == "订单 123 第部分已收到"
    assert not wecom.text("订单abc")


def test_exact_prefix_matches_a_text_that_starts_with_a_kind_word() -> None:
    wecom = bot({"exact contains 发票": "literal", "contains 发票": "contains"})
    assert wecom.text("contains 发票").content == "literal"
    assert wecom.text("开发票").content == "contains"


# --- case ------------------------------------------------------------------


def test_case_matters_by_default() -> None:
    wecom = bot({"Hello": "hi", "contains VPN": "vpn", "prefix Help": "help", "regex ^Ping$": "pong"})
    assert wecom.text("Hello").content == "hi"
    for text in ("hello", "my vpn is down", "help me", "ping"):
        assert not wecom.text(text), text


def test_ignore_case_applies_to_every_text_kind() -> None:
    wecom = bot({"ignore_case": "true", "Hello": "hi", "contains VPN": "vpn", "prefix Help": "help", "regex ^Ping$": "pong"})
    assert wecom.text("HELLO").content == "hi"
    assert wecom.text("my vpn is down").content == "vpn"
    assert wecom.text("help me").content == "help"
    assert wecom.text("PING").content == "pong"


def test_ignore_case_false_keeps_case() -> None:
    wecom = bot({"ignore_case": "false", "Hello": "hi"})
    assert not wecom.text("hello")


# --- order -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"contains 发票": "first: contains", "prefix 发票": "first: prefix"}, "first: contains"),
        ({"prefix 发票": "first: prefix", "contains 发票": "first: contains"}, "first: prefix"),
    ],
)
def test_first_matching_rule_wins_in_file_order(rules: dict[str, str], expected: str) -> None:
    assert bot(rules).text("发票抬头").content == expected


def test_rules_file_rules_stand_where_rules_file_is(tmp_path: Path) -> None:
    path = rules_file(tmp_path, [
        {"name": "from-file", "match": {"kind": "contains", "pattern": "b"}, "reply": "file"},
    ])
    wecom = bot({"contains a": "before", "rules_file": path, "contains c": "after"})
    assert wecom.text("abc").content == "before"
    assert wecom.text("bc").content == "file"
    assert wecom.text("c").content == "after"


# --- placeholders ----------------------------------------------------------


def test_placeholders_fill_message_fields_and_keep_doubled_braces() -> None:
    wecom = bot({"who": "{from_user} → {to_user} @ {agent_id}: {content} {{literal}}"})
    answer = wecom.text("who", from_user="lisi", to_user="ww_corp", agent_id="1000005")
    assert answer.content == "lisi → ww_corp @ 1000005: who {literal}"


def test_content_placeholder_is_the_text_as_sent() -> None:
    wecom = bot({"prefix 复述": "你说：{content}"})
    assert wecom.text("复述 一二三").content == "你说：复述 一二三"


# --- events ----------------------------------------------------------------


def test_click_rules_match_the_menu_event_key() -> None:
    wecom = bot({
        "event click MENU_HELP": "帮助",
        "event click MENU_ABOUT": "关于",
        "event click": "你点了 {event_key}",
    })
    assert wecom.event("click", event_key="MENU_HELP").content == "帮助"
    assert wecom.event("click", event_key="MENU_ABOUT").content == "关于"
    assert wecom.event("click", event_key="MENU_OTHER").content == "你点了 MENU_OTHER"


def test_click_rule_with_a_key_ignores_other_keys_and_texts() -> None:
    wecom = bot({"event click MENU_HELP": "帮助"})
    assert not wecom.event("click", event_key="menu_help")
    assert not wecom.text("MENU_HELP")
    assert not wecom.event("view", event_key="MENU_HELP")


def test_enter_agent_and_subscribe_rules() -> None:
    wecom = bot({"event enter_agent": "欢迎回来，{from_user}", "event subscribe": "欢迎关注"})
    assert wecom.event("enter_agent", from_user="wangwu").content == "欢迎回来，wangwu"
    assert wecom.event("subscribe").content == "欢迎关注"
    assert not wecom.event("unsubscribe")


def test_event_names_match_whatever_case_wecom_sends() -> None:
    wecom = bot({"event LOCATION": "收到位置"})
    assert wecom.event("LOCATION").content == "收到位置"


def test_text_rules_do_not_answer_events() -> None:
    wecom = bot({"contains MENU": "text rule"})
    assert not wecom.event("click", event_key="MENU_HELP")


# --- reply kinds from a rules file ----------------------------------------


def test_image_voice_and_video_replies_from_a_rules_file(tmp_path: Path) -> None:
    path = rules_file(tmp_path, [
        {"name": "logo", "match": {"pattern": "logo"}, "reply": {"type": "image", "media_id": "MEDIA_IMG"}},
        {"name": "song", "match": {"pattern": "song"}, "reply": {"type": "voice", "media_id": "MEDIA_AMR"}},
        {"name": "intro", "event": {"name": "click", "key": "INTRO"},
         "reply": {"type": "video", "media_id": "MEDIA_MP4", "title": "介绍", "description": "给 {from_user}"}},
    ])
    wecom = bot({"rules_file": path})
    image = wecom.text("logo")
    assert (image.msg_type, image.media_id) == ("image", "MEDIA_IMG")
    voice = wecom.text("song")
    assert (voice.msg_type, voice.media_id) == ("voice", "MEDIA_AMR")
    video = wecom.event("click", event_key="INTRO", from_user="lisi")
    assert video.msg_type == "video"
    assert video.raw["Video"] == {"MediaId": "MEDIA_MP4", "Title": "介绍", "Description": "给 lisi"}


def test_news_reply_from_a_rules_file(tmp_path: Path) -> None:
    path = rules_file(tmp_path, [
        {"name": "docs", "match": {"kind": "regex", "pattern": "^文档 (?P<topic>\\w+)$"}, "reply": {"type": "news", "articles": [
            {"title": "{topic} 指南", "description": "给 {from_user}", "url": "https://example.com/{topic}",
             "pic_url": "https://example.com/p.png"},
            {"title": "更多"},
        ]}},
    ])
    answer = bot({"rules_file": path}).text("文档 vpn", from_user="lisi")
    assert answer.msg_type == "news"
    assert answer.raw["ArticleCount"] == "2"
    first, second = answer.raw["Articles"]["item"]
    assert first == {"Title": "vpn 指南", "Description": "给 lisi", "Url": "https://example.com/vpn",
                     "PicUrl": "https://example.com/p.png"}
    assert second["Title"] == "更多"


def test_json_rules_file_and_text_reply_forms(tmp_path: Path) -> None:
    path = rules_file(tmp_path, [
        {"name": "plain", "match": {"kind": "prefix", "pattern": "hi"}, "ignore_case": True, "reply": "hello {from_user}"},
        {"name": "typed", "event": "enter_agent", "reply": {"type": "text", "content": "welcome"}},
        {"name": "number", "match": {"pattern": 110}, "reply": "报警电话"},
    ], name="rules.json")
    wecom = bot({"rules_file": path})
    assert wecom.text("HI there", from_user="lisi").content == "hello lisi"
    assert wecom.event("enter_agent").content == "welcome"
    assert wecom.text("110").content == "报警电话"


def test_relative_rules_file_is_read_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules_file(tmp_path, [{"match": {"pattern": "ping"}, "reply": "pong"}])
    monkeypatch.chdir(tmp_path)
    assert bot({"rules_file": "rules.yaml"}).text("ping").content == "pong"


# --- no match --------------------------------------------------------------


def test_no_match_goes_to_the_next_plugin() -> None:
    wecom = bot({"hello": "你好"}, plugins="keyword, echo")
    assert wecom.text("hello").content == "你好"
    assert wecom.text("something else").content == "something else"


def test_no_match_and_no_other_plugin_is_an_empty_answer() -> None:
    wecom = bot({"hello": "你好"})
    answer = wecom.text("something else")
    assert (answer.status, answer.body) == (200, "")
    assert not wecom.message("image", media_id="MEDIA", pic_url="https://example.com/a.png")
    assert not wecom.event("enter_agent")


# --- a real INI file -------------------------------------------------------


def test_rules_from_an_ini_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    wecom_section = app_sections()["wecom"]
    rules_file(tmp_path, [{"name": "menu", "event": {"name": "click", "key": "MENU_HELP"}, "reply": "菜单帮助"}])
    config = tmp_path / "wechatbot.ini"
    config.write_text(
        "[wecom]\n" + "".join(f"{k} = {v}\n" for k, v in wecom_section.items()) +
        "[wechatbot]\nstore = memory://\nplugins = keyword\n"
        "[plugin:keyword]\n"
        "# greetings\n"
        "Hello = 100% 你好\n"
        "帮助 =\n"
        "    第一行\n"
        "    第二行 {from_user}\n"
        "rules_file = rules.yaml\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    app = create_app(str(config))
    request.addfinalizer(app.extensions["wechatbot"].close)
    wecom = simulated_wecom(app)
    assert wecom.text("Hello").content == "100% 你好"
    assert not wecom.text("hello")
    assert wecom.text("帮助", from_user="lisi").content == "第一行\n第二行 lisi"
    assert wecom.event("click", event_key="MENU_HELP").content == "菜单帮助"


def test_the_readme_example_starts_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    ini = re.findall(r"```ini\n(.*?)```", readme, re.S)[1]
    (tmp_path / "keyword-rules.yaml").write_text(re.findall(r"```yaml\n(.*?)```", readme, re.S)[0], encoding="utf-8")
    wecom_section = app_sections()["wecom"]
    config = tmp_path / "wechatbot.ini"
    config.write_text(
        "[wecom]\n" + "".join(f"{k} = {v}\n" for k, v in wecom_section.items()) +
        "[wechatbot]\nstore = memory://\nplugins = keyword, echo\n" + ini,
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    app = create_app(str(config))
    request.addfinalizer(app.extensions["wechatbot"].close)
    wecom = simulated_wecom(app)
    assert wecom.text("HELLO", from_user="lisi").content == "你好，lisi"
    assert wecom.text("帮助").content == "发送「天气 城市」查询天气\n发送「订单 号码」查询订单"
    assert wecom.text("订单42").content == "订单 42 已收到，我们会尽快处理"
    assert wecom.text("order: 7").content == "订单 7 已收到"
    assert wecom.text("Our LOGO please").media_id == "3a8asd892asd8asd"
    assert wecom.event("click", event_key="MENU_HELP").content == "发送「帮助」查看全部指令"
    assert wecom.event("click", event_key="MENU_VIDEO", from_user="lisi").raw["Video"]["Description"] == "给 lisi"
    docs = wecom.event("click", event_key="MENU_DOCS", from_user="lisi")
    assert docs.raw["Articles"]["item"][0]["Url"] == "https://example.com/handbook?u=lisi"
    assert wecom.event("click", event_key="MENU_OTHER").content == "你点了菜单 MENU_OTHER"
    assert wecom.text("音乐").media_id == "1c8asd892asd8asd"
    assert wecom.event("enter_agent", from_user="lisi").content == "欢迎回来，lisi"
    assert wecom.text("anything else").content == "anything else"


# --- start-up errors -------------------------------------------------------


def test_bad_regex_is_a_start_up_error_naming_the_rule() -> None:
    message = start_error({"hello": "hi", "regex ^(订单": "x"})
    assert "[plugin:keyword] rule 'regex ^(订单': bad regular expression '^(订单'" in message


def test_unknown_placeholder_is_a_start_up_error_naming_the_rule() -> None:
    message = start_error({"greet": "hi {user}"})
    assert "[plugin:keyword] rule 'greet': unknown placeholder {user}" in message


def test_placeholder_of_a_group_the_regex_lacks_is_a_start_up_error() -> None:
    message = start_error({r"regex ^订单(?P<no>\d+)$": "订单 {number}"})
    assert r"rule 'regex ^订单(?P<no>\d+)$': unknown placeholder {number}" in message
    assert "{no}" in message


def test_stray_brace_is_a_start_up_error_naming_the_rule() -> None:
    message = start_error({"json": "use {\"a\": 1}"})
    assert "rule 'json':" in message


def test_kind_cut_off_by_a_colon_is_a_start_up_error() -> None:
    # "contains:发票 = x" in an INI file reaches the plugin as key "contains".
    message = start_error({"contains": "发票 = 开票"})
    assert "rule 'contains': 'contains' needs a pattern after a space" in message


def test_empty_reply_is_a_start_up_error() -> None:
    assert "rule 'hello': the reply text is empty" in start_error({"hello": "  "})


def test_bad_ignore_case_is_a_start_up_error() -> None:
    assert "[plugin:keyword] ignore_case: must be true or false, got 'sometimes'" in start_error({"ignore_case": "sometimes"})


def test_missing_rules_file_is_a_start_up_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert f"[plugin:keyword] rules_file: no such file: {missing}" in start_error({"rules_file": str(missing)})


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"name": "gif", "match": {"pattern": "x"}, "reply": {"type": "gif", "media_id": "M"}},
         "rule 'gif': unknown reply type 'gif' (known: text, markdown, image, voice, video, news)"),
        ({"name": "fuzzy", "match": {"kind": "fuzzy", "pattern": "x"}, "reply": "y"},
         "rule 'fuzzy': unknown match kind 'fuzzy'"),
        ({"name": "bad-re", "match": {"kind": "regex", "pattern": "(?P<x"}, "reply": "y"},
         "rule 'bad-re': bad regular expression '(?P<x'"),
        ({"name": "news-hole", "match": {"pattern": "x"}, "reply": {"type": "news", "articles": [{"title": "{nope}"}]}},
         "rule 'news-hole': unknown placeholder {nope}"),
        ({"name": "no-media", "match": {"pattern": "x"}, "reply": {"type": "image"}},
         "rule 'no-media': the image reply needs 'media_id'"),
        ({"name": "too-many", "match": {"pattern": "x"}, "reply": {"type": "news", "articles": [{"title": "t"}] * 9}},
         "rule 'too-many': a news reply holds at most 8 articles, got 9"),
        ({"name": "both", "match": {"pattern": "x"}, "event": "click", "reply": "y"},
         "rule 'both': give either match (a text rule) or event (an event rule)"),
        ({"name": "typo", "match": {"pattern": "x"}, "repyl": "y"},
         "rule 'typo': unknown field 'repyl'"),
        ({"match": {"pattern": "x"}}, "rule 'rules.yaml #2': no reply"),
    ],
)
def test_broken_rule_in_the_rules_file_is_a_start_up_error_naming_it(tmp_path: Path, rule: dict, expected: str) -> None:
    path = rules_file(tmp_path, [{"name": "fine", "match": {"pattern": "ok"}, "reply": "ok"}, rule])
    assert expected in start_error({"rules_file": path})


def test_rules_file_that_is_not_a_list_is_a_start_up_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("hello: 你好\n", encoding="utf-8")
    assert re.search(r"rules_file: .*rules\.yaml must hold a list of rules", start_error({"rules_file": str(path)}))


def test_rules_file_with_broken_yaml_is_a_start_up_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("- name: [unclosed\n", encoding="utf-8")
    assert "is not valid YAML" in start_error({"rules_file": str(path)})
