"""Pending questions: one per user and chat, claimed once, expiring, cancellable."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from wechatbot.conversations import Conversations
from wechatbot.store import MemoryStore


def on_city(answer, context, state):
    return f"{state['what']} in {answer.content}"


def msg(user: str = "u1", content: str = "", chat: str | None = None):
    return SimpleNamespace(from_user=user, content=content, chat_id=chat)


def test_the_next_message_of_the_same_user_and_chat_is_the_answer() -> None:
    store = MemoryStore()
    asking, other_worker = Conversations(store, "hr"), Conversations(store, "hr")
    reply = asking.ask("wx", msg(), "Which city?", on_city, {"what": "weather"})
    assert reply.content == "Which city?"
    assert other_worker.take(msg("u2")) is None
    assert other_worker.take(msg("u1", chat="group")) is None
    assert Conversations(store, "other-endpoint").take(msg()) is None
    pending = other_worker.take(msg(content="Shenzhen"))
    assert pending.plugin == "wx" and pending.question == "Which city?"
    assert pending.handler()(msg(content="Shenzhen"), None, pending.state) == "weather in Shenzhen"
    assert asking.take(msg()) is None  # taken once


def test_a_question_expires_and_cancel_words_are_recognised() -> None:
    conversations = Conversations(MemoryStore(), "", timeout=0.2, cancel_words=["cancel", "取消"])
    conversations.ask("wx", msg(), "Which city?", on_city)
    time.sleep(0.3)
    assert conversations.take(msg()) is None
    assert conversations.is_cancel(msg(content=" 取消 ")) and conversations.is_cancel(msg(content="CANCEL"))
    assert not conversations.is_cancel(msg(content="cancel my order"))


def test_then_must_be_importable_and_state_json() -> None:
    conversations = Conversations(MemoryStore(), "")
    with pytest.raises(ValueError, match="module-level function"):
        conversations.ask("wx", msg(), "?", lambda *a: None)
    with pytest.raises(TypeError, match="plain JSON"):
        conversations.ask("wx", msg(), "?", on_city, {"x": object()})


# Through the host


@pytest.fixture
def wechatbot_plugins(kit_plugin):
    return {"kit": kit_plugin, "echo": __import__("wechatbot_echo")}


def test_a_two_step_conversation_takes_the_next_messages_first(wecom) -> None:
    assert wecom.text("book").content == "Which city?"
    assert wecom.text("hello", from_user="someone-else").content == "hello"  # not their question
    assert wecom.text("plain Shenzhen").content == "Which day?"  # the answer, before any plugin
    assert wecom.text("Friday").content == "booked plain Shenzhen on Friday"
    assert wecom.text("Friday").content == "Friday"  # answered: back to the plugins


def test_a_cancel_word_drops_the_question(wecom) -> None:
    assert wecom.text("book").content == "Which city?"
    assert wecom.text("取消").content == "Cancelled."
    assert wecom.text("Shenzhen").content == "Shenzhen"


def group_text(user: str, text: str, chat: str = "wrkSFfCg") -> str:
    return (f"<xml><ChatId><![CDATA[{chat}]]></ChatId><ChatType>group</ChatType>"
            f"<From><UserId>{user}</UserId></From><MsgType>text</MsgType>"
            f"<Text><Content><![CDATA[@RobotA {text}]]></Content></Text><MsgId>{user}{text}</MsgId></xml>")


def test_in_a_group_robots_chat_commands_and_answers_belong_to_one_user_and_chat(wechatbot_app) -> None:
    from wechatbot.wecom.group_robot import parse_group_robot

    endpoint = next(iter(wechatbot_app.extensions["wechatbot"].endpoints.values()))

    def say(user: str, text: str, chat: str = "wrkSFfCg"):
        return endpoint.answer(parse_group_robot(group_text(user, text, chat)))[1]

    assert say("zhangsan", "book").content == "Which city?"  # the @mention is not part of the command
    assert say("lisi", "hello").content == "hello"  # another user in the chat: not the answer (echo's)
    assert say("zhangsan", "Paris", chat="otherchat").content == "Paris"  # the same user elsewhere: neither
    assert say("zhangsan", "Shenzhen").content == "Which day?"
    assert say("zhangsan", "Friday").content == "booked Shenzhen on Friday"
