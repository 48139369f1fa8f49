"""A SQLite store's folder taken away at run time, under a real gunicorn with 2 workers.

It is an outage, not a reason to start a fresh empty database: callbacks are
still answered, /readyz says 503, each worker says so in one line (with what
to do), no folder or file is made anew (not even by a worker started to
replace a dead one), and once the folder is back the store is used again
with what it held, and what was kept meanwhile copied into it.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import requests

from wechatbot.testing import app_sections, ini_text
from wechatbot.testing.gunicorn import Gunicorn
from wechatbot.testing.simulator import SimulatedWeCom, http_transport, message_xml

ROOT = Path(__file__).resolve().parent.parent


def readyz(url: str) -> int:
    return requests.get(url + "/readyz", timeout=10).status_code


def until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def keys(db: Path, like: str) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM wechatbot_kv WHERE key LIKE ?", (like,))}


def test_a_store_folder_moved_away_is_an_outage_until_it_is_back(tmp_path: Path) -> None:
    folder, away = tmp_path / "var", tmp_path / "var-away"
    sections = app_sections(wechatbot={"store": f"sqlite:///{folder}/state.db", "plugins": "echo"})
    config = tmp_path / "config.ini"
    config.write_text(ini_text(sections))
    try:
        host = Gunicorn(ROOT, config, tmp_path / "gunicorn.log", workers=2)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    app = sections["wecom"]
    wecom = SimulatedWeCom(http_transport(host.url + "/callback"), app["token"], app["encoding_aes_key"], app["corp_id"],
                           path="")

    def say(text: str, msg_id: str) -> str:
        answer = wecom.post_xml(message_xml("text", content=text, msg_id=msg_id, to_user=app["corp_id"]))
        assert answer.status == 200, answer
        return answer.content

    try:
        until(lambda: host.log_text().count("endpoint [wecom]") == 2)  # both workers have opened the store
        assert say("before", "100") == "before"
        assert readyz(host.url) == 200
        folder.rename(away)  # as good as removed, from where the store looks

        answers = []
        for n in range(12):  # a second's worth and more, through both workers
            answers.append(say(f"during {n}", str(200 + n)))
            time.sleep(0.2)
        assert answers == [f"during {n}" for n in range(12)]
        until(lambda: all(readyz(host.url) == 503 for _ in range(6)))
        assert not folder.exists(), "a fresh store was started where the old one was"

        dead = host.worker_pids()[0]
        os.kill(dead, signal.SIGKILL)  # its replacement starts while the folder is away
        until(lambda: len(host.worker_pids()) == 2 and dead not in host.worker_pids())
        until(lambda: host.log_text().count("endpoint [wecom]") == 3)
        assert [say(f"still answered {n}", str(300 + n)) for n in range(6)] == [f"still answered {n}" for n in range(6)]
        assert not folder.exists(), "a worker started during the outage began a fresh store"
        until(lambda: all(readyz(host.url) == 503 for _ in range(6)))

        away.rename(folder)
        until(lambda: all(readyz(host.url) == 200 for _ in range(6)))
        assert say("after", "400") == "after"
        n = iter(range(500, 600))
        # Each worker finds the store back on its next call (keep calling until both have).
        until(lambda: say("and after", str(next(n))) and host.log_text().count("is back after") == 2)
        time.sleep(1.0)  # the copy back, and the batched answer records
    finally:
        host.stop()
    log = (tmp_path / "gunicorn.log").read_text(errors="replace")
    down = [line for line in log.splitlines() if "wechatbot.store" in line and "unreachable" in line]
    assert 2 <= len(down) <= 3, down  # one line per worker: the two that noticed, and the one started meanwhile
    assert all("was removed while" in line and "put the folder and file back" in line for line in down), down
    assert len([line for line in log.splitlines() if "is back after" in line]) == 2  # one per live worker
    assert "Traceback" not in log
    db = folder / "state.db"
    assert keys(db, "cb:%msg:100"), "what the store held before is gone"
    assert keys(db, "cb:%msg:400")
    assert keys(db, "cb:%msg:2%"), "the marks kept during the outage were not copied back"
