"""Where one callback's time goes, in microseconds, without HTTP in the way.

    python benchmarks/profile_callback.py [--requests 2000] [--repeat 3] [--top 25]

Builds the app exactly as ``benchmarks/run.py`` serves it (SQLite store in a
temporary directory, echo, ``replay_window = 0``) and pre-builds distinct
signed callbacks, then reports, all in one thread of one process:

1. the whole WSGI call per request, ours and the bare Flask app's (the
   difference is what wechatbot adds on top of Flask), and ``Pipeline.callback``
   alone;
2. each stage on its own: envelope, signature, decrypt, message parsing,
   delivery (and its parts: the dedup writes, the hand-off to the plugin
   thread pool, plugin dispatch, reply XML), encryption;
3. a cProfile of the WSGI calls: the functions with the most own time.

Times are CPU time of this process (all its threads), the best of
``--repeat`` runs, so that other programs on the machine disturb them little;
CPU is what bounds requests per second once the server is saturated. They
leave out what gunicorn adds (HTTP parsing, the access log, switching between
its threads), which the bare app pays too.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

from werkzeug.test import EnvironBuilder

from callbacks import Credentials, build_requests, write_config


def environ_for(target: str, body: bytes) -> dict:
    """A WSGI environ for one POSTed callback (its body stream unread)."""
    return EnvironBuilder(path=target, method="POST", data=body, content_type="text/xml").get_environ()


def call_wsgi(app: Any, environ: dict) -> bytes:
    """Run one request through the WSGI app as a server would; return the body."""
    status: list[str] = []
    chunks = app(environ, lambda s, h, e=None: status.append(s))
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    if not status or not status[0].startswith("200") or not body:
        sys.exit(f"the app answered {status} {body[:200]!r}: not the full path")
    return body


def per_call_us(fn: Callable[[Any], Any], items: Iterable[Any]) -> float:
    """Mean CPU microseconds (this process, all threads) of ``fn(item)`` over ``items``."""
    items = list(items)
    started = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - started) / len(items) * 1e6


def best_us(fn: Callable[[Any], Any], batches: list[list[Any]]) -> float:
    """The lowest :func:`per_call_us` over several batches (the least disturbed run)."""
    return min(per_call_us(fn, batch) for batch in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="distinct callbacks per run (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement, the best kept (default 3)")
    parser.add_argument("--top", type=int, default=25, help="functions shown from the profile (default 25)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wechatbot-profile-") as tmp:
        profile(args, Path(tmp))


def profile(args: argparse.Namespace, tmp: Path) -> None:
    """Measure and print everything, with the app's files under ``tmp``."""
    n, repeat = args.requests, args.repeat

    from bare_app import app as bare
    from wechatbot import create_app
    from wechatbot.wecom.crypto import parse_envelope
    from wechatbot.dispatch import first_reply
    from wechatbot.wecom.messages import parse_message
    from wechatbot.wecom.replies import TextReply

    creds = Credentials.generate()
    app = create_app(write_config(tmp / "bench.ini", creds, tmp / "bench.db"))
    host = app.extensions["wechatbot"]
    bot = host.endpoints[""]
    print(f"building {(3 * repeat + 3) * n} callbacks ...", flush=True)

    def fresh_envs() -> list[dict]:
        return [environ_for(t, b) for t, b in build_requests(creds, n)]

    def fresh_args() -> list[tuple]:
        return [(body, *split_query(target)) for target, body in build_requests(creds, n)]

    wsgi_batches = [fresh_envs() for _ in range(repeat + 1)]
    handle_batches = [fresh_args() for _ in range(repeat)]
    profile_envs, stage_args = fresh_envs(), fresh_args()

    per_call_us(lambda e: call_wsgi(app, e), wsgi_batches[0])  # warm-up: imports, connections, caches
    per_call_us(lambda e: call_wsgi(bare, e), wsgi_batches[0])
    ours = best_us(lambda e: call_wsgi(app, e), wsgi_batches[1:])
    plain = best_us(lambda e: call_wsgi(bare, e), wsgi_batches[1:])
    handle = best_us(lambda a: host.pipeline.callback(bot, *a), handle_batches)
    print(f"\nCPU µs per request (best of {repeat} runs of {n}):")
    print(f"  wechatbot WSGI call      {ours:7.1f}")
    print(f"  bare Flask WSGI call     {plain:7.1f}")
    print(f"  added by wechatbot       {ours - plain:7.1f}")
    print(f"  Pipeline.callback        {handle:7.1f}  (of the added)")

    # Each stage alone, in the order the path runs them, on data prepared from fresh callbacks.
    bodies = [a[0] for a in stage_args]
    encrypted = [parse_envelope(b) for b in bodies]
    plaintexts = [bot.crypto.decrypt(e) for e in encrypted]
    messages = [parse_message(p) for p in plaintexts]
    replies = [TextReply(m.content) for m in messages]
    xmls = [r.to_xml(to_user=m.from_user, from_user=m.to_user, create_time=int(time.time())) for r, m in zip(replies, messages)]
    indexes = [range(n)] * repeat
    run_id = time.time_ns()
    key_batches = [[f"profile:{run_id}:{r}:{i}" for i in range(n)] for r in range(repeat)]
    answer_inputs = [[(parse_message(p), p) for p in (bot.crypto.decrypt_message(*a) for a in fresh_args())] for _ in range(repeat)]
    hop = ThreadPoolExecutor(max_workers=4)
    # (name, µs, part of the line above it): the parts show what the delivery step is made of.
    stages = [
        ("parse envelope", best_us(parse_envelope, [bodies] * repeat), False),
        ("verify signature (sha1)", best_us(
            lambda i: bot.crypto.verify_signature(stage_args[i][1], stage_args[i][2], stage_args[i][3], encrypted[i]), indexes), False),
        ("decrypt (AES-CBC)", best_us(bot.crypto.decrypt, [encrypted] * repeat), False),
        ("parse message", best_us(parse_message, [plaintexts] * repeat), False),
        ("ask the plugins (echo)", best_us(lambda mp: bot.ask_plugins(mp[0]), answer_inputs), False),
        ("store.add: dedup claim", best_us(lambda k: host.store.add(k, "running", 900), key_batches), True),
        ("thread-pool hop (slow plugins only)", best_us(lambda _: hop.submit(int).result(timeout=5), indexes), True),
        ("dispatch to echo (pluggy)", best_us(lambda m: first_reply(bot.pm, m, bot.context_for), [messages] * repeat), True),
        ("reply to_xml", best_us(
            lambda i: replies[i].to_xml(to_user=messages[i].from_user, from_user=messages[i].to_user, create_time=0), indexes), True),
        ("store.set: dedup answer", best_us(lambda k: host.store.set(k, "reply:<xml/>", 900), key_batches), True),
        ("encrypt + sign reply", best_us(lambda i: bot.crypto.encrypt_reply(xmls[i], stage_args[i][3]), indexes), False),
    ]
    hop.shutdown()
    print("\nstages alone, CPU µs per request:")
    for name, us, part in stages:
        print(f"  {'  ' * part}{name:28} {us:7.1f}")
    print(f"  {'sum (without the parts)':28} {sum(us for _, us, part in stages if not part):7.1f}")

    profiler = cProfile.Profile()
    profiler.enable()
    for environ in profile_envs:
        call_wsgi(app, environ)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(f"\ncProfile of {n} WSGI calls (totals: divide by {n} for one request; "
          "cProfile inflates small calls, and a wait on the plugin thread shows as lock 'acquire'):")
    print(out.getvalue())


def split_query(target: str) -> tuple[str, str, str]:
    """``(msg_signature, timestamp, nonce)`` from a callback's path and query."""
    query = dict(parse_qsl(urlsplit(target).query))
    return query["msg_signature"], query["timestamp"], query["nonce"]


if __name__ == "__main__":
    main()
