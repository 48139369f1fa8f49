"""What a gunicorn worker loads: a host on the SQLite default leaves redis-py and cryptography out.

huey's storage module imports redis-py (with asyncio, about 7 MiB per
worker) even for a SQLite queue; wechatbot imports huey without it, and a
Redis queue brings it back. On Linux, AES runs on the libcrypto Python has
loaded already, not on cryptography's own copy of OpenSSL (about 8 MiB). The
HTTP client (requests) and websockets come only with a push or a long
connection. Each check runs in a fresh interpreter, since
this test process has loaded redis already.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from wechatbot.testing import redis_test_url


def run_fresh(code: str, tmp_path: Path) -> str:
    """Run ``code`` in a new interpreter (from ``tmp_path``); return what it printed."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_sqlite_host_does_not_load_redis(tmp_path: Path) -> None:
    (tmp_path / "c.ini").write_text(
        "[wecom]\ncorp_id = ww_corp\ntoken = t\nencoding_aes_key = abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n\n"
        f"[wechatbot]\nstore = sqlite:///{tmp_path}/s.db\nplugins = echo\n"
    )
    out = run_fresh(f"""
        import sys
        from wechatbot import create_app
        from wechatbot.testing.simulator import SimulatedWeCom
        app = create_app({str(tmp_path / "c.ini")!r})
        client = app.test_client()
        def send(method, path, body):
            response = client.open(path, method=method, data=body)
            return response.status_code, response.get_data(as_text=True)
        wecom = SimulatedWeCom(send, "t", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "ww_corp")
        from wechatbot.wecom import aes
        cryptography = "cryptography" in sys.modules
        print(wecom.text("hello").content, "redis" in sys.modules, "asyncio" in sys.modules,
              cryptography if aes.BACKEND == "libcrypto" else False, "websockets" in sys.modules)
        app.extensions["wechatbot"].close()
    """, tmp_path)
    assert out == "hello False False False False"


def test_a_redis_queue_works_after_huey_was_imported_without_redis(tmp_path: Path) -> None:
    url = redis_test_url(0)
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379 (.ci/run starts one)")
    out = run_fresh(f"""
        import sys
        import wechatbot.jobs
        loaded_before = "redis" in sys.modules
        queue = wechatbot.jobs.queue_for({url!r})
        queue.storage.flush_queue()
        queue.storage.enqueue(b"job")
        print(loaded_before, queue.storage.dequeue())
        queue.storage.flush_queue()
    """, tmp_path)
    assert out == "False b'job'"
