"""Load run: slow clients and a burst of callbacks through gunicorn (2 workers, gunicorn.conf.py).

WeCom waits 5 s for an answer. Two scenarios:

* ``slow``: ``--slow-clients`` connections that never finish their request
  (half trickle their headers a byte at a time, half stall their body; one
  the host closes comes back at once, see ``wechatbot.testing.slow_clients``)
  while ``--probes`` callbacks are sent as WeCom sends them, 0.5 s apart;
  reported: probes answered 200 with their reply within 5 s, their
  latencies, what the slow clients were told;
* ``burst``: ``--burst`` distinct callbacks sent at once, each on its own
  connection, to a plugin that sleeps ``--plugin-seconds``; reported:
  answers within 5 s of being sent, the slowest, replies answered or
  pushed (once each), plugin runs, and when the last reply was delivered.

``--worker-class gthread`` runs them with gunicorn's own threaded worker
instead of gunicorn.conf.py's, for comparison.

    .venv/bin/python benchmarks/load.py                       # both
    .venv/bin/python benchmarks/load.py --scenario burst --burst 500 --store redis://127.0.0.1:6379/5
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wechatbot.testing import app_sections, ini_text  # noqa: E402
from wechatbot.testing.fake_api import FakeWeComAPI  # noqa: E402
from wechatbot.testing.gunicorn import Gunicorn  # noqa: E402
from wechatbot.testing.simulator import SimulatedWeCom, http_transport, message_xml  # noqa: E402
from wechatbot.testing.slow_clients import SlowClients  # noqa: E402

SLEEPER = '''
import os
import time
from wechatbot import hookimpl

@hookimpl
def handle_message(message, context):
    fd = os.open(context.config["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{message.content}\\n".encode())
    os.close(fd)
    if message.content.startswith("sleep"):
        time.sleep(float(context.config["seconds"]))
    return "got " + message.content
'''


class LoadRun:
    """gunicorn (2 workers, gunicorn.conf.py) with a plugin that sleeps for "sleep ..." messages."""

    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.fake = FakeWeComAPI().start()
        plugins = tmp / "plugins"
        plugins.mkdir()
        (plugins / "sleeper.py").write_text(SLEEPER)
        self.runs = tmp / "runs.txt"
        self.runs.touch()
        sections = app_sections(
            api_base=self.fake.url,
            wechatbot={"store": args.store or f"sqlite:///{tmp}/state.db", "plugins_dir": str(plugins), "plugins": "sleeper"},
            **{"plugin:sleeper": {"runs": str(self.runs), "seconds": str(args.plugin_seconds)}},
        )
        self.fake.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
        config = tmp / "config.ini"
        config.write_text(ini_text(sections))
        env = {"WECHATBOT_ACCESS_LOG": "/dev/null"}
        if args.worker_class:
            env["GUNICORN_CMD_ARGS"] = f"--worker-class {args.worker_class}"
        self.gunicorn = Gunicorn(ROOT, config, tmp / "gunicorn.log", workers=2, env=env)
        until = time.monotonic() + 60
        while self.gunicorn.log_text().count("wechatbot: endpoint [wecom]") < 2 and time.monotonic() < until:
            time.sleep(0.1)  # both workers up: the load reaches both
        wecom = sections["wecom"]
        self.wecom = SimulatedWeCom(http_transport(self.gunicorn.url + "/callback"), wecom["token"],
                                    wecom["encoding_aes_key"], wecom["corp_id"], path="")

    def post(self, content: str, from_user: str = "zhangsan") -> tuple[int | str, float, str]:
        """One callback on a connection of its own: status (or "timeout"), seconds, body."""
        query, body = self.wecom.signed_request(message_xml("text", content=content, from_user=from_user))
        started = time.monotonic()
        try:
            response = requests.post(self.gunicorn.url + "/callback" + query, data=body, timeout=30,
                                     headers={"Connection": "close"})
        except requests.RequestException:
            return "timeout", time.monotonic() - started, ""
        return response.status_code, time.monotonic() - started, response.text

    def stop(self) -> None:
        self.gunicorn.stop()
        self.fake.stop()


def _log_summary(run: LoadRun) -> dict:
    text = run.gunicorn.log_text()
    warnings = [line for line in text.splitlines() if any(level in line for level in ("WARNING", "ERROR", "CRITICAL"))]
    kinds = Counter(re.sub(r"\d+", "N", line.split("]: ", 1)[-1])[:140] for line in warnings)
    return {"log lines": text.count("\n"), "warning and error lines": len(warnings),
            "tracebacks": text.count("Traceback (most recent call last)"), "the warnings, by kind": dict(kinds.most_common(12))}


def slow_scenario(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-load-"))
    run = LoadRun(tmp, args)
    try:
        with SlowClients(run.gunicorn.url, count=args.slow_clients) as slow:
            time.sleep(1.0)
            probes = []
            for i in range(args.probes):
                status, took, text = run.post(f"probe {i}")
                ok = status == 200 and text and run.wecom.open_reply(text)["Content"] == f"got probe {i}"
                probes.append((bool(ok), took))
                time.sleep(0.5)
            opened, statuses = slow.opened, dict(slow.statuses)
        latencies = sorted(took for _, took in probes)
        return {
            "scenario": f"{args.slow_clients} slow clients", "worker class": args.worker_class or "gunicorn.conf.py's",
            "probes answered 200 with the reply within 5 s": f"{sum(ok and took < 5 for ok, took in probes)} of {len(probes)}",
            "probe latency median, max (s)": [round(latencies[len(latencies) // 2], 3), round(latencies[-1], 3)],
            "slow connections opened": opened, "slow connections closed by the host, by answer": statuses,
            **_log_summary(run),
        }
    finally:
        run.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def burst_scenario(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-load-"))
    run = LoadRun(tmp, args)
    try:
        users = [f"user{i}" for i in range(args.burst)]
        barrier = threading.Barrier(len(users))

        def send(user: str) -> tuple[int | str, float, str]:
            barrier.wait(30)
            return run.post("sleep for " + user, from_user=user)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(users)) as pool:
            answers = list(pool.map(send, users))
        in_time = sum(1 for status, took, _ in answers if status == 200 and took < 5)
        passive = {u for u, (status, _, text) in zip(users, answers) if status == 200 and text
                   and run.wecom.open_reply(text)["Content"] == "got sleep for " + u}
        until = time.monotonic() + args.plugin_seconds * len(users) / 8 + 60
        while time.monotonic() < until and len({m["touser"] for m in run.fake.sent} | passive) < len(users):
            time.sleep(0.5)
        pushed_at = time.monotonic() - started
        time.sleep(2)
        pushes = Counter(m["touser"] for m in run.fake.sent)
        runs = Counter(run.runs.read_text().splitlines())
        return {
            "scenario": f"burst of {len(users)} callbacks, plugin sleeps {args.plugin_seconds:g} s",
            "worker class": args.worker_class or "gunicorn.conf.py's",
            "answered 200 within 5 s": f"{in_time} of {len(users)}",
            "slowest answer (s)": round(max(took for _, took, _ in answers), 3),
            "answers by status": dict(Counter(str(status) for status, _, _ in answers)),
            "answered with the reply": len(passive),
            "replies pushed": sum(1 for u in users if pushes[u]),
            "lost (neither)": sum(1 for u in users if not pushes[u] and u not in passive),
            "delivered more than once": sum(1 for u in users if pushes[u] + (u in passive) > 1),
            "plugin ran more than once": sum(1 for count in runs.values() if count > 1),
            "plugin runs": sum(runs.values()),
            "all delivered after (s)": round(pushed_at, 1),
            **_log_summary(run),
        }
    finally:
        run.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["slow", "burst", "both"], default="both")
    parser.add_argument("--slow-clients", type=int, default=300)
    parser.add_argument("--probes", type=int, default=20, help="callbacks sent among the slow clients")
    parser.add_argument("--burst", type=int, default=200, help="callbacks sent at once")
    parser.add_argument("--plugin-seconds", type=float, default=20.0, help="how long the burst's plugin takes")
    parser.add_argument("--store", default="", help="the host's store (default: a fresh SQLite file)")
    parser.add_argument("--worker-class", default="", help="instead of gunicorn.conf.py's (gthread, to compare)")
    args = parser.parse_args()
    results = []
    if args.scenario in ("slow", "both"):
        results.append(slow_scenario(args))
    if args.scenario in ("burst", "both"):
        results.append(burst_scenario(args))
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
