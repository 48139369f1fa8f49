"""wechatbot against the fastest alternatives, side by side, with the same requests.

    python benchmarks/run.py [--rounds 4] [--duration 5] [--warmup 1] [--connections 16] [--sides ...]

Every side runs under gunicorn with 2 workers on a free 127.0.0.1 port and is
driven by the same wrk script (``requests.lua``) through the same pool of
distinct, signed and encrypted text messages (``callbacks.py``):

* ``bare-sync``, ``bare-gthread``: ``bare_app.py``, one Flask POST route
  returning a constant body the size of an encrypted echo reply; gunicorn's
  sync workers, then gthread workers; no access log (gunicorn's default).
* ``seed``: ``seed_app.py``, Tencent's sample ``WXBizMsgCrypt3`` in a Flask
  route, sync workers: verify, decrypt, parse, echo, encrypt.
* ``wechatpy``: ``wechatpy_app.py``, ``wechatpy.enterprise.crypto.WeChatCrypto``
  in a Flask route, sync workers: verify, decrypt, parse, echo, encrypt.
* ``floor-sync``, ``floor-gthread``: ``floor_app.py``, the targets' path
  (verify, decrypt, a SQLite claim shared by both workers, echo, encrypt)
  written as directly as it can be, sync then gthread workers: not an
  alternative anyone runs, but the least any host could spend on that path
  under the same server, so the bounds of what the targets can ask.
* ``wechatbot``: exactly as the README runs it, ``gunicorn wsgi:app`` in the
  project directory (so with ``gunicorn.conf.py``), a config with the default
  SQLite store (a new file each round) and the echo plugin: verify, decrypt,
  dedup (a new key in SQLite), echo, encrypt.

Each round starts every side afresh, one after the other (A B C D E, A B C D
E, ...: only the measured server runs), checks that one callback comes back
as a correctly signed, encrypted echo (the bare route excepted), warms it up,
then measures it. Reported per side, as medians over the rounds: requests per
second, the gunicorn processes' CPU time per request (master and workers,
from /proc: on a busy machine it moves much less than requests per second),
wrk's p50 and p99 latency, and the largest worker's RSS at the end. The CPU
that other programs used meanwhile is shown too, to tell how loaded the
machine was. Then the ratios against the targets, and one JSON line starting
with ``{``.

No callback repeats within a wechatbot measurement: the pool grows to twice
what the fastest side could send, and the measurement starts past what the
warm-up used (``repeats`` counts any that did, which would take the retry path).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from callbacks import CORP_ID, Credentials, build_requests, pool_lines, simulator, write_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "requests.lua"
WORKERS = 2
# Threads per worker for the bare route's gthread run.
BARE_THREADS = 4
# How much bigger than what the fastest side could send the pool is made.
MARGIN = 2.0
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

# Targets for wechatbot (issue: the full path against the fastest alternatives).
TARGET_BARE_RATIO = 0.80
TARGET_SEED_RATIO = 1.2
TARGET_P99_RATIO = 1.5
TARGET_RSS_MIB = 45.0


@dataclass(frozen=True)
class Side:
    """One way of answering the callbacks, and how gunicorn runs it."""

    name: str
    how: str
    view: str
    echoes: bool = True
    # For wechatbot variants: environment settings on top of this script's own.
    env: tuple[tuple[str, str], ...] = ()

    def command(self, gunicorn: str, port: int, round_dir: Path, creds: Credentials) -> tuple[list[str], Path, dict[str, str]]:
        """``(argv, cwd, environment)`` that start this side on ``port``."""
        env = {k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS"}
        env.update(BENCH_TOKEN=creds.token, BENCH_ENCODING_AES_KEY=creds.encoding_aes_key, BENCH_CORP_ID=CORP_ID)
        bind = f"127.0.0.1:{port}"
        if self.name == "wechatbot" or self.env:
            config = write_config(round_dir / f"{self.name}.ini", creds, round_dir / f"{self.name}.db")
            env.update(WECHATBOT_CONFIG=str(config), WECHATBOT_BIND=bind, **dict(self.env))
            return [gunicorn, "wsgi:app"], ROOT, env
        args = {
            "bare-sync": ["-w", str(WORKERS), "-k", "sync", "bare_app:app"],
            "bare-gthread": ["-w", str(WORKERS), "-k", "gthread", "--threads", str(BARE_THREADS), "bare_app:app"],
            "seed": ["-w", str(WORKERS), "seed_app:app"],
            "wechatpy": ["-w", str(WORKERS), "wechatpy_app:app"],
            "floor-sync": ["-w", str(WORKERS), "-k", "sync", "floor_app:app"],
            "floor-gthread": ["-w", str(WORKERS), "-k", "gthread", "--threads", str(BARE_THREADS), "floor_app:app"],
        }[self.name]
        if self.name in FLOOR_SIDES:
            env["BENCH_FLOOR_DB"] = str(round_dir / f"{self.name}.db")
        # Run from benchmarks/, which holds no gunicorn.conf.py: gunicorn's defaults apply.
        return [gunicorn, "--bind", bind, *args], HERE, env


SIDES = {side.name: side for side in (
    Side("bare-sync", f"bare_app:app, gunicorn -w {WORKERS} -k sync, no access log",
         "returns a constant body of an encrypted reply's size", echoes=False),
    Side("bare-gthread", f"bare_app:app, gunicorn -w {WORKERS} -k gthread --threads {BARE_THREADS}, no access log",
         "returns a constant body of an encrypted reply's size", echoes=False),
    Side("seed", f"seed_app:app, gunicorn -w {WORKERS} (sync), no access log",
         "WXBizMsgCrypt3 (weworkapi-cfomp): verify, decrypt, ElementTree, echo, encrypt"),
    Side("wechatpy", f"wechatpy_app:app, gunicorn -w {WORKERS} (sync), no access log",
         "wechatpy WeChatCrypto: verify, decrypt, parse_message, echo, encrypt"),
    Side("floor-sync", f"floor_app:app, gunicorn -w {WORKERS} -k sync, no access log",
         "the targets' path at its most direct: verify, decrypt, SQLite claim, echo, encrypt"),
    Side("floor-gthread", f"floor_app:app, gunicorn -w {WORKERS} -k gthread --threads {BARE_THREADS}, no access log",
         "the same"),
    Side("wechatbot", "gunicorn wsgi:app with gunicorn.conf.py (as the README runs it)",
         "verify, decrypt, parse, dedup in SQLite, echo plugin, encrypt"),
)}
BARE_SIDES = ("bare-sync", "bare-gthread")
FLOOR_SIDES = ("floor-sync", "floor-gthread")


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


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICK


def children_cpu_seconds() -> float:
    """CPU seconds of this script's finished children (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Server:
    """One gunicorn process tree serving one side."""

    def __init__(self, side: Side, gunicorn: str, round_dir: Path, creds: Credentials) -> None:
        self.side = side
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = round_dir / f"{side.name}.log"
        cmd, cwd, env = side.command(gunicorn, self.port, round_dir, creds)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every worker is up and the server answers HTTP (any status counts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"gunicorn exited with code {self.proc.returncode}")
            if len(self.workers()) >= WORKERS:
                try:
                    urllib.request.urlopen(self.url + "/", timeout=1).close()
                    return
                except urllib.error.HTTPError:
                    return  # a 404 or 405 for "/" means the app is serving
                except OSError:
                    pass
            time.sleep(0.1)
        self.fail(f"not answering after {timeout:.0f} s")

    def workers(self) -> list[int]:
        """The process ids of gunicorn's workers (the master's children)."""
        pids: list[int] = []
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
        return pids

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the master and its workers."""
        ticks = 0
        for pid in [self.proc.pid, *self.workers()]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / CLOCK_TICK

    def context_switches(self) -> int:
        """Context switches so far of every thread of the master and its workers."""
        total = 0
        for pid in [self.proc.pid, *self.workers()]:
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                try:
                    status = (task / "status").read_text()
                except OSError:
                    continue
                total += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)
        return total

    def worker_rss_mib(self) -> float:
        """The largest worker's resident set size, in MiB."""
        sizes = []
        for pid in self.workers():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            sizes.append(kib / 1024)
        return max(sizes, default=0.0)

    def fail(self, reason: str) -> None:
        tail = self.log.read_text(errors="replace").splitlines()[-30:]
        self.stop()
        sys.exit(f"{self.side.name} server at {self.url}: {reason}\n--- {self.log} (last lines) ---\n" + "\n".join(tail))

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
    p50_us: int
    p99_us: int
    max_us: int
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)


def run_wrk(wrk: str, url: str, pool: Pool, seconds: float, args: argparse.Namespace, offset: int = 0) -> WrkResult:
    """Run wrk against ``url`` with the pool, starting at line ``offset``."""
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
           "-s", str(LUA), url, "--", str(pool.path), str(args.threads), str(offset)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        sys.exit(f"wrk failed ({out.returncode}): {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    data = json.loads(line[len("RESULT "):])
    errors = {k: data.pop(k) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")}
    return WrkResult(errors=errors, **data)


def check_echo(server: Server, creds: Credentials) -> None:
    """Send one real callback; fail unless it comes back as a signed, encrypted echo."""
    from wechatbot.testing.simulator import http_transport

    text = f"benchmark check {time.time_ns()}"
    try:
        got = simulator(creds, http_transport(server.url)).text(text, to_user=CORP_ID)
    except Exception as exc:  # a reply that does not verify or decrypt
        server.fail(f"check failed: the reply to one callback could not be opened: {exc!r}")
    if got.status != 200 or got.content != text:
        server.fail(f"check failed: expected HTTP 200 with an encrypted echo of {text!r}, "
                    f"got HTTP {got.status}, body {got.body[:300]!r}, decrypted {got.raw!r}")


def check_bare(server: Server) -> None:
    """Fail unless the bare route answers a POST with 200."""
    request = urllib.request.Request(server.url + "/callback", data=b"<xml/>", method="POST")
    with urllib.request.urlopen(request, timeout=5) as resp:
        if resp.status != 200:
            server.fail(f"answered HTTP {resp.status}")


def measure(side: Side, round_no: int, tmp: Path, pool: Pool, gunicorn: str, wrk: str,
            args: argparse.Namespace, fastest: float) -> dict:
    """Start one side fresh, check it, warm it up, measure it; return the round's figures.

    ``fastest`` is the best rate seen so far on any side, which sizes the pool.
    """
    round_dir = tmp / f"round-{round_no}"
    round_dir.mkdir(exist_ok=True)
    server = Server(side, gunicorn, round_dir, pool.creds)
    try:
        server.wait_ready()
        check_echo(server, pool.creds) if side.echoes else check_bare(server)
        pool.ensure(int(max(fastest, 2000) * (args.warmup + args.duration) * MARGIN))
        warm = run_wrk(wrk, server.url, pool, args.warmup, args)
        pool.ensure(warm.sent + int(max(fastest, warm.rps) * args.duration * MARGIN))
        switches_before = server.context_switches()
        cpu_before, busy_before, wrk_before = server.cpu_seconds(), machine_busy_seconds(), children_cpu_seconds()
        result = run_wrk(wrk, server.url, pool, args.duration, args, offset=warm.sent)
        cpu_after, busy_after, wrk_after = server.cpu_seconds(), machine_busy_seconds(), children_cpu_seconds()
        switches = server.context_switches() - switches_before
        rss = server.worker_rss_mib()
    finally:
        server.stop()

    if result.bad_status or result.empty:
        sys.exit(f"{side.name} answered {result.bad_status} non-200 and {result.empty} empty responses "
                 f"in round {round_no}: the figures would not measure what they claim; see {server.log}")
    seconds = result.duration_us / 1e6
    server_cpu = cpu_after - cpu_before
    others = (busy_after - busy_before) - server_cpu - (wrk_after - wrk_before)
    row = {
        "side": side.name, "round": round_no, "rps": round(result.rps, 1), "requests": result.requests,
        "cpu_us_per_request": round(server_cpu / result.requests * 1e6),
        "switches_per_request": round(switches / result.requests, 1),
        "p50_ms": round(result.p50_us / 1000, 2), "p99_ms": round(result.p99_us / 1000, 2),
        "max_ms": round(result.max_us / 1000, 1), "rss_mib": round(rss, 1),
        "others_cores": round(max(0.0, others) / seconds, 2), "repeats": result.repeats, **result.errors,
    }
    if side.name == "wechatbot" and result.repeats:
        print(f"  warning: {result.repeats} requests repeated a callback and took the retry path", flush=True)
    print(f"  round {round_no} {side.name:12} {row['rps']:8.1f} req/s  {row['cpu_us_per_request']:5d} µs CPU/req  "
          f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  RSS {row['rss_mib']:5.1f} MiB  "
          f"(others used {row['others_cores']:.2f} cores)", flush=True)
    return row


def summarize(rows: list[dict], sides: list[str], settings: str) -> dict:
    """Medians per side, the ratios against the targets, and every round's figures."""
    def median_of(side: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["side"] == side)

    keys = ("rps", "cpu_us_per_request", "switches_per_request", "p50_ms", "p99_ms", "rss_mib", "others_cores")
    medians = {side: {key: median_of(side, key) for key in keys} for side in sides}
    summary: dict = {"settings": settings, "medians": medians}
    bares = [s for s in BARE_SIDES if s in medians]
    if bares:
        summary["fastest_bare"] = max(bares, key=lambda s: medians[s]["rps"])
    ours = medians.get("wechatbot")
    targets = {}
    if ours and bares:
        bare = medians[summary["fastest_bare"]]
        targets["rps_vs_bare"] = (round(ours["rps"] / bare["rps"], 3), TARGET_BARE_RATIO, ">=")
        targets["p99_vs_bare"] = (round(ours["p99_ms"] / bare["p99_ms"], 2), TARGET_P99_RATIO, "<=")
    if ours and "seed" in medians:
        targets["rps_vs_seed"] = (round(ours["rps"] / medians["seed"]["rps"], 3), TARGET_SEED_RATIO, ">=")
    if ours:
        targets["rss_mib"] = (ours["rss_mib"], TARGET_RSS_MIB, "<=")
    floors = [s for s in FLOOR_SIDES if s in medians]
    if floors:
        # What the targets' path allows at all: the most direct host of it against the same yardsticks.
        summary["fastest_floor"] = max(floors, key=lambda s: medians[s]["rps"])
        floor = medians[summary["fastest_floor"]]
        summary["floor_ratios"] = {
            key: round(floor["rps"] / medians[other]["rps"], 3)
            for key, other in (("rps_vs_bare", summary.get("fastest_bare")), ("rps_vs_seed", "seed"))
            if other in medians
        }
        if ours:
            summary["floor_ratios"]["wechatbot_rps_vs_floor"] = round(ours["rps"] / floor["rps"], 3)
    summary["targets"] = {
        name: {"value": value, "target": target, "met": value >= target if op == ">=" else value <= target}
        for name, (value, target, op) in targets.items()
    }
    # The same comparisons in CPU time per request (other side's ÷ ours): steadier on a busy machine.
    if ours:
        summary["cpu_ratios"] = {
            other: round(medians[other]["cpu_us_per_request"] / ours["cpu_us_per_request"], 3)
            for other in ([summary["fastest_bare"]] if bares else []) + (["seed"] if "seed" in medians else [])
        }
    summary["rounds"] = rows
    return summary


def print_table(summary: dict, rounds: int) -> None:
    medians = summary["medians"]
    print(f"\nMedians of {rounds} rounds ({summary['settings']}):\n")
    print(f"{'side':13} {'req/s':>8} {'CPU/req':>9} {'p50':>8} {'p99':>8} {'RSS/worker':>11} {'others':>7}  how it ran; what its view does")
    for name, m in medians.items():
        side = SIDES[name]
        print(f"{name:13} {m['rps']:8.0f} {m['cpu_us_per_request']:6.0f} µs {m['p50_ms']:5.2f} ms {m['p99_ms']:5.2f} ms "
              f"{m['rss_mib']:7.1f} MiB {m['others_cores']:5.2f}c  {side.how}; {side.view}")
    if summary.get("fastest_bare"):
        print(f"\nfastest bare route: {summary['fastest_bare']}")
    labels = {
        "rps_vs_bare": "wechatbot req/s ÷ fastest bare route's",
        "rps_vs_seed": "wechatbot req/s ÷ seed view's",
        "p99_vs_bare": "wechatbot p99 ÷ fastest bare route's",
        "rss_mib": "wechatbot RSS per worker (MiB)",
    }
    for name, t in summary["targets"].items():
        op = "≤" if name in ("p99_vs_bare", "rss_mib") else "≥"
        print(f"{labels[name]:42} {t['value']:7.2f}   target {op} {t['target']:g}: {'met' if t['met'] else 'NOT met'}")
    floor_labels = {
        "rps_vs_bare": "floor req/s ÷ fastest bare route's",
        "rps_vs_seed": "floor req/s ÷ seed view's",
        "wechatbot_rps_vs_floor": "wechatbot req/s ÷ floor's",
    }
    if summary.get("fastest_floor"):
        print(f"\nfastest floor: {summary['fastest_floor']} (the least the targets' path can cost)")
    for name, ratio in summary.get("floor_ratios", {}).items():
        print(f"{floor_labels[name]:42} {ratio:7.2f}")
    for other, ratio in summary.get("cpu_ratios", {}).items():
        label = f"CPU per request: {other}'s ÷ wechatbot's"
        print(f"{label:42} {ratio:7.2f}   (the same comparison in server CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds, each measuring every side (default 4)")
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per side and round (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up before each measurement (default 1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--sides", nargs="+", choices=list(SIDES), default=list(SIDES),
                        help="the sides to run, in this order each round (default: all)")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "VAR=VALUE"),
                        help="also run wechatbot as NAME with these environment settings, e.g. "
                             "--variant nolog WECHATBOT_ACCESS_LOG= (GUNICORN_CMD_ARGS overrides gunicorn.conf.py)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs, pool)")
    args = parser.parse_args()

    for name, *assignments in args.variant:
        if name in SIDES or not all("=" in a for a in assignments):
            parser.error(f"--variant {name}: a new name, then VAR=VALUE settings")
        env = tuple(tuple(a.split("=", 1)) for a in assignments)
        SIDES[name] = Side(name, "gunicorn wsgi:app with " + " ".join(assignments), "as wechatbot", env=env)  # type: ignore[arg-type]
        args.sides.append(name)
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is not installed: apt-get install wrk (Debian/Ubuntu)")
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    if not os.path.exists(gunicorn):
        sys.exit(f"no gunicorn beside {sys.executable}: run make bench (pip install -e '.[bench]')")
    if any(s in args.sides for s in ("seed", "wechatpy")):
        missing = [m for m in ("wework_callback", "wechatpy") if not _importable(m)]
        if missing:
            sys.exit(f"missing {', '.join(missing)}: pip install -e '.[bench]' (make bench does)")
    tmp = Path(tempfile.mkdtemp(prefix="wechatbot-bench-"))
    pool = Pool(tmp / "pool.txt", Credentials.generate())
    pool.path.touch()
    load = os.getloadavg()
    settings = (f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, {WORKERS} workers each, "
                f"{os.cpu_count()} cores, load average at start {load[0]:.2f}")
    print(f"{settings}; {args.rounds} rounds of {', '.join(args.sides)}; temporary files in {tmp}", flush=True)

    rows: list[dict] = []
    fastest = 0.0
    finished = False
    try:
        for n in range(1, args.rounds + 1):
            for name in args.sides:
                rows.append(measure(SIDES[name], n, tmp, pool, gunicorn, wrk, args, fastest))
                fastest = max(fastest, rows[-1]["rps"])
        finished = True
    finally:
        if finished and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp} (server logs, configs, pool)", file=sys.stderr)

    summary = summarize(rows, args.sides, settings)
    summary["load_average_end"] = round(os.getloadavg()[0], 2)
    print_table(summary, args.rounds)
    print(json.dumps(summary))


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
