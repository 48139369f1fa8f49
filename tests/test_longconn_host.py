"""A host whose AI bot runs on the long connection: the same plugins, answered over frames."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from wechatbot import hookimpl
from wechatbot.config import ConfigError, config_from_sections
from wechatbot.longconn import protocol
from wechatbot.wecom.bot_replies import TemplateCardReply
from wechatbot.wecom.replies import MarkdownReply, TemplateCardUpdateReply
from wechatbot.testing import make_app
from wechatbot.testing.fake_longconn import FakeLongConnServer
from wechatbot.wecom.aibot import AibotTextMessage

BOT, SECRET = "aibot-host-1", "host-secret"
CARD = {"card_type": "text_notice", "main_title": {"title": "hi"}, "card_action": {"type": 1, "url": "https://example.com"},
        "task_id": "task-1"}


class Recorder:
    """Answers by the text: 'stream …' streams its words, 'card' a template card, anything else an echo."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.lock = threading.Lock()

    @hookimpl
    def handle_message(self, message: Any, context: Any) -> Any:
        with self.lock:
            self.seen.append(message)
        text = message.content
        if text.startswith("stream "):
            return self.words(text.split()[1:])
        if text == "card":
            return TemplateCardReply(CARD)
        if text == "markdown":
            return MarkdownReply("**bold**")
        return f"echo {text}"

    @staticmethod
    def words(words: list[str]) -> Iterator[str]:
        for n, word in enumerate(words):
            time.sleep(0.3)
            yield word if n == 0 else " " + word

    @hookimpl
    def handle_event(self, event: Any, context: Any) -> Any:
        with self.lock:
            self.seen.append(event)
        if event.event == "enter_chat":
            return "欢迎"
        if event.event == "template_card_event":
            return TemplateCardUpdateReply({"card_type": "text_notice", "main_title": {"title": "done"},
                                            "card_action": {"type": 1, "url": "https://example.com"}})
        return None


@pytest.fixture
def fake() -> Iterator[FakeLongConnServer]:
    with FakeLongConnServer({BOT: SECRET}) as server:
        yield server


def sections(fake: FakeLongConnServer, tmp_path: Path) -> dict[str, dict[str, str]]:
    return {
        "wecom:bot": {"type": "aibot", "mode": "websocket", "bot_id": BOT, "secret": SECRET, "ws_url": fake.url},
        "wechatbot": {"store": f"sqlite:///{tmp_path / 'state.db'}"},
    }


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def app(fake, tmp_path, recorder):
    app = make_app(sections(fake, tmp_path), {"recorder": recorder})
    fake.wait_subscribed(BOT)
    return app


def test_text_is_answered_as_a_finished_stream_and_plugins_see_the_bot_message(app, fake, recorder) -> None:
    req_id = fake.push_text(BOT, "@bot 你好", chatid="group-1", userid="lisi")
    final = fake.wait_final_reply(req_id)
    assert final["cmd"] == protocol.RESPOND
    assert final["body"]["stream"]["content"] == "echo 你好" and final["body"]["stream"]["finish"] is True
    [message] = recorder.seen
    assert isinstance(message, AibotTextMessage)  # the same type as a callback's
    assert (message.from_user, message.chat_id, message.chat_type, message.mention) == ("lisi", "group-1", "group", "bot")


def test_generator_streams_in_order_and_finishes(app, fake) -> None:
    fake.receipt_policy(lambda frame, nth: 0.4 if nth == 2 else 0.0)
    req_id = fake.push_text(BOT, "stream a b c d e f g h")
    final = fake.wait_final_reply(req_id, timeout=15)
    texts = [protocol.stream_of(f).content for f in fake.replies(req_id)]
    assert protocol.stream_of(final).content == "a b c d e f g h" and texts[-1] == "a b c d e f g h"
    assert len(texts) >= 3 and all(b.startswith(a) and len(b) > len(a) for a, b in zip(texts, texts[1:]))
    assert {protocol.stream_of(f).stream_id for f in fake.replies(req_id)} == {protocol.stream_of(final).stream_id}
    assert fake.violations == []


def test_other_replies_and_events(app, fake) -> None:
    card = fake.wait_final_reply(fake.push_text(BOT, "card"))
    assert card["body"] == {"msgtype": "template_card", "template_card": CARD}
    markdown = fake.wait_final_reply(fake.push_text(BOT, "markdown"))
    assert markdown["body"]["markdown"]["content"] == "**bold**"
    started = time.monotonic()
    welcome = fake.wait_final_reply(fake.push_event(BOT, "enter_chat"))
    assert welcome["cmd"] == protocol.RESPOND_WELCOME and welcome["body"]["text"]["content"] == "欢迎"
    assert time.monotonic() - started < 5
    update = fake.wait_final_reply(fake.push_event(BOT, "template_card_event", task_id="task-9",
                                                   event_key="ok", card_type="button_interaction"))
    assert update["cmd"] == protocol.RESPOND_UPDATE
    assert update["body"]["template_card"]["task_id"] == "task-9"
    assert not [r for r in fake.received() if r.cmd in (protocol.RESPOND, protocol.SEND) and r.frame.get("errcode")]


def test_a_repeated_msgid_runs_the_plugin_once_and_is_answered_once(app, fake, recorder) -> None:
    first = fake.push_text(BOT, "only once", msgid="dup-1")
    again = fake.push_text(BOT, "only once", msgid="dup-1")
    fake.wait_final_reply(first)
    time.sleep(0.5)
    assert [m.content for m in recorder.seen] == ["only once"]
    assert fake.replies(again) == []
    assert len(fake.received(protocol.RESPOND)) == 1


def test_no_callback_route_and_a_clear_config(fake, tmp_path) -> None:
    client = make_app(sections(fake, tmp_path), {"recorder": Recorder()}).test_client()
    assert client.post("/callback/bot", data=b"<xml/>").status_code == 404
    with pytest.raises(ConfigError, match=r"\[wecom:bot\] secret is missing .*WECHATBOT_WECOM_BOT__SECRET"):
        config_from_sections({"wecom:bot": {"type": "aibot", "mode": "websocket", "bot_id": "b"}}, {})
    with pytest.raises(ConfigError, match="type = aibot only"):
        config_from_sections({"wecom": {"mode": "websocket", "bot_id": "b", "secret": "s"}}, {})
    with pytest.raises(ConfigError, match="mode must be one of callback, websocket"):
        config_from_sections({"wecom": {"type": "aibot", "mode": "ws"}}, {})
    env = {"WECHATBOT_WECOM_BOT__SECRET": "from-env"}
    config = config_from_sections({"wecom:bot": {"type": "aibot", "mode": "websocket", "bot_id": "b"}}, env)
    endpoint = config.endpoint("bot")
    assert endpoint.secret == "from-env" and endpoint.ws_url == "wss://openws.work.weixin.qq.com"
    assert "from-env" not in repr(endpoint)


def test_a_deferred_reply_is_pushed_as_aibot_send_msg(fake, tmp_path) -> None:
    class Deferring:
        @hookimpl
        def handle_message(self, message: Any, context: Any) -> Any:
            context.defer(later, message)
            return None

    make_app(sections(fake, tmp_path), {"deferring": Deferring()})
    fake.wait_subscribed(BOT)
    fake.push_text(BOT, "later please", userid="wangwu")
    [push] = fake.wait_for(lambda: fake.received(protocol.SEND), 15, "the push")
    assert push.frame["body"] == {"chatid": "wangwu", "msgtype": "markdown", "markdown": {"content": "later: later please"}}


def later(message: Any, context: Any) -> str:
    return f"later: {message.content}"


def test_media_carries_its_own_aeskey_and_the_bot_file_helper_decrypts_it(fake, tmp_path) -> None:
    import base64
    import secrets as random

    from wechatbot.api.bot_files import download_bot_file
    from wechatbot.testing.fake_api import FakeWeComAPI

    class Saver:
        @hookimpl
        def handle_message(self, message: Any, context: Any) -> Any:
            path = download_bot_file(message.url, message.aeskey, tmp_path / "got.bin")
            return f"saved {path.stat().st_size} bytes"

    aeskey = base64.b64encode(random.token_bytes(32)).decode()
    data = random.token_bytes(70_000)
    with FakeWeComAPI() as files:
        url = files.add_bot_file(data, aeskey)
        make_app(sections(fake, tmp_path), {"saver": Saver()})
        fake.wait_subscribed(BOT)
        req_id = fake.push_message(BOT, {"msgid": "img-1", "aibotid": BOT, "chattype": "single",
                                         "from": {"userid": "lisi"}, "msgtype": "image",
                                         "image": {"url": url, "aeskey": aeskey}})
        final = fake.wait_final_reply(req_id)
    assert protocol.stream_of(final).content == f"saved {len(data)} bytes"
    assert (tmp_path / "got.bin").read_bytes() == data


class SlowStreamer:
    """Streams a word every 0.3 s; 'fail' raises after two words."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    @hookimpl
    def handle_message(self, message: Any, context: Any) -> Any:
        def chunks() -> Iterator[str]:
            for n in range(8):
                time.sleep(0.3)
                if message.content == "fail" and n == 2:
                    raise RuntimeError("the model went away")
                yield f"w{n} "
        return chunks()

    @hookimpl
    def plugin_error(self, plugin_name: str, hook_name: str, exception: BaseException, message: Any, context: Any) -> None:
        self.errors.append(exception)


def test_a_failing_stream_ends_visibly_and_is_reported(fake, tmp_path) -> None:
    streamer = SlowStreamer()
    make_app(sections(fake, tmp_path), {"streamer": streamer})
    fake.wait_subscribed(BOT)
    final = fake.wait_final_reply(fake.push_text(BOT, "fail"), timeout=10)
    content = protocol.stream_of(final).content
    assert content.startswith("w0 w1 ") and "回答出错" in content
    assert [str(e) for e in streamer.errors] == ["the model went away"]


def test_a_stream_ends_before_its_window_and_the_rest_is_pushed(fake, tmp_path) -> None:
    config = sections(fake, tmp_path)
    config["wechatbot"]["stream_window"] = "1.5"  # the host ends it 0.15 s before: after about four words
    make_app(config, {"streamer": SlowStreamer()})
    fake.wait_subscribed(BOT)
    req_id = fake.push_text(BOT, "long", userid="zhaoliu")
    final = protocol.stream_of(fake.wait_final_reply(req_id, timeout=10)).content
    [push] = fake.wait_for(lambda: fake.received(protocol.SEND), 10, "the rest")
    shown = final.split("\n\n")[0]
    assert "未完" in final and shown.startswith("w0 ")
    assert shown + push.frame["body"]["markdown"]["content"] == "".join(f"w{n} " for n in range(8))
    assert push.frame["body"]["chatid"] == "zhaoliu"


def test_a_slow_first_chunk_shows_the_placeholder_meanwhile(fake, tmp_path) -> None:
    class Thinker:
        @hookimpl
        def handle_message(self, message: Any, context: Any) -> Any:
            def chunks() -> Iterator[str]:
                time.sleep(1.6)
                yield "thought"
            return chunks()

    make_app(sections(fake, tmp_path), {"thinker": Thinker()})
    fake.wait_subscribed(BOT)
    req_id = fake.push_text(BOT, "think")
    fake.wait_final_reply(req_id, timeout=10)
    texts = [protocol.stream_of(f).content for f in fake.replies(req_id)]
    assert texts[0] == "…" and texts[-1] == "thought" and set(texts) == {"…", "thought"}
