"""``wechatbot send``: message from JSON/YAML, ``-a`` fields, the answer printed, errors as exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from wechatbot.wecom.crypto import generate_aes_key, generate_token
from wechatbot.testing.fake_api import FakeWeComAPI
from wechatbot.cli.send import MessageError, apply_fields, parse_message, parse_scalar, send, set_path

CORP_ID = "ww_send_test"
AGENT_ID = 1000002
HR_AGENT_ID = 1000007


# The pure parts


@pytest.mark.parametrize("raw,value", [
    ("42", 42), ("-7", -7), ("0", 0), ("1.5", 1.5), ("-2e3", -2000.0),
    ("true", True), ("False", False), ("null", None), ("~", None),
    ("007", "007"), ("yes", "yes"), ("on", "on"), ("2024-01-01", "2024-01-01"),
    ('"42"', "42"), ("'true'", "true"), ('"a\\nb"', "a\nb"), ("'it''s'", "it's"),
    ("hello world", "hello world"), ("", ""), ("[urgent] disk full", "[urgent] disk full"),
    ("key: value", "key: value"), ('"unbalanced', '"unbalanced'),
])
def test_parse_scalar(raw: str, value: object) -> None:
    assert parse_scalar(raw) == value and type(parse_scalar(raw)) is type(value)


def test_fields_add_and_override_by_dotted_path() -> None:
    message = {"msgtype": "text", "text": {"content": "old"}, "touser": "a"}
    apply_fields(message, ["text.content=new", "touser=zhangsan|lisi", "agentid=1000002", "safe=1",
                           "template_card.main_title.title=Hi", "text.extra=x=y"])
    assert message == {
        "msgtype": "text", "text": {"content": "new", "extra": "x=y"}, "touser": "zhangsan|lisi",
        "agentid": 1000002, "safe": 1, "template_card": {"main_title": {"title": "Hi"}},
    }


def test_fields_index_existing_lists() -> None:
    message = {"news": {"articles": [{"title": "one"}]}}
    set_path(message, "news.articles.0.title", "first")
    set_path(message, "news.articles.1", {"title": "appended"})
    assert message == {"news": {"articles": [{"title": "first"}, {"title": "appended"}]}}
    with pytest.raises(MessageError, match="not an index"):
        set_path(message, "news.articles.5.title", "x")


@pytest.mark.parametrize("field,words", [
    ("touser", "key.path=value"),
    ("=x", "key.path=value"),
    ("text..content=x", "empty part"),
    ("text.content.deeper=x", "text.content is a str"),
])
def test_bad_fields(field: str, words: str) -> None:
    with pytest.raises(MessageError, match=words):
        apply_fields({"text": {"content": "hello"}}, [field])


def test_parse_message_json_and_yaml() -> None:
    assert parse_message('{"msgtype": "text", "text": {"content": "你好"}}') == {
        "msgtype": "text", "text": {"content": "你好"}}
    assert parse_message("msgtype: markdown\nmarkdown:\n  content: |\n    # title\n    body\n") == {
        "msgtype": "markdown", "markdown": {"content": "# title\nbody\n"}}
    for bad, words in [("- a\n- b", "mapping"), ("", "empty"), ("{unclosed", "neither JSON nor YAML")]:
        with pytest.raises(MessageError, match=words):
            parse_message(bad)


# The command against the fake WeCom API


@pytest.fixture
def fake() -> Iterator[FakeWeComAPI]:
    with FakeWeComAPI() as server:
        yield server


@pytest.fixture
def secrets_() -> dict[str, str]:
    return {"main": "main-secret-" + uuid.uuid4().hex, "hr": "hr-secret-" + uuid.uuid4().hex}


@pytest.fixture
def config_file(tmp_path: Path, fake: FakeWeComAPI, secrets_: dict[str, str]) -> Path:
    fake.add_app(CORP_ID, secrets_["main"], agent_id=AGENT_ID)
    fake.add_app(CORP_ID, secrets_["hr"], agent_id=HR_AGENT_ID)
    path = tmp_path / "config.ini"
    path.write_text(
        "[wecom]\n"
        f"corp_id = {CORP_ID}\ntoken = {generate_token()}\nencoding_aes_key = {generate_aes_key()}\n"
        f"agent_id = {AGENT_ID}\nsecret = {secrets_['main']}\napi_base = {fake.url}\n\n"
        "[wecom:hr]\n"
        f"corp_id = {CORP_ID}\ntoken = {generate_token()}\nencoding_aes_key = {generate_aes_key()}\n"
        f"agent_id = {HR_AGENT_ID}\nsecret = {secrets_['hr']}\napi_base = {fake.url}\n\n"
        "[wechatbot]\nstore = memory://\n",
        encoding="utf-8",
    )
    return path


def run(config_file: Path, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(send, ["--config", str(config_file), *args], input=stdin)


def test_send_inline_json_with_fields(config_file: Path, fake: FakeWeComAPI) -> None:
    result = run(config_file, "-m", '{"msgtype": "text", "text": {"content": "placeholder"}}',
                 "-a", "touser=zhangsan", "-a", "text.content=部署完成", "-a", "safe=1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["errcode"] == 0
    assert fake.sent == [{"msgtype": "text", "text": {"content": "部署完成"}, "touser": "zhangsan", "safe": 1,
                          "agentid": AGENT_ID}]


def test_send_yaml_file_and_stdin(config_file: Path, fake: FakeWeComAPI, tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(
        "touser: zhangsan\nmsgtype: template_card\ntemplate_card:\n  card_type: text_notice\n"
        "  main_title:\n    title: 周报\n  task_id: placeholder\n", encoding="utf-8")
    assert run(config_file, str(card), "-a", "template_card.task_id=task-42").exit_code == 0
    assert run(config_file, "-", "-a", 'touser="007"',
               stdin="msgtype: markdown\nmarkdown:\n  content: '**ok**'\n").exit_code == 0
    first, second = fake.sent
    assert first["template_card"] == {"card_type": "text_notice", "main_title": {"title": "周报"},
                                      "task_id": "task-42"}
    assert second == {"msgtype": "markdown", "markdown": {"content": "**ok**"}, "touser": "007",
                      "agentid": AGENT_ID}


def test_send_from_fields_alone_as_another_app(config_file: Path, fake: FakeWeComAPI) -> None:
    result = run(config_file, "--app", "hr", "-a", "msgtype=text", "-a", "touser=@all", "-a", "text.content=hi")
    assert result.exit_code == 0, result.output
    assert fake.sent == [{"msgtype": "text", "touser": "@all", "text": {"content": "hi"}, "agentid": HR_AGENT_ID}]


def test_unknown_app_is_a_usage_error(config_file: Path, fake: FakeWeComAPI) -> None:
    result = run(config_file, "--app", "sales", "-a", "msgtype=text", "-a", "touser=a", "-a", "text.content=x")
    assert result.exit_code == 2
    assert "--app" in result.stderr and "sales" in result.stderr
    assert fake.requests == []


@pytest.mark.parametrize("args,stdin,words", [
    ([], None, "no message"),
    (["-m", "{not json: [yaml"], None, "neither JSON nor YAML"),
    (["-m", '{"touser": "a"}'], None, "no msgtype"),
    (["-m", '{"msgtype": "text"}', "-a", "touser"], None, "key.path=value"),
    (["-", "-m", '{"msgtype": "text"}'], "msgtype: text\n", "not both"),
    (["-"], "- just\n- a list\n", "mapping"),
])
def test_bad_input_is_a_usage_error(config_file: Path, fake: FakeWeComAPI, args: list[str], stdin: str | None,
                                    words: str) -> None:
    result = run(config_file, *args, stdin=stdin)
    assert result.exit_code == 2
    assert words in result.stderr
    assert fake.requests == []


def test_wecom_error_exits_1_without_the_secret(config_file: Path, fake: FakeWeComAPI,
                                                secrets_: dict[str, str]) -> None:
    fake.fail_next("message/send", 81013)
    result = run(config_file, "-m", '{"msgtype": "text", "touser": "nobody", "text": {"content": "x"}}')
    assert result.exit_code == 1
    assert "errcode 81013" in result.stderr and "visible range" in result.stderr
    assert result.stdout == ""
    assert secrets_["main"] not in result.output


def test_missing_config_is_reported(tmp_path: Path) -> None:
    result = CliRunner().invoke(send, ["--config", str(tmp_path / "nope.ini"), "-a", "msgtype=text"])
    assert result.exit_code == 1
    assert "config file not found" in result.stderr


def test_the_wechatbot_command_sends_and_fails_with_exit_codes(config_file: Path, fake: FakeWeComAPI) -> None:
    """The installed console script, config from WECHATBOT_CONFIG, as a user runs it."""
    env = {**os.environ, "WECHATBOT_CONFIG": str(config_file)}
    command = [sys.executable, "-c", "from wechatbot.cli import main; main()", "send"]
    ok = subprocess.run([*command, "-a", "msgtype=text", "-a", "touser=zhangsan", "-a", "text.content=from cli"],
                        capture_output=True, text=True, env=env, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["msgid"]
    assert fake.sent[-1]["text"]["content"] == "from cli"
    fake.fail_next("message/send", 48002)
    failed = subprocess.run([*command, "-a", "msgtype=text", "-a", "touser=zhangsan", "-a", "text.content=x"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert failed.returncode == 1
    assert "errcode 48002" in failed.stderr
