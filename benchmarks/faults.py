"""Fault run: a stream of messages through gunicorn (2 workers) while something fails.

Every message is sent as WeCom sends it and, when it gets no 200 within 5
seconds, sent again 5 s later, three times at most. Meanwhile:

* ``redis``: the host uses a private redis-server (started here, on its own
  port; never the machine's shared one), which is SIGKILLed, left dead, and
  restarted empty;
* ``redis-stop``: the same private redis-server frozen with SIGSTOP, then
  woken with SIGCONT (requests time out instead of being refused);
* ``sqlite``: the host uses a SQLite store whose files are made immutable
  (``chattr +i``, which stops even root from writing) for a while;
* ``disk-full``: the SQLite store on a small tmpfs of its own, filled up by a
  file that is removed later (needs root to mount; skipped otherwise);
* ``kill-workers``: three gunicorn workers SIGKILLed one after the other
  while the plugin takes a second (so each has callbacks in flight);
* ``api-down``: the plugin takes longer than ``reply_deadline`` (every reply
  is pushed), and the fake WeCom API answers HTTP 500 for half the fault, then
  swallows requests (the client times out after 10 s) for the other half;
  the access tokens expire as it starts, so ``gettoken`` fails too.

While it runs, ``/readyz`` is asked twice a second; the report says how often
it answered 503 during the fault and after it.

Counted per message: plugin runs (a plugin in ``plugins_dir`` appends one line
per run) and replies that reached the user (a passive answer, or a push the
fake WeCom API received). Reported: messages lost (no reply reached the
user), duplicated (plugins ran more than once), 5xx answers, log lines and
tracebacks.

    .venv/bin/python benchmarks/faults.py                    # every scenario
    .venv/bin/python benchmarks/faults.py --scenario redis-stop --messages 400 --rate 20
"""
from __future__ import annotations

import argparse
import errno
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
from wechatbot.testing.redis_server import PrivateRedis  # noqa: E402
from wechatbot.testing.simulator import SimulatedWeCom, http_transport, message_xml  # noqa: E402

RECORDER = '''
import os
import time
from wechatbot import hookimpl

@hookimpl
def handle_message(message, context):
    time.sleep(float(context.config.get("delay", "0")))
    fd = os.open(context.config["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{message.msg_id}\\n".encode())
    os.close(fd)
    return "got " + message.content
'''

RETRY_AFTER = 5.0  # WeCom: 5 s without an answer, then again
RETRIES = 3


class Run:
    """One gunicorn host, one stream of messages, one fault schedule."""

    def __init__(self, tmp: Path, store: str, messages: int, rate: float, delay: float = 0.0,
                 settle: float = 30.0) -> None:
        self.tmp = tmp
        self.messages = messages
        self.rate = rate
        self.settle = settle
        self.fake = FakeWeComAPI().start()
        plugins = tmp / "plugins"
        plugins.mkdir()
        (plugins / "recorder.py").write_text(RECORDER)
        self.runs = tmp / "runs.txt"
        self.sections = app_sections(
            api_base=self.fake.url,
            wechatbot={"store": store, "plugins_dir": str(plugins), "plugins": "recorder", "reply_deadline": "3"},
            **{"plugin:recorder": {"runs": str(self.runs), "delay": str(delay)}},
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
        #: (seconds into the run, /readyz status) twice a second.
        self.readiness: list[tuple[float, int | str]] = []
        self.fault: tuple[float, float] | None = None
        self._polling = threading.Event()

    def poll_readiness(self, started: float) -> None:
        """Ask /readyz twice a second until the report."""
        def poll() -> None:
            while not self._polling.wait(0.5):
                try:
                    status: int | str = requests.get(self.url + "/readyz", timeout=5).status_code
                except requests.RequestException:
                    status = "timeout"
                self.readiness.append((time.monotonic() - started, status))

        threading.Thread(target=poll, daemon=True).start()

    def fault_began(self, started: float, what: str) -> None:
        self.fault = (time.monotonic() - started, float("inf"))
        print(f"  {what} at {self.fault[0]:.0f} s", flush=True)

    def fault_ended(self, started: float, what: str) -> None:
        assert self.fault is not None
        self.fault = (self.fault[0], time.monotonic() - started)
        print(f"  {what} at {self.fault[1]:.0f} s", flush=True)

    def workers(self) -> list[int]:
        """The pids of gunicorn's workers (the master's children)."""
        assert self.process is not None
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    children.append(int(entry))
        return sorted(children)

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
        deadline = time.monotonic() + self.settle  # pushes still on their way
        while time.monotonic() < deadline:
            if len(self.delivered()) >= self.messages:
                break
            time.sleep(0.5)
        if self.fault is not None:  # /readyz asked for a while after the fault too
            time.sleep(max(0.0, started + self.fault[1] + 8 - time.monotonic()))
        runs = Counter(self.runs.read_text().split()) if self.runs.exists() else Counter()
        delivered = self.delivered()
        ids = [str(10**12 + n) for n in range(self.messages)]
        self._polling.set()
        log_text = self.log_path.read_text(errors="replace")
        fault_from, fault_to = self.fault or (0.0, 0.0)
        during = [status for at, status in self.readiness if fault_from + 2 <= at <= fault_to]
        after = [status for at, status in self.readiness if at >= fault_to + 5]
        result = {
            "scenario": name,
            "messages": self.messages,
            "seconds": round(time.monotonic() - started, 1),
            "lost (no reply reached the user)": sum(1 for i in ids if not delivered.get(i)),
            "never reached a plugin": sum(1 for i in ids if not runs.get(i)),
            "the lost ones (first 10)": [i for i in ids if not delivered.get(i)][:10],
            "plugins ran more than once": sum(1 for i in ids if runs.get(i, 0) > 1),
            "replies delivered more than once": sum(1 for i in ids if delivered.get(i, 0) > 1),
            "answers by status": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
            "5xx": sum(v for k, v in self.statuses.items() if isinstance(k, int) and k >= 500),
            "log lines": log_text.count("\n"),
            "warning and error lines": sum(1 for line in log_text.splitlines()
                                           if any(level in line for level in ("WARNING", "ERROR", "CRITICAL"))),
            "warning and error lines by logger": dict(Counter(_logger(line) for line in log_text.splitlines()
                                                            if any(level in line for level in ("WARNING", "ERROR", "CRITICAL")))),
            "tracebacks": log_text.count("Traceback (most recent call last)"),
            "readyz during the fault (from 2 s in)": dict(Counter(str(s) for s in during)),
            "readyz from 5 s after it": dict(Counter(str(s) for s in after)),
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


KEEP = False


def _logger(line: str) -> str:
    """The logger a log line names (gunicorn's own lines: ``gunicorn``)."""
    words = line.split()
    if len(words) > 3 and words[2].startswith("["):
        return words[3].rstrip(":")
    return "gunicorn"


def _cleanup(tmp: Path) -> None:
    if KEEP:
        print(f"  kept {tmp}", flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def _start(run: Run) -> tuple[float, threading.Thread]:
    run.start_host()
    started = time.monotonic()
    run.poll_readiness(started)
    streamer = threading.Thread(target=run.stream)
    streamer.start()
    return started, streamer


def redis_scenario(args: argparse.Namespace, freeze: bool = False) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-faults-"))
    redis = PrivateRedis(tmp)
    redis.start()
    run = Run(tmp, redis.url, args.messages, args.rate)
    try:
        started, streamer = _start(run)
        time.sleep(args.fault_at)
        if freeze:
            redis.freeze()
            run.fault_began(started, "redis frozen (SIGSTOP)")
            time.sleep(args.fault_for)
            redis.thaw()
            run.fault_ended(started, "redis woken (SIGCONT)")
        else:
            redis.kill()
            run.fault_began(started, "redis killed")
            time.sleep(args.fault_for)
            redis.start()
            run.fault_ended(started, "redis restarted empty")
        streamer.join()
        return run.report("redis frozen" if freeze else "redis killed, restarted empty", started)
    finally:
        run.stop_host()
        redis.kill()
        _cleanup(tmp)


def sqlite_scenario(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-faults-"))
    folder = tmp / "var"
    folder.mkdir()
    run = Run(tmp, f"sqlite:///{folder}/state.db", args.messages, args.rate)
    # The database, its WAL and the folder; never the -shm file, which every
    # process maps into memory (an immutable mapped file is a SIGBUS, not an error).
    frozen: list[Path] = []
    try:
        started, streamer = _start(run)
        time.sleep(args.fault_at)
        frozen = [path for path in (folder / "state.db", folder / "state.db-wal", folder) if path.exists()]
        subprocess.run(["chattr", "+i", *map(str, frozen)], check=True)
        run.fault_began(started, "sqlite store made immutable")
        time.sleep(args.fault_for)
        subprocess.run(["chattr", "-i", *map(str, frozen)], check=True)
        run.fault_ended(started, "sqlite store writable again")
        streamer.join()
        return run.report("sqlite made unwritable", started)
    finally:
        subprocess.run(["chattr", "-i", *map(str, frozen)], capture_output=True)
        run.stop_host()
        _cleanup(tmp)


def _fill(path: Path) -> None:
    """Write ``path`` until its filesystem has no room left."""
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        try:  # the last partial megabyte too
            while True:
                filler.write(b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


def disk_full_scenario(args: argparse.Namespace) -> dict | None:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-faults-"))
    folder = tmp / "var"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        _cleanup(tmp)
        print(f"  disk-full skipped: cannot mount a small tmpfs here ({mounted.stderr.strip() or 'mount failed'}; "
              "it needs root)", flush=True)
        return None
    run = Run(tmp, f"sqlite:///{folder}/state.db", args.messages, args.rate)
    filler = folder / "filler"
    try:
        started, streamer = _start(run)
        time.sleep(args.fault_at)
        _fill(filler)
        run.fault_began(started, f"store's filesystem full ({shutil.disk_usage(folder).free} bytes free)")
        time.sleep(args.fault_for)
        filler.unlink()
        run.fault_ended(started, "filler removed")
        streamer.join()
        return run.report("disk full under the sqlite store", started)
    finally:
        run.stop_host()
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        _cleanup(tmp)


def kill_workers_scenario(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-faults-"))
    # The plugin takes a second, so that each killed worker has callbacks in flight.
    run = Run(tmp, f"sqlite:///{tmp}/var/state.db", args.messages, args.rate, delay=1.0)
    try:
        started, streamer = _start(run)
        time.sleep(args.fault_at)
        run.fault_began(started, "first worker to be killed")
        for n in range(3):
            if n:
                time.sleep(args.fault_for / 3)
            workers = run.workers()
            victim = workers[n % len(workers)]
            os.kill(victim, signal.SIGKILL)
            print(f"  worker {victim} SIGKILLed at {time.monotonic() - started:.0f} s", flush=True)
            deadline = time.monotonic() + 30
            while (len(run.workers()) < len(workers) or victim in run.workers()) and time.monotonic() < deadline:
                time.sleep(0.2)  # gunicorn starts its replacement
        run.fault_ended(started, "last worker killed")
        streamer.join()
        return run.report("3 workers SIGKILLed", started)
    finally:
        run.stop_host()
        _cleanup(tmp)


def api_down_scenario(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-faults-"))
    # Every reply is late: the plugin takes longer than reply_deadline (3 s), so each is pushed.
    # At --api-rate (4/s) more wait than 2 workers have request threads: those answer at once, pushed too.
    run = Run(tmp, f"sqlite:///{tmp}/var/state.db", args.api_messages, args.api_rate, delay=3.5, settle=args.settle)
    paths = ("message/send", "gettoken")
    try:
        started, streamer = _start(run)
        time.sleep(args.fault_at)
        run.fake.expire_tokens()
        run.fake.go_down(*paths, status=500)
        run.fault_began(started, "WeCom API answering HTTP 500, tokens expired")
        time.sleep(args.api_down_for / 2)
        run.fake.go_down(*paths, status=None, hang=11.0)
        print(f"  WeCom API swallowing requests (10 s timeouts) at {time.monotonic() - started:.0f} s", flush=True)
        time.sleep(args.api_down_for / 2)
        run.fake.come_back()
        run.fault_ended(started, "WeCom API back")
        streamer.join()
        return run.report(f"WeCom API down {args.api_down_for:.0f} s, every reply pushed", started)
    finally:
        run.stop_host()
        _cleanup(tmp)


SCENARIOS = {
    "redis": redis_scenario,
    "redis-stop": lambda args: redis_scenario(args, freeze=True),
    "sqlite": sqlite_scenario,
    "disk-full": disk_full_scenario,
    "kill-workers": kill_workers_scenario,
    "api-down": api_down_scenario,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], action="append",
                        help="one scenario (repeat for several); default: all")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=15.0, help="new messages per second")
    parser.add_argument("--fault-at", type=float, default=5.0, help="seconds into the stream")
    parser.add_argument("--fault-for", type=float, default=12.0, help="seconds the fault lasts")
    parser.add_argument("--api-down-for", type=float, default=60.0, help="seconds the WeCom API fails (api-down)")
    parser.add_argument("--api-messages", type=int, default=240, help="messages in the api-down scenario")
    parser.add_argument("--api-rate", type=float, default=4.0, help="new messages per second in api-down")
    parser.add_argument("--settle", type=float, default=240.0,
                        help="seconds to wait for the pushes still being retried after the API is back (api-down)")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (log, config, store)")
    args = parser.parse_args()
    global KEEP
    KEEP = args.keep
    chosen = [name for name in args.scenario or [] if name != "all"] or list(SCENARIOS)
    if shutil.which("redis-server") is None and any(name.startswith("redis") for name in chosen):
        sys.exit("the redis scenarios need redis-server (apt-get install redis-server)")
    results = []
    for name in chosen:
        print(f"{name}:", flush=True)
        result = SCENARIOS[name](args)
        if result is not None:
            results.append(result)
            print(json.dumps(result, ensure_ascii=False), flush=True)
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
