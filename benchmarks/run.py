"""Requests per second of the full callback path against a bare Flask endpoint.

    python benchmarks/run.py [--duration 8] [--rounds 5] [--connections 16] [--threads 1]

Both sides run under gunicorn with the project's ``gunicorn.conf.py`` (same
workers, threads and worker class; bound to a free 127.0.0.1 port) and are
driven by the same wrk script with the same request stream:

* ``wechatbot``: ``wsgi:app`` with a fresh config (generated Token and key,
  ``store = sqlite:///<tmp>/bench-N.db``, ``plugins = echo``,
  ``replay_window = 0``). Every request is a distinct, signed, encrypted text
  message, so each one is verified, decrypted, deduplicated (a new key in
  SQLite), answered by echo and encrypted.
* ``bare``: ``benchmarks/bare_app.py``, one POST route returning a constant
  body of the same size.

Each round restarts both servers (the wechatbot one on a new, empty SQLite
file), checks that one callback comes back as an encrypted echo (the run stops
otherwise), warms each side up, then measures them one after the other; the
order alternates between rounds. A side that answers anything but a non-empty
200 during a measurement stops the run. The result is the median requests per
second of each side and their ratio (target: at least 0.85), printed as a
table and as one JSON line starting with ``{``. The gunicorn processes' CPU
time per request is reported beside it: on a busy machine it moves much less
than requests per second do.

No callback repeats within a round: before each measurement the pool of
pre-built callbacks is grown to twice what wechatbot could send at the fastest
rate seen so far (or the warm-up's), and the measurement starts past the
callbacks the warm-up used. Were one to repeat anyway, it would take the retry
path; the count is reported as ``repeats`` with a warning.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from callbacks import Credentials, build_requests, pool_lines, simulator, write_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "requests.lua"
TARGET = 0.85
# How much bigger than the fastest wechatbot rate seen so far the pool is made.
MARGIN = 2.0


@dataclass
class Pool:
    """The file of pre-built callbacks that wrk cycles through, grown on demand."""

    path: Path
    creds: Credentials
    size: int = 0

    def ensure(self, count: int) -> None:
        """Make the pool hold at least ``count`` distinct callbacks."""
        if count <= self.size:
            return
        started = time.perf_counter()
        extra = build_requests(self.creds, count - self.size)
        with self.path.open("ab") as out:
            out.write(pool_lines(extra))
        self.size = count
        print(f"  pool: {self.size} callbacks ({len(extra)} built in {time.perf_counter() - started:.1f} s)", flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One gunicorn process tree serving ``app`` with the project's settings."""

    def __init__(self, name: str, app: str, log: Path, env: dict[str, str] | None = None, extra: list[str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
               "--bind", f"127.0.0.1:{self.port}", *(extra or []), app]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server answers HTTP at all (any status counts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"gunicorn exited with code {self.proc.returncode}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # a 404 for "/" means the app is serving
            except OSError:
                time.sleep(0.1)
        self.fail(f"not answering after {timeout:.0f} s")

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) used so far by gunicorn and its workers; None off Linux.

        Unlike requests per second, CPU time per request barely moves when
        other programs compete for the machine.
        """
        try:
            pids = [self.proc.pid]
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                pids += [int(p) for p in (task / "children").read_text().split()]
            ticks = 0
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            return ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            return None

    def fail(self, reason: str) -> None:
        tail = self.log.read_text(errors="replace").splitlines()[-30:]
        self.stop()
        sys.exit(f"{self.name} server at {self.url}: {reason}\n--- {self.log} (last lines) ---\n" + "\n".join(tail))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class WrkResult:
    """What one wrk run reported (the RESULT line of ``requests.lua``)."""

    requests: int
    duration_us: int
    sent: int
    repeats: int
    bad_status: int
    empty: int
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)


def run_wrk(wrk: str, url: str, pool: Pool, seconds: float, args: argparse.Namespace, offset: int = 0) -> WrkResult:
    """Run wrk against ``url`` with the pool, starting at line ``offset``."""
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "-s", str(LUA), url, "--", str(pool.path), str(args.threads), str(offset)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        sys.exit(f"wrk failed ({out.returncode}): {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    data = json.loads(line[len("RESULT "):])
    errors = {k: data.pop(k) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")}
    return WrkResult(errors=errors, **data)


def check_echo(url: str, creds: Credentials) -> None:
    """Send one real callback; fail loudly unless it comes back as an encrypted echo."""
    from wechatbot.testing.simulator import http_transport

    text = f"benchmark check {time.time_ns()}"
    try:
        got = simulator(creds, http_transport(url)).text(text)
    except Exception as exc:  # a reply that does not decrypt or verify
        sys.exit(f"check failed: the reply to one callback could not be opened: {exc!r}")
    if got.status != 200 or got.content != text:
        sys.exit(f"check failed: expected HTTP 200 with an encrypted echo of {text!r}, "
                 f"got HTTP {got.status}, body {got.body[:300]!r}, decrypted {got.raw!r}")


def check_bare(url: str) -> None:
    """Fail loudly unless the bare app answers a POST with 200."""
    with urllib.request.urlopen(urllib.request.Request(url + "/callback", data=b"<xml/>", method="POST"), timeout=5) as resp:
        if resp.status != 200:
            sys.exit(f"bare app answered HTTP {resp.status}")


def store_rows(db: Path) -> int | None:
    """Rows in the SQLite store after a round (dedup keys among them), if readable."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM wechatbot_kv").fetchone()[0]
    except sqlite3.Error:
        return None


def start(side: str, round_no: int, tmp: Path, creds: Credentials) -> tuple[Server, Path | None]:
    """Start one side under gunicorn; for wechatbot also return its new, empty SQLite file."""
    log = tmp / f"{side}.log"
    if side == "bare":
        return Server(side, "bare_app:app", log, extra=["--pythonpath", str(HERE)]), None
    db = tmp / f"bench-{round_no}.db"
    config = write_config(tmp / f"bench-{round_no}.ini", creds, db)
    return Server(side, "wsgi:app", log, env={"WECHATBOT_CONFIG": str(config)}), db


def measure(side: str, round_no: int, tmp: Path, pool: Pool, wrk: str, args: argparse.Namespace, fastest: float) -> dict:
    """Start one side fresh, check it, warm it up, measure it; return the round's figures.

    ``fastest`` is the best wechatbot rate so far, which sizes the pool.
    """
    server, db = start(side, round_no, tmp, pool.creds)
    try:
        server.wait_ready()
        if side == "wechatbot":
            check_echo(server.url, pool.creds)
            pool.ensure(int(max(fastest, 1000) * args.warmup * MARGIN))
        else:
            check_bare(server.url)
        warm = run_wrk(wrk, server.url, pool, args.warmup, args)
        if side == "wechatbot":
            pool.ensure(warm.sent + int(max(fastest, warm.rps) * args.duration * MARGIN))
        cpu_before = server.cpu_seconds()
        result = run_wrk(wrk, server.url, pool, args.duration, args, offset=warm.sent)
        cpu_after = server.cpu_seconds()
    finally:
        server.stop()

    if result.bad_status or result.empty:
        sys.exit(f"{side} answered {result.bad_status} non-200 and {result.empty} empty responses "
                 f"in round {round_no}: the figures would not measure what they claim; see {server.log}")
    row = {"side": side, "round": round_no, "rps": round(result.rps, 1), "requests": result.requests,
           "repeats": 0, "non_200": result.bad_status, "empty": result.empty, **result.errors}
    if cpu_before is not None and cpu_after is not None:
        row["cpu_us_per_request"] = round((cpu_after - cpu_before) / result.requests * 1e6)
    if side == "wechatbot":
        # Only here do repeats matter: the bare app ignores what it is sent.
        row["repeats"] = result.repeats
        if result.repeats:
            print(f"  warning: {result.repeats} requests repeated a callback and took the retry path", flush=True)
        row["store_rows"] = store_rows(db)
        if row["store_rows"] is not None and row["store_rows"] < result.requests:
            print(f"  note: the store holds {row['store_rows']} rows after {result.requests} callbacks: "
                  "dedup did not record each one", flush=True)
    cpu = f", {row['cpu_us_per_request']} µs server CPU each" if "cpu_us_per_request" in row else ""
    print(f"  round {round_no} {side:9} {result.rps:8.1f} req/s  ({result.requests} requests{cpu})", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds measured per side and round (default 8)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each measuring both sides (default 5)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs, pool)")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-bench-"))
    pool = Pool(tmp / "pool.txt", Credentials.generate())
    pool.path.touch()
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    settings = f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s; gunicorn.conf.py " \
               f"(workers={conf['workers']}, threads={conf['threads']}, {conf['worker_class']})"
    print(f"{settings}; {args.rounds} rounds; temporary files in {tmp}", flush=True)
    pool.ensure(int(1000 * args.warmup * MARGIN))  # the bare side may come first and needs lines too

    rows: list[dict] = []
    fastest = 0.0
    finished = False
    try:
        for n in range(1, args.rounds + 1):
            for side in ("bare", "wechatbot") if n % 2 else ("wechatbot", "bare"):
                rows.append(measure(side, n, tmp, pool, wrk, args, fastest))
                if side == "wechatbot":
                    fastest = max(fastest, rows[-1]["rps"])
        finished = True
    finally:
        if finished and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not finished:
            print(f"kept {tmp} (server logs, configs, pool) for a look", file=sys.stderr)

    summary = summarize(rows, settings)
    print(f"\nbare Flask   {summary['bare_rps']:8.1f} req/s  (median of {args.rounds} rounds)")
    print(f"wechatbot    {summary['wechatbot_rps']:8.1f} req/s")
    met = "met" if summary["ratio"] >= TARGET else "NOT met"
    print(f"ratio        {summary['ratio']:8.3f}  (target {TARGET}: {met}; per round {summary['per_round_ratio']})")
    if summary["cpu_ratio"] is not None:
        print(f"server CPU per request: bare {summary['bare_cpu_us']} µs, wechatbot {summary['wechatbot_cpu_us']} µs "
              f"(ratio {summary['cpu_ratio']:.3f}, steadier when the machine is busy)")
    print(json.dumps(summary))


def summarize(rows: list[dict], settings: str) -> dict:
    """Medians of both sides, their ratio, and every round's figures."""
    def median_of(side: str, key: str) -> float | None:
        values = [r[key] for r in rows if r["side"] == side and key in r]
        return statistics.median(values) if values else None

    bare, ours = median_of("bare", "rps"), median_of("wechatbot", "rps")
    bare_cpu, our_cpu = median_of("bare", "cpu_us_per_request"), median_of("wechatbot", "cpu_us_per_request")
    by_round = {(r["round"], r["side"]): r["rps"] for r in rows}
    rounds = sorted({r["round"] for r in rows})
    return {
        "bare_rps": round(bare, 1), "wechatbot_rps": round(ours, 1), "ratio": round(ours / bare, 3), "target": TARGET,
        "per_round_ratio": [round(by_round[n, "wechatbot"] / by_round[n, "bare"], 3) for n in rounds],
        "bare_cpu_us": bare_cpu, "wechatbot_cpu_us": our_cpu,
        "cpu_ratio": round(bare_cpu / our_cpu, 3) if bare_cpu and our_cpu else None,
        "settings": settings, "repeats": sum(r["repeats"] for r in rows), "rounds": rows,
    }

if __name__ == "__main__":
    main()
