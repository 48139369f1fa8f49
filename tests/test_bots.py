"""The AI bot and the group robot in one process: the `wecom` fixture, streams, late answers, suites."""
from __future__ import annotations

import threading
import time

import pytest

from wechatbot import GroupTextReply, TemplateCardReply, TemplateCardUpdateReply, hookimpl
from wechatbot.streams import MORE_BELOW
from wechatbot.testing import make_app, simulated_wecom
from wechatbot.testing.hosts import app_sections, flask_transport
from wechatbot.testing.simulator import SimulatedWeCom
from wechatbot.wecom.aibot import AibotTextMessage
from wechatbot.wecom.messages import TextMessage

WELCOME_CARD = {"card_type": "text_notice", "main_title": {"title": "欢迎"}, "card_action": {"type": 1, "url": "https://example.com"}}


class Bot:
    """Streams "stream N", answers "big N" with N characters, sleeps on "slow", raises on "broken"."""

    wechatbot_inline = False

    def __init__(self) -> None:
        self.seen: list = []
        self.errors: list = []

    @hookimpl
    def handle_message(self, message, context):
        self.seen.append(message)
        if message.type == "image":
            path = context.download_bot_file(message)
            try:
                return f"image of {path.stat().st_size} bytes starting {path.read_bytes()[:4]!r}"
            finally:
                path.unlink()
        text = message.content
        if text.startswith("stream "):
            return (f"{i}," for i in range(int(text.split()[1])))
        if text.startswith("big "):
            return "字" * int(text.split()[1])
        if text == "slow":
            time.sleep(1.5)
            return "late answer"
        if text == "slow stream":
            def slowly():
                yield "late "
                time.sleep(1.5)
                yield "stream"
            return slowly()
        if text == "broken":
            def chunks():
                yield "half"
                raise RuntimeError("model went away")
            return chunks()
        if text == "card":
            return TemplateCardReply(WELCOME_CARD)
        if text == "mention":
            return GroupTextReply("请看", mentioned_list=[message.from_user])
        return f"got {text}"

    @hookimpl
    def handle_event(self, event):
        self.seen.append(event)
        if event.event == "enter_chat":
            return iter(["欢", "迎"])  # an iterator answer to an event is joined
        if event.event == "template_card_event":
            return TemplateCardUpdateReply({"card_type": "button_interaction", "main_title": {"title": "已处理"}})
        return None

    @hookimpl
    def plugin_error(self, plugin_name, hook_name, exception):
        self.errors.append((plugin_name, hook_name, type(exception).__name__))


@pytest.fixture
def plugin():
    return Bot()


@pytest.fixture
def wechatbot_plugins(plugin):
    return {"bot": plugin}


@pytest.fixture
def wechatbot_sections():
    return {"wecom": {"type": "aibot"}, "wechatbot": {"reply_deadline": "1"}}


def test_a_streamed_answer_in_one_line(wecom, plugin):
    result = wecom.text("stream 50")
    assert result.finish and result.content == "".join(f"{i}," for i in range(50))
    assert result.msgtype == "stream" and result.texts
    assert isinstance(plugin.seen[0], AibotTextMessage) and isinstance(plugin.seen[0], TextMessage)


def test_a_text_answer_is_a_finished_stream(wecom):
    result = wecom.text("hello")
    assert result.msgtype == "stream" and result.finish and result.polls == 0
    assert result.content == "got hello" and result.first.stream["id"]


def test_the_same_msgid_runs_the_plugin_once(wecom, plugin):
    doc = wecom.document("text", {"content": "once"}, msgid="MSG-1")
    answers = [wecom.post(doc) for _ in range(3)]
    assert {a.content for a in answers} == {"got once"}
    assert [m.msg_id for m in plugin.seen] == ["MSG-1"]


def test_events(wecom, plugin):
    assert wecom.enter_chat().data == {"msgtype": "text", "text": {"content": "欢迎"}}
    card = wecom.event("template_card_event", {"card_type": "button_interaction", "event_key": "yes", "task_id": "T1"})
    assert card.data["response_type"] == "update_template_card" and card.data["template_card"]["task_id"] == "T1"
    feedback = wecom.event("feedback_event", {"id": "FB", "type": 2, "content": "不对"})
    assert feedback.status == 200 and not feedback
    assert plugin.seen[-1].event == "feedback_event" and plugin.seen[-1].content == "不对"


def test_a_template_card_answer(wecom):
    result = wecom.text("card")
    assert result.first.data == {"msgtype": "template_card", "template_card": WELCOME_CARD}


def test_an_image_is_downloaded_and_decrypted(wecom, wechatbot_app, fake_wecom_api):
    key = wechatbot_app.extensions["wechatbot"].endpoints[""].config.encoding_aes_key
    url = fake_wecom_api.add_bot_file(b"\x89PNG" + b"\x00" * 996, key)
    assert wecom.message("image", {"url": url}).content == "image of 1000 bytes starting b'\\x89PNG'"


def test_a_poll_for_an_unknown_stream(wecom):
    answer = wecom.poll("NOT-A-STREAM")
    assert answer.msgtype == "stream" and answer.finish


def test_overflow_goes_through_response_url(wecom, fake_wecom_api):
    result = wecom.text("big 9000")  # 27000 bytes
    assert len(result.content.encode()) <= 20480 and result.content.endswith(MORE_BELOW)
    (_, body), = fake_wecom_api.wait_for_responses(1)
    assert result.content.removesuffix(MORE_BELOW) + body["markdown"]["content"] == "字" * 9000


def test_a_late_answer_goes_through_response_url(wecom, fake_wecom_api):
    result = wecom.text("slow")
    assert result.first.status == 200 and not result.first  # answered empty in time
    (_, body), = fake_wecom_api.wait_for_responses(1)
    assert body == {"msgtype": "markdown", "markdown": {"content": "late answer"}}


def test_a_stream_that_raises(wecom, plugin):
    result = wecom.text("broken")
    assert result.finish and result.content.startswith("half") and len(result.content) > 4
    deadline = time.monotonic() + 2
    while not plugin.errors and time.monotonic() < deadline:
        time.sleep(0.02)
    assert plugin.errors == [("bot", "handle_message", "RuntimeError")]


def test_polls_from_another_worker_see_the_same_stream(plugin, tmp_path):
    """Two hosts in one process sharing a SQLite store: the second answers the first's polls."""
    gate = threading.Event()

    class Slow:
        @hookimpl
        def handle_message(self, message):
            def chunks():
                yield "first"
                gate.wait(5)
                yield " second"
            return chunks()

    sections = app_sections(wecom={"type": "aibot"}, wechatbot={"store": f"sqlite:///{tmp_path}/s.db"})
    one, two = make_app(sections, {"slow": Slow()}), make_app(sections, {"slow": Slow()})
    sim = simulated_wecom(one)
    first = sim.post(sim.document("text", {"content": "x"}))
    stream_id = first.stream["id"]
    other = simulated_wecom(two)
    deadline = time.monotonic() + 2
    while (answer := other.poll(stream_id)).content != "first":
        assert time.monotonic() < deadline
    assert not answer.finish
    gate.set()
    deadline = time.monotonic() + 2
    while not (answer := other.poll(stream_id)).finish:
        assert time.monotonic() < deadline
    assert answer.content == "first second"


class TestGroupRobot:
    @pytest.fixture
    def wechatbot_sections(self):
        return {"wecom": {"type": "group_robot"}, "wechatbot": {"reply_deadline": "1"}}

    def test_a_text_reaches_the_plugin_without_the_mention(self, wecom, plugin):
        answer = wecom.text("hello")
        assert (answer.msg_type, answer.content) == ("text", "got hello")
        seen = plugin.seen[0]
        assert (seen.content, seen.mention, seen.from_user, seen.from_name) == ("hello", "RobotA", "zhangsan", "张三")

    def test_mentions_and_long_or_late_answers_through_the_webhook(self, wecom, fake_wecom_api):
        assert wecom.text("mention").mentioned_list == ["zhangsan"]
        assert not wecom.text("big 1500")  # 4500 bytes: sent through the webhook in parts
        parts = fake_wecom_api.wait_for_webhooks(3)
        assert "".join(body["text"]["content"] for _, body in parts) == "字" * 1500
        assert all(key == "test-robot" for key, _ in parts)
        assert not wecom.text("slow")
        (_, late), = fake_wecom_api.wait_for_webhooks(4)[3:]
        assert late == {"msgtype": "text", "text": {"content": "late answer"}}

    def test_a_streamed_reply_is_joined(self, wecom):
        assert wecom.text("stream 5").content == "0,1,2,3,4,"

    def test_events_reach_plugins(self, wecom, plugin):
        assert wecom.event("add_to_chat").status == 200
        assert plugin.seen[-1].event == "add_to_chat"


class TestApp:
    @pytest.fixture
    def wechatbot_sections(self):
        return {"wechatbot": {"reply_deadline": "1"}}

    def test_an_iterator_reply_is_answered_as_text(self, wecom):
        assert wecom.text("stream 4").content == "0,1,2,3,"

    def test_a_late_iterator_reply_is_pushed_joined(self, wecom, fake_wecom_api):
        assert not wecom.text("slow stream")  # answered empty within reply_deadline
        sent, = fake_wecom_api.wait_for_sent(1)
        assert sent["text"]["content"] == "late stream" and sent["touser"] == "zhangsan"

    def test_a_suite_callback_is_answered_success(self, wechatbot_app, plugin):
        endpoint = wechatbot_app.extensions["wechatbot"].endpoints[""]
        sim = SimulatedWeCom(flask_transport(wechatbot_app), endpoint.config.token, endpoint.config.encoding_aes_key, endpoint.config.receive_id, endpoint.path)
        ticket = ("<xml><SuiteId><![CDATA[ww_suite]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType>"
                  "<TimeStamp>1403610513</TimeStamp><SuiteTicket><![CDATA[T]]></SuiteTicket></xml>")
        assert sim.transport("POST", *sim.signed_request(ticket)) == (200, "success")
        assert plugin.seen[-1].event == "suite_ticket" and plugin.seen[-1].suite_ticket == "T"
        unknown = sim.transport("POST", *sim.signed_request("<xml><Mystery>1</Mystery></xml>"))
        assert unknown == (200, "")
