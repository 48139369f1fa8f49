"""A store that is down is a state: callbacks answered, plugins run, one log line per change, recovery by itself.

Redis is a private redis-server on its own port, started and killed here
(never the machine's shared one); SQLite is a file that cannot be opened at first.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from wechatbot import hookimpl
from wechatbot.jobs import Jobs, queue_for
from wechatbot.outage import ResilientStore
from wechatbot.testing import app_sections, make_app, simulated_wecom
from wechatbot.testing.redis_server import REDIS_SERVER, PrivateRedis

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


@pytest.fixture
def redis_server(tmp_path: Path):
    server = PrivateRedis(tmp_path)
    try:
        yield server
    finally:
        server.kill()


class Counting:
    def __init__(self) -> None:
        self.runs: list[str] = []

    @hookimpl
    def handle_message(self, message):
        self.runs.append(message.content)
        return "got " + message.content


def host_on(store_url: str, plugin: Counting):
    sections = app_sections(wechatbot={"store": store_url, "queue": "memory://", "replay_window": "300"})
    app = make_app(sections, plugins={"counting": plugin})
    return app, simulated_wecom(app), app.extensions["wechatbot"].store


def outage_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wechatbot.store"]


def test_redis_killed_and_restarted_empty(redis_server: PrivateRedis, caplog) -> None:
    redis_server.start()
    plugin = Counting()
    app, wecom, store = host_on(redis_server.url, plugin)
    store.probe_every = 0.2
    assert isinstance(store, ResilientStore) and store.ping() and store.healthy
    assert wecom.text("before").content == "got before"

    redis_server.kill()
    with caplog.at_level(logging.INFO):
        answers = [wecom.text(f"during {i}").content for i in range(20)]
        assert answers == [f"got during {i}" for i in range(20)]
        assert not store.healthy and not store.ping()
        assert store.possible_duplicates >= 20

        redis_server.start()  # empty
        time.sleep(0.3)
        assert wecom.text("after").content == "got after"
        assert store.healthy and store.ping()
    assert plugin.runs == ["before", *[f"during {i}" for i in range(20)], "after"]
    lines = outage_lines(caplog)
    assert [r.levelname for r in lines] == ["ERROR", "WARNING"], [r.getMessage() for r in lines]
    assert "unreachable" in lines[0].getMessage() and "is back" in lines[1].getMessage()
    assert not any(r.exc_info for r in caplog.records), "an expected outage logged a traceback"


def test_a_retry_during_an_outage_is_still_recognised_in_this_process(redis_server: PrivateRedis) -> None:
    plugin = Counting()
    app, wecom, store = host_on(redis_server.url, plugin)  # never started: down from the start
    assert not store.healthy
    first = wecom.text("once", msg_id="777").content
    again = wecom.text("once", msg_id="777").content
    assert first == again == "got once" and plugin.runs == ["once"]


def test_starting_while_redis_is_down_then_it_comes_up(redis_server: PrivateRedis, caplog) -> None:
    plugin = Counting()
    with caplog.at_level(logging.INFO):
        app, wecom, store = host_on(redis_server.url, plugin)
        store.probe_every = 0.2
        assert wecom.text("early").content == "got early"
        assert not store.ping()
        redis_server.start()
        time.sleep(0.3)
        assert wecom.text("later").content == "got later"
        assert store.healthy
    assert plugin.runs == ["early", "later"]
    assert len(outage_lines(caplog)) == 2
    assert not any(r.exc_info for r in caplog.records)


def test_a_sqlite_store_that_cannot_be_opened_at_start_recovers_by_itself(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.write_text("a file where the store's folder should be")
    plugin = Counting()
    app, wecom, store = host_on(f"sqlite:///{folder}/state.db", plugin)
    store.probe_every = 0.1
    assert wecom.text("without a file").content == "got without a file"
    assert not store.healthy
    folder.unlink()
    time.sleep(1.1)  # the next attempt is due a second after the failed one
    assert wecom.text("with a file").content == "got with a file"
    assert store.healthy and (folder / "state.db").exists()


def test_while_down_a_reminder_at_most_once_a_minute(redis_server: PrivateRedis, caplog) -> None:
    now = [1000.0]
    with caplog.at_level(logging.INFO):
        store = ResilientStore(redis_server.url, probe_every=0.0, clock=lambda: now[0])
        for _ in range(50):
            store.set("k", "v")
            now[0] += 2.0  # 100 s in all
        assert store.get("k") == "v"  # answered locally
    lines = outage_lines(caplog)
    assert len(lines) == 2, [r.getMessage() for r in lines]  # went down, one reminder after 60 s
    assert "still unreachable" in lines[1].getMessage()
    store.close()


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_what_was_kept_during_an_outage_is_copied_back_except_locks(redis_server: PrivateRedis) -> None:
    import redis

    redis_server.start()
    store = ResilientStore(redis_server.url, probe_every=0.1)
    redis_server.kill()
    store.set("cb:app:msg:1", "reply:<xml/>", 600)
    store.set("plugin:notes:k", "kept")
    store.push("longconn:outbox:bot", "frame", 600)
    with store.lock("job-x", wait=0):
        store.set("lock:held", "token", 600)
    assert not store.healthy
    redis_server.start()  # empty
    time.sleep(0.15)
    store.get("anything")  # the probe that finds it back
    assert store.healthy
    store.wait_copied_back()
    direct = redis.Redis(port=redis_server.port, decode_responses=True)
    assert direct.get("cb:app:msg:1") == "reply:<xml/>" and 590 < direct.ttl("cb:app:msg:1") <= 600
    assert direct.get("plugin:notes:k") == "kept" and direct.ttl("plugin:notes:k") == -1
    assert direct.lrange("longconn:outbox:bot", 0, -1) == ["frame"]
    assert direct.get("lock:held") is None  # a lock in one process's memory excluded nobody: not copied
    store.close()


def test_the_store_wins_over_what_was_kept(redis_server: PrivateRedis) -> None:
    import redis

    redis_server.start()
    store = ResilientStore(redis_server.url, probe_every=0.1)
    redis_server.kill()
    store.set("cb:app:msg:2", "running:here:1:0")
    redis_server.start()
    direct = redis.Redis(port=redis_server.port, decode_responses=True)
    direct.set("cb:app:msg:2", "reply:<from another host/>")  # written meanwhile, elsewhere
    time.sleep(0.15)
    store.get("anything")
    store.wait_copied_back()
    assert direct.get("cb:app:msg:2") == "reply:<from another host/>"
    store.close()


def test_a_job_accepted_while_the_store_is_down_runs_in_another_process_once_it_is_back(
        redis_server: PrivateRedis, caplog) -> None:
    redis_server.start()
    accepting = Jobs(ResilientStore(redis_server.url), queue_for(redis_server.url), lambda record: None, lease=1.0)
    redis_server.kill()
    accepting.submit({"kind": "dispatch", "n": 1}, "job-during")  # neither the store nor the queue takes it
    redis_server.start()  # empty
    ran: list[dict] = []
    other = Jobs(ResilientStore(redis_server.url), queue_for(redis_server.url), ran.append, lease=1.0)
    other.start()
    try:
        with caplog.at_level(logging.INFO):
            # The accepting process's heartbeat, at once: its store has not noticed the server is back.
            wait_for(lambda: accepting.flush_spool() == 0)
            wait_for(lambda: ran)
            time.sleep(0.3)
    finally:
        other.stop()
    assert [(r["key"], r["n"]) for r in ran] == [("job-during", 1)]
    assert not [r for r in caplog.records if "no record" in r.getMessage()]


def test_a_job_whose_record_cannot_be_read_is_put_off_not_dropped(redis_server: PrivateRedis, caplog) -> None:
    redis_server.start()
    ran: list[dict] = []
    jobs = Jobs(ResilientStore(redis_server.url, probe_every=0.2), queue_for("memory://"), ran.append, lease=0.5)
    jobs.submit_later({"kind": "dispatch", "n": 2}, delay=0.5)  # its record is in Redis
    redis_server.freeze()
    with caplog.at_level(logging.INFO):
        jobs.start()
        try:
            time.sleep(2.5)  # due, tried, put off (more than once): the store cannot be read
            assert ran == []
            redis_server.thaw()
            wait_for(lambda: ran)
        finally:
            jobs.stop()
    assert [r["n"] for r in ran] == [2]
    assert not [r for r in caplog.records if "no record" in r.getMessage()]
