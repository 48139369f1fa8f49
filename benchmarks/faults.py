"""Fault run: a stream of messages through gunicorn (2 workers) while the store fails.

Every message is sent as WeCom sends it and, when it gets no 200 within 5
seconds, sent again 5 s later, three times at most. Meanwhile:

* ``redis``: the host uses a private redis-server (started here, on its own
  port; never the machine's shared one), which is SIGKILLed, left dead, and
  restarted empty;
* ``sqlite``: the host uses a SQLite store whose files are made immutable
  (``chattr +i``, which stops even root from writing) for a while.

Counted per message: plugin runs (a plugin in ``plugins_dir`` appends one line
per run) and replies that reached the user (a passive answer, or a push the
fake WeCom API received). Reported: messages lost (no reply reached the
user), duplicated (plugins ran more than once), 5xx answers, log lines and
tracebacks.

    .venv/bin/python benchmarks/faults.py                    # both scenarios
    .venv/bin/python benchmarks/faults.py --scenario redis --messages 400 --rate 20
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
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

from wechatbot.testing import app_sections, free_port, ini_text, wait_until_serving  # noqa: E402
from wechatbot.testing.fake_api import FakeWeComAPI  # noqa: E402
from wechatbot.testing.simulator import SimulatedWeCom, http_transport, message_xml  # noqa: E402

RECORDER = '''
import os
from wechatbot import hookimpl

@hookimpl
def handle_message(message, context):
    fd = os.open(context.config["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{message.msg_id}\\n".encode())
    os.close(fd)
    return "got " + message.content
'''

RETRY_AFTER = 5.0  # WeCom: 5 s without an answer, then again
RETRIES = 3


class PrivateRedis:
    """A redis-server of this script's own, empty at each start."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("the private redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class Run:
    """One gunicorn host, one stream of messages, one fault schedule."""

    def __init__(self, tmp: Path, store: str, messages: int, rate: float) -> None:
        self.tmp = tmp
        self.messages = messages
        self.rate = rate
        self.fake = FakeWeComAPI().start()
        plugins = tmp / "plugins"
        plugins.mkdir()
        (plugins / "recorder.py").write_text(RECORDER)
        self.runs = tmp / "runs.txt"
        self.sections = app_sections(
            api_base=self.fake.url,
            wechatbot={"store": store, "plugins_dir": str(plugins), "plugins": "recorder", "reply_deadline": "3"},
            **{"plugin:recorder": {"runs": str(self.runs)}},
        )
        self.fake.add_app(self.sections["wecom"]["corp_id"], self.sections["wecom"]["secret"],
                          agent_id=self.sections["wecom"]["agent_id"])
        config = tmp / "config.ini"
        config.write_text(ini_text(self.sections))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = tmp / "gunicorn.log"
        self.env = {**os.environ, "WECHATBOT_CONFIG": str(config), "WECHATBOT_BIND": self.url[len("http://"):],
                    "WECHATBOT_WORKERS": "2", "WECHATBOT_ACCESS_LOG": "/dev/null"}
        self.statuses: Counter[int | str] = Counter()
        self.passive: dict[str, int] = Counter()
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def start_host(self) -> None:
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=ROOT,
                                        env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until_serving(self.url, timeout=60)

    def stop_host(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.log.close()
        self.fake.stop()

    def send(self, n: int) -> None:
        """Message ``n`` as WeCom sends it: again after 5 s without a 200, three times at most."""
        wecom = self.sections["wecom"]
        sim = SimulatedWeCom(http_transport(self.url + "/callback", timeout=RETRY_AFTER), wecom["token"],
                             wecom["encoding_aes_key"], wecom["corp_id"], path="")
        msg_id = str(10**12 + n)
        xml = message_xml("text", content=f"m{n}", msg_id=msg_id, to_user=wecom["corp_id"])
        for attempt in range(1 + RETRIES):
            started = time.monotonic()
            try:
                received = sim.post_xml(xml)
            except requests.RequestException:
                status: int | str = "timeout"
                received = None
            else:
                status = received.status
            with self.lock:
                self.statuses[status] += 1
                if received is not None and received.status == 200 and received.content == f"got m{n}":
                    self.passive[msg_id] += 1
            if status == 200:
                return
            time.sleep(max(0.0, RETRY_AFTER - (time.monotonic() - started)))

    def stream(self) -> None:
        with ThreadPoolExecutor(max_workers=64) as pool:
            for n in range(self.messages):
                pool.submit(self.send, n)
                time.sleep(1 / self.rate)

    def report(self, name: str, started: float) -> dict:
        deadline = time.monotonic() + 30  # pushes still on their way
        while time.monotonic() < deadline:
            if len(self.delivered()) >= self.messages:
                break
            time.sleep(0.5)
        runs = Counter(self.runs.read_text().split()) if self.runs.exists() else Counter()
        delivered = self.delivered()
        ids = [str(10**12 + n) for n in range(self.messages)]
        log_text = self.log_path.read_text(errors="replace")
        result = {
            "scenario": name,
            "messages": self.messages,
            "seconds": round(time.monotonic() - started, 1),
            "lost (no reply reached the user)": sum(1 for i in ids if not delivered.get(i)),
            "never reached a plugin": sum(1 for i in ids if not runs.get(i)),
            "plugins ran more than once": sum(1 for i in ids if runs.get(i, 0) > 1),
            "replies delivered more than once": sum(1 for i in ids if delivered.get(i, 0) > 1),
            "answers by status": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
            "5xx": sum(v for k, v in self.statuses.items() if isinstance(k, int) and k >= 500),
            "log lines": log_text.count("\n"),
            "warning and error lines": sum(1 for line in log_text.splitlines()
                                           if any(level in line for level in ("WARNING", "ERROR", "CRITICAL"))),
            "tracebacks": log_text.count("Traceback (most recent call last)"),
            "the warning and error lines": [line[:240] for line in log_text.splitlines()
                                            if any(level in line for level in ("WARNING", "ERROR", "CRITICAL"))][:12],
        }
        return result

    def delivered(self) -> Counter[str]:
        """Per MsgId: passive answers with the reply plus pushes of it."""
        counts = Counter(self.passive)
        by_content = {f"got m{n}": str(10**12 + n) for n in range(self.messages)}
        for sent in self.fake.sent:
            msg_id = by_content.get((sent.get("text") or {}).get("content", ""))
            if msg_id:
                counts[msg_id] += 1
        return counts


def redis_scenario(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-faults-"))
    redis = PrivateRedis(tmp)
    redis.start()
    run = Run(tmp, redis.url, args.messages, args.rate)
    run.start_host()
    started = time.monotonic()
    streamer = threading.Thread(target=run.stream)
    streamer.start()
    try:
        time.sleep(args.fault_at)
        redis.kill()
        print(f"  redis killed at {time.monotonic() - started:.0f} s", flush=True)
        time.sleep(args.fault_for)
        redis.start()
        print(f"  redis restarted empty at {time.monotonic() - started:.0f} s", flush=True)
        streamer.join()
        return run.report("redis killed, restarted empty", started)
    finally:
        run.stop_host()
        redis.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def sqlite_scenario(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-faults-"))
    folder = tmp / "var"
    folder.mkdir()
    run = Run(tmp, f"sqlite:///{folder}/state.db", args.messages, args.rate)
    run.start_host()
    started = time.monotonic()
    streamer = threading.Thread(target=run.stream)
    streamer.start()
    # The database, its WAL and the folder; never the -shm file, which every
    # process maps into memory (an immutable mapped file is a SIGBUS, not an error).
    frozen: list[Path] = []
    try:
        time.sleep(args.fault_at)
        frozen = [path for path in (folder / "state.db", folder / "state.db-wal", folder) if path.exists()]
        subprocess.run(["chattr", "+i", *map(str, frozen)], check=True)
        print(f"  sqlite store made immutable at {time.monotonic() - started:.0f} s", flush=True)
        time.sleep(args.fault_for)
        subprocess.run(["chattr", "-i", *map(str, frozen)], check=True)
        print(f"  sqlite store writable again at {time.monotonic() - started:.0f} s", flush=True)
        streamer.join()
        return run.report("sqlite made unwritable", started)
    finally:
        subprocess.run(["chattr", "-i", *map(str, frozen)], capture_output=True)
        run.stop_host()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["redis", "sqlite", "both"], default="both")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=15.0, help="new messages per second")
    parser.add_argument("--fault-at", type=float, default=5.0, help="seconds into the stream")
    parser.add_argument("--fault-for", type=float, default=12.0, help="seconds the fault lasts")
    args = parser.parse_args()
    if shutil.which("redis-server") is None and args.scenario != "sqlite":
        sys.exit("the redis scenario needs redis-server (apt-get install redis-server)")
    results = []
    if args.scenario in ("redis", "both"):
        results.append(redis_scenario(args))
    if args.scenario in ("sqlite", "both"):
        results.append(sqlite_scenario(args))
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
