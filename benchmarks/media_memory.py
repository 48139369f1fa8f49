"""Memory and integrity of large media downloads (``WeComAPI.get_media``).

1. A 200 MB media file (random bytes written to a temp file, streamed from
   disk by the fake WeCom API) is downloaded; the downloading process reports
   its peak RSS growth. Target: under 30 MB.
2. The same file with the connection cut half-way: the client resumes with a
   Range request and the result's sha256 must match the source.

The fake runs in this process; each download runs in a child process, so its
memory is measured alone. Usage::

    python benchmarks/media_memory.py [--size-mb 200]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024 * 1024
TARGET_GROWTH = 30 * MIB
CORP_ID = "ww_bench"
AGENT_ID = 1000002


def child(api_base: str, media_id: str, dest: str) -> None:
    """Download one media file and print this process's memory numbers as JSON."""
    import resource

    import psutil

    from wechatbot.api import WeComAPI
    from wechatbot.store import open_store

    api = WeComAPI(CORP_ID, os.environ["BENCH_SECRET"], AGENT_ID, open_store("memory://"), api_base=api_base)
    api.access_token()  # connection pool, token and code paths warmed before measuring
    before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    got = api.get_media(media_id, dest)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({"rss_before": before, "peak": peak, "growth": max(0, peak - before),
                      "seconds": seconds, "size": got.size}))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_in_child(api_base: str, media_id: str, dest: Path, secret: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", api_base, media_id, str(dest)],
        capture_output=True, text=True, check=True, env={**os.environ, "BENCH_SECRET": secret},
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--child", nargs=3, metavar=("API_BASE", "MEDIA_ID", "DEST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    from wechatbot.testing.fake_api import FakeWeComAPI

    size = args.size_mb * MIB
    secret = os.urandom(16).hex()
    ok = True
    with tempfile.TemporaryDirectory(prefix="wechatbot-bench-") as tmp:
        source = Path(tmp) / "source.bin"
        digest = hashlib.sha256()
        with open(source, "wb") as fh:
            for _ in range(args.size_mb):
                block = os.urandom(MIB)
                digest.update(block)
                fh.write(block)
        expected = digest.hexdigest()
        print(f"source: {size / MIB:.0f} MiB on disk, sha256 {expected[:16]}…")

        with FakeWeComAPI() as fake:
            fake.add_app(CORP_ID, secret, agent_id=AGENT_ID)
            fake.add_media("FULL", source, filename="big.bin")
            fake.add_media("CUT", source, filename="big.bin", cut_after=size // 2)

            full = download_in_child(fake.url, "FULL", Path(tmp) / "full.bin", secret)
            matches = sha256_of(Path(tmp) / "full.bin") == expected
            passed = full["growth"] < TARGET_GROWTH and matches
            ok &= passed
            print(f"full download: {full['seconds']:.2f} s ({size / MIB / full['seconds']:.0f} MiB/s), "
                  f"peak RSS growth {full['growth'] / MIB:.1f} MiB (before {full['rss_before'] / MIB:.1f} MiB, "
                  f"peak {full['peak'] / MIB:.1f} MiB; target < {TARGET_GROWTH / MIB:.0f} MiB), "
                  f"sha256 {'matches' if matches else 'DIFFERS'}: {'OK' if passed else 'FAIL'}")

            cut = download_in_child(fake.url, "CUT", Path(tmp) / "cut.bin", secret)
            requests = fake.requests_to("media/get")[1:]  # the FULL download was the first
            ranges = [r.headers.get("Range") for r in requests]
            matches = sha256_of(Path(tmp) / "cut.bin") == expected
            passed = matches and len(requests) == 2 and ranges[0] is None and bool(ranges[1]) \
                and cut["growth"] < TARGET_GROWTH
            ok &= passed
            print(f"cut at {size // 2 / MIB:.0f} MiB: {len(requests)} requests (Range {ranges[1:]}), "
                  f"{cut['seconds']:.2f} s, peak RSS growth {cut['growth'] / MIB:.1f} MiB, "
                  f"sha256 {'matches' if matches else 'DIFFERS'}: {'OK' if passed else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
