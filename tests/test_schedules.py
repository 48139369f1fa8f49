"""Schedules: due times every host agrees on, one run per due time across processes, missed runs."""
from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from wechatbot.config import ConfigError
from wechatbot.schedules import Schedule, Scheduler, Target, from_config
from wechatbot.store import MemoryStore

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(*fields: int) -> float:
    return datetime(*fields, tzinfo=SHANGHAI).timestamp()


def test_due_times_for_every_and_cron() -> None:
    every = Schedule("tick", (Target("user", "u"),), every=60)
    assert every.latest_due(at(2026, 12, 1, 9, 0, 59)) == at(2026, 12, 1, 9, 0)
    assert every.next_due(at(2026, 12, 1, 9, 0)) == at(2026, 12, 1, 9, 1)
    standup = from_config("standup", {"cron": "30 9 * * 1-5", "timezone": "Asia/Shanghai", "to": "user:u", "text": "站会"})
    assert standup.latest_due(at(2026, 12, 1, 9, 30)) == at(2026, 12, 1, 9, 30)  # a Tuesday, on the minute
    assert standup.latest_due(at(2026, 12, 1, 9, 29)) == at(2026, 11, 30, 9, 30)
    assert standup.next_due(at(2026, 12, 4, 10, 0)) == at(2026, 12, 7, 9, 30)  # Friday → Monday
    assert standup.when == "cron 30 9 * * 1-5 (Asia/Shanghai)"


def test_config_errors_name_the_section() -> None:
    with pytest.raises(ConfigError, match=r"\[schedule:x\] needs exactly one of every"):
        from_config("x", {"to": "user:u", "text": "hi"})
    with pytest.raises(ConfigError, match=r"\[schedule:x\]: cron 'every day'"):
        from_config("x", {"cron": "every day", "to": "user:u", "text": "hi"})
    with pytest.raises(ConfigError, match=r"\[schedule:x\] to: 'room:1'"):
        from_config("x", {"every": "60", "to": "room:1", "text": "hi"})
    with pytest.raises(ConfigError, match="unknown key"):
        from_config("x", {"every": "60", "to": "u", "text": "hi", "color": "red"})
    hook = from_config("x", {"every": "60", "to": "webhook:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K1", "text": "hi"})
    assert hook.to == (Target("webhook", "K1"),) and str(hook.to[0]) == "webhook:***"


def test_each_due_time_fires_once_across_schedulers_sharing_a_store() -> None:
    store, fired = MemoryStore(), []
    job = Schedule("tick", (Target("user", "u"),), every=10)
    hosts = [Scheduler([job], store, lambda s, due, n=n: fired.append((n, due))) for n in range(4)]
    start = 1000.0
    for host in hosts:
        host.first_seen(job, start)
    for now in (1000.5, 1003, 1010.2, 1011, 1019.9, 1020.1):
        for host in hosts:
            host.run_due(now)
    assert sorted(due for _, due in fired) == [1000.0, 1010.0, 1020.0]


@pytest.mark.parametrize("missed, expected", [("skip", []), ("once", [1300.0])])
def test_runs_missed_while_down(missed: str, expected: list[float]) -> None:
    store, fired = MemoryStore(), []
    job = Schedule("hourly", (Target("user", "u"),), every=100, missed=missed, grace=5)
    Scheduler([job], store, lambda s, due: None).run_due(1000.0)  # the job has been seen
    Scheduler([job], store, lambda s, due: fired.append(due)).run_due(1390.0)  # back after downtime
    assert fired == expected


def test_a_new_job_does_not_run_for_times_before_it_existed() -> None:
    fired = []
    job = Schedule("new", (Target("user", "u"),), every=100, missed="once")
    Scheduler([job], MemoryStore(), lambda s, due: fired.append(due)).run_due(1050.0)
    assert fired == []


# Through the host


@pytest.fixture
def wechatbot_plugins(kit_plugin):
    return {"kit": kit_plugin}


@pytest.fixture
def wechatbot_sections():
    return {"plugin:kit": {"period": "0.4", "to": "user:zhangsan,department:2"},
            "schedule:robot": {"every": "0.4", "to": "webhook:ROBOTKEY, chat:wrchat1", "markdown": "**hi**"}}


def test_plugin_and_config_schedules_push_through_the_api(wechatbot_app, fake_wecom_api) -> None:
    fake_wecom_api.add_webhook("ROBOTKEY")
    fake_wecom_api.add_app_chat("wrchat1")
    sent = fake_wecom_api.wait_for_sent(2, timeout=10)
    assert sent[0]["touser"] == "zhangsan" and sent[0]["toparty"] == "2"
    assert sent[0]["text"]["content"] == "tick from kit"
    deadline = time.monotonic() + 10
    while not (fake_wecom_api.webhook_sent and fake_wecom_api.appchat_sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    key, payload = fake_wecom_api.webhook_sent[0]
    assert key == "ROBOTKEY" and payload == {"msgtype": "markdown", "markdown": {"content": "**hi**"}}
    assert fake_wecom_api.appchat_sent[0]["chatid"] == "wrchat1"


def test_the_schedules_command_lists_jobs_with_their_next_run(tmp_path) -> None:
    import json as json_module

    from click.testing import CliRunner

    from wechatbot.cli.schedules import schedules
    from wechatbot.testing import app_sections, ini_text

    sections = app_sections(**{"schedule:standup": {"cron": "30 9 * * 1-5", "timezone": "Asia/Shanghai",
                                                    "to": "department:2, webhook:SECRETKEY", "text": "站会"}})
    (tmp_path / "config.ini").write_text(ini_text(sections), encoding="utf-8")
    result = CliRunner().invoke(schedules, ["--config", str(tmp_path / "config.ini"), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json_module.loads(result.output)
    assert row["name"] == "standup" and row["when"] == "cron 30 9 * * 1-5 (Asia/Shanghai)"
    assert row["to"] == ["department:2", "webhook:***"] and row["last_run"] is None
    next_run = datetime.fromisoformat(row["next_run"]).astimezone(SHANGHAI)
    assert (next_run.hour, next_run.minute) == (9, 30) and next_run.weekday() < 5
    text = CliRunner().invoke(schedules, ["--config", str(tmp_path / "config.ini")]).output
    assert "next run:" in text and "SECRETKEY" not in text


def test_a_schedule_for_an_unknown_endpoint_stops_start_up() -> None:
    from wechatbot.testing import app_sections, make_app

    with pytest.raises(ConfigError, match=r"\[schedule:x\] endpoint = 'nope' names no \[wecom\] section"):
        make_app(app_sections(**{"schedule:x": {"every": "60", "to": "u", "text": "hi", "endpoint": "nope"}}), {})
