"""The store behaves the same on every backend: memory, SQLite and a real Redis."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

import pytest

from wechatbot.testing import redis_test_url
from wechatbot.store import SQLiteStore, Store, StoreURLError, open_store

REDIS_URL = redis_test_url(1)


def _redis_or_skip() -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis server at 127.0.0.1:6379 ({exc})")


def _url_for(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    _redis_or_skip()
    return REDIS_URL


@pytest.fixture
def key(request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """Make keys unique to this test, so Redis db 15 can be shared; remove them afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    issued: list[str] = []

    def make(name: str) -> str:
        issued.append(prefix + name)
        return prefix + name

    yield make
    callspec = getattr(request.node, "callspec", None)
    if issued and callspec is not None and "redis" in callspec.params.values():
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.delete(*issued, *(f"lock:{k}" for k in issued))
        client.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(url)
    yield s
    s.close()


# -- get / set / add / delete ------------------------------------------------


def test_get_set_overwrite(store: Store, key: Callable[[str], str]) -> None:
    assert store.get(key("a")) is None
    store.set(key("a"), "one")
    assert store.get(key("a")) == "one"
    store.set(key("a"), "two")
    assert store.get(key("a")) == "two"
    assert store.get(key("b")) is None


def test_empty_and_unicode_values(store: Store, key: Callable[[str], str]) -> None:
    store.set(key("empty"), "")
    assert store.get(key("empty")) == ""
    text = "你好，世界 🤖 <xml>]]></xml> 'quote' \"dq\"\n"
    store.set(key("用户:张三"), text)
    assert store.get(key("用户:张三")) == text


def test_ttl_expires(store: Store, key: Callable[[str], str]) -> None:
    store.set(key("t"), "v", ttl=0.15)
    store.set(key("long"), "v", ttl=30)
    store.set(key("cleared"), "short", ttl=0.15)
    store.set(key("cleared"), "forever")  # a set without ttl drops the earlier expiry
    assert store.get(key("t")) == "v"
    time.sleep(0.2)
    assert store.get(key("t")) is None
    assert store.get(key("long")) == "v"
    assert store.get(key("cleared")) == "forever"


@pytest.mark.parametrize("ttl", [0, -1.0])
def test_non_positive_ttl_is_refused(store: Store, key: Callable[[str], str], ttl: float) -> None:
    with pytest.raises(ValueError):
        store.set(key("t"), "v", ttl=ttl)
    with pytest.raises(ValueError):
        store.add(key("t"), "v", ttl=ttl)
    assert store.get(key("t")) is None


def test_add_sets_only_if_absent(store: Store, key: Callable[[str], str]) -> None:
    assert store.add(key("a"), "first") is True
    assert store.add(key("a"), "second") is False
    assert store.get(key("a")) == "first"
    store.set(key("b"), "existing")
    assert store.add(key("b"), "new") is False
    assert store.get(key("b")) == "existing"


def test_add_after_expiry_and_after_delete(store: Store, key: Callable[[str], str]) -> None:
    assert store.add(key("a"), "old", ttl=0.15) is True
    assert store.add(key("a"), "blocked", ttl=0.15) is False
    time.sleep(0.2)
    assert store.add(key("a"), "new", ttl=30) is True
    assert store.get(key("a")) == "new"
    store.delete(key("a"))
    assert store.add(key("a"), "again") is True
    assert store.get(key("a")) == "again"


def test_add_and_get_reads_the_other_key_only_when_it_stores(store: Store, key: Callable[[str], str]) -> None:
    store.set(key("question"), "what is your name?", ttl=30)
    assert store.add_and_get(key("claim"), "first", 30, key("question")) == (True, "what is your name?")
    assert store.add_and_get(key("claim"), "second", 30, key("question")) == (False, None)
    assert store.get(key("claim")) == "first"
    assert store.add_and_get(key("other-claim"), "x", 30, key("no-such-key")) == (True, None)


def test_add_and_get_sees_neither_expired_entry(store: Store, key: Callable[[str], str]) -> None:
    store.set(key("question"), "stale", ttl=0.1)
    assert store.add(key("claim"), "old", ttl=0.1) is True
    time.sleep(0.15)
    assert store.add_and_get(key("claim"), "new", 30, key("question")) == (True, None)
    assert store.get(key("claim")) == "new"


def test_delete(store: Store, key: Callable[[str], str]) -> None:
    store.delete(key("never-set"))
    store.set(key("a"), "v")
    store.set(key("b"), "w")
    store.delete(key("a"))
    assert store.get(key("a")) is None
    assert store.get(key("b")) == "w"


def test_set_many_writes_every_item(store: Store, key: Callable[[str], str]) -> None:
    """More items than one SQLite statement carries, overwriting some keys already set."""
    store.set(key("k0"), "old")
    items = {key(f"k{i}"): f"value {i} ✓" for i in range(450)}
    store.set_many(items, ttl=60)
    assert all(store.get(k) == v for k, v in items.items())
    assert not store.add(key("k449"), "again", ttl=60)


def test_add_race_between_threads(store: Store, key: Callable[[str], str]) -> None:
    keys = [key(f"k{i}") for i in range(50)]
    wins: dict[int, list[str]] = {n: [] for n in range(8)}
    barrier = threading.Barrier(len(wins))

    def racer(n: int) -> None:
        barrier.wait()
        wins[n] = [k for k in keys if store.add(k, str(n), ttl=30)]

    threads = [threading.Thread(target=racer, args=(n,)) for n in wins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = Counter(k for ks in wins.values() for k in ks)
    assert [k for k in keys if won[k] != 1] == []  # every key won exactly once
    for n, ks in wins.items():
        assert all(store.get(k) == str(n) for k in ks)


# -- lock --------------------------------------------------------------------


def test_lock_is_exclusive_across_threads(store: Store, key: Callable[[str], str]) -> None:
    inside = 0
    most_inside = 0
    total = 0
    failures = []

    def worker() -> None:
        nonlocal inside, most_inside, total
        for _ in range(4):
            with store.lock(key("L"), ttl=10, wait=10) as got:
                if not got:
                    failures.append("not acquired")
                    continue
                inside += 1
                most_inside = max(most_inside, inside)
                seen = total
                time.sleep(0.002)
                total = seen + 1
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert most_inside == 1
    assert total == 20


def test_lock_wait_gives_up(store: Store, key: Callable[[str], str]) -> None:
    with store.lock(key("L")) as first:
        assert first is True
        start = time.monotonic()
        with store.lock(key("L"), wait=0.1) as second:
            assert second is False
        assert time.monotonic() - start >= 0.1
    with store.lock(key("L"), wait=0) as third:
        assert third is True


def test_lock_released_only_by_its_owner(store: Store, key: Callable[[str], str]) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(store.lock(key("L"), ttl=0.15, wait=0))
        assert first is True
        time.sleep(0.2)  # the first owner's lock expires while it still runs
        with store.lock(key("L"), ttl=30, wait=1) as second:
            assert second is True
            stack.close()  # the late first owner leaves: must not free the second's lock
            with store.lock(key("L"), wait=0) as third:
                assert third is False
    with store.lock(key("L"), wait=0) as fourth:
        assert fourth is True


def test_lock_expiry_frees_an_abandoned_lock(store: Store, key: Callable[[str], str]) -> None:
    abandoned = store.lock(key("L"), ttl=0.15, wait=0)
    assert abandoned.__enter__() is True  # never exited, like a crashed owner
    start = time.monotonic()
    with store.lock(key("L"), wait=3) as got:
        assert got is True
    assert 0.05 < time.monotonic() - start < 2
    abandoned.__exit__(None, None, None)


def test_locks_with_different_names_do_not_block_each_other(
    store: Store, key: Callable[[str], str]
) -> None:
    with store.lock(key("A"), wait=0) as a, store.lock(key("B"), wait=0) as b:
        assert (a, b) == (True, True)


# -- across processes (SQLite, Redis) ----------------------------------------


# pytest imports this file under a name a spawned child cannot import, so the
# children run these snippets through the builtin exec with their inputs as globals.
RACE_WORKER = """
from wechatbot.store import open_store
store = open_store(url)
barrier.wait()
results.put((ident, [k for k in keys if store.add(k, ident, ttl=30)]))
store.close()
"""

DIE_HOLDING_LOCK = """
import os
from wechatbot.store import open_store
store = open_store(url)
held = store.lock(name, ttl=0.3, wait=0)  # kept referenced: collecting it would release
if held.__enter__():
    ready.set()
os._exit(0)  # no release, no cleanup
"""


@pytest.fixture(params=["sqlite", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request.param, tmp_path)


def test_add_race_between_processes_has_one_winner(
    shared_url: str, key: Callable[[str], str]
) -> None:
    ctx = multiprocessing.get_context("spawn")
    n = 4
    keys = [key(f"k{i}") for i in range(200)]
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=exec,
            args=(
                RACE_WORKER,
                {"url": shared_url, "keys": keys, "ident": f"p{i}", "barrier": barrier,
                 "results": results},
            ),
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=20) for _ in procs)
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    won = Counter(k for ks in outcome.values() for k in ks)
    assert [k for k in keys if won[k] != 1] == []  # every key won by exactly one process
    store = open_store(shared_url)
    try:
        for ident, ks in outcome.items():
            assert all(store.get(k) == ident for k in ks)
    finally:
        store.close()


def test_lock_of_a_dead_process_expires(shared_url: str, key: Callable[[str], str]) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(
        target=exec, args=(DIE_HOLDING_LOCK, {"url": shared_url, "name": key("L"), "ready": ready})
    )
    proc.start()
    proc.join(timeout=30)
    assert ready.is_set()
    store = open_store(shared_url)
    try:
        with store.lock(key("L"), wait=0) as got:
            assert got is False
        with store.lock(key("L"), wait=3) as got:
            assert got is True
    finally:
        store.close()


# -- SQLite specifics --------------------------------------------------------


def test_sqlite_relative_path_creates_directories_and_persists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///var/nested/store.db")
    store.set("k", "v")
    store.close()
    assert (tmp_path / "var" / "nested" / "store.db").is_file()
    reopened = open_store(f"sqlite:///{tmp_path / 'var' / 'nested' / 'store.db'}")
    assert reopened.get("k") == "v"
    reopened.close()


def test_sqlite_purges_expired_rows(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, purge_interval=0.1)
    for i in range(100):
        store.set(f"dedup:{i}", "x", ttl=0.05)
    store.set("token", "kept")
    time.sleep(0.15)
    store.add("dedup:new", "y", ttl=30)
    store.close()
    with sqlite3.connect(path) as raw:
        (rows,) = raw.execute("SELECT count(*) FROM wechatbot_kv").fetchone()
    assert rows == 2


def test_sqlite_store_is_usable_from_a_forked_child(tmp_path: Path) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.set("parent", "1")  # the parent holds an open connection when it forks
    pid = os.fork()
    if pid == 0:
        try:
            ok = store.get("parent") == "1" and store.add("child", "2")
            os._exit(0 if ok else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("child") == "2"
    store.set("parent", "3")
    assert store.get("parent") == "3"
    store.close()


# -- URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "foo://x",
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "redis://host:notaport",
        "redis://127.0.0.1:6379/notadb",
        "redis://",
        "memory://extra",
        "",
        "/var/lib/store.db",
    ],
)
def test_bad_url_is_a_clear_error(bad: str) -> None:
    with pytest.raises(StoreURLError) as info:
        open_store(bad)
    message = str(info.value)
    assert "[wechatbot] store" in message
    assert repr(bad) in message
    assert "sqlite:///" in message and "redis://" in message  # the accepted forms


def test_bad_url_error_hides_the_password() -> None:
    with pytest.raises(StoreURLError) as info:
        open_store("redis://:s3cret-pw@redis.internal:notaport/0")
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert "redis.internal" in message
    assert "[wechatbot] store" in message


@pytest.mark.parametrize(
    "good",
    [
        "memory://",
        "redis://127.0.0.1:6379/15",
        "redis://:password@127.0.0.1:6379/0",
        "rediss://cache.example.com:6380/2",
        "REDIS://127.0.0.1",
    ],
)
def test_accepted_urls_open_without_contacting_a_server(good: str) -> None:
    open_store(good).close()


def test_sqlite_store_opened_by_many_processes_at_once(tmp_path) -> None:
    """gunicorn starts its workers together: each opens the new file at the same moment."""
    import subprocess
    import sys

    code = ("import sys; from wechatbot.store import open_store; "
            "s = open_store('sqlite:///' + sys.argv[1]); print(s.add('k' + sys.argv[2], 'v', 10))")
    for trial in range(3):
        path = str(tmp_path / f"fresh{trial}.db")
        procs = [subprocess.Popen([sys.executable, "-c", code, path, str(i)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in range(8)]
        outcomes = [p.communicate(timeout=60) for p in procs]
        assert [out.strip() for out, _ in outcomes] == ["True"] * 8, [err for _, err in outcomes if err]



def test_incr_counts_atomically_from_zero(store: Store, key: Callable[[str], str]) -> None:
    k = key("counter")
    assert store.incr(k) == 1
    assert store.incr(k, 5) == 6
    assert store.get(k) == "6"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: store.incr(k), range(40)))
    assert store.get(k) == "46"


def test_incr_ttl_is_a_fixed_window(store: Store, key: Callable[[str], str]) -> None:
    k = key("window")
    assert store.incr(k, ttl=0.3) == 1
    time.sleep(0.15)
    assert store.incr(k, ttl=0.3) == 2  # later calls do not extend the window
    time.sleep(0.25)
    assert store.get(k) is None
    assert store.incr(k, ttl=0.3) == 1


# -- renew / release (leases) and push / pop (shared queues) -------------------


def test_renew_extends_only_the_holders_live_key(store: Store, key: Callable[[str], str]) -> None:
    lease = key("lease")
    assert store.add(lease, "me", ttl=0.3)
    assert store.renew(lease, "me", ttl=0.6)
    assert not store.renew(lease, "someone else", ttl=5)
    time.sleep(0.4)
    assert store.get(lease) == "me"  # renewed past its first expiry
    time.sleep(0.3)
    assert store.get(lease) is None
    assert not store.renew(lease, "me", ttl=5)  # expired: another may have taken it
    assert store.get(lease) is None


def test_release_removes_only_the_holders_key(store: Store, key: Callable[[str], str]) -> None:
    lease = key("lease")
    assert store.add(lease, "me", ttl=5)
    store.release(lease, "someone else")
    assert store.get(lease) == "me"
    store.release(lease, "me")
    assert store.add(lease, "next", ttl=5)


def test_push_pop_is_first_in_first_out(store: Store, key: Callable[[str], str]) -> None:
    queue = key("queue")
    assert store.pop(queue) == []
    for n in range(5):
        store.push(queue, f"frame {n} 帧", ttl=30)
    assert store.pop(queue, 2) == ["frame 0 帧", "frame 1 帧"]
    store.push(queue, "frame 5 帧", ttl=30)
    assert store.pop(queue) == ["frame 2 帧", "frame 3 帧", "frame 4 帧", "frame 5 帧"]
    assert store.pop(queue) == []


def test_pushed_entries_expire(store: Store, key: Callable[[str], str]) -> None:
    queue = key("queue")
    store.push(queue, "old", ttl=0.2)
    time.sleep(0.3)
    assert store.pop(queue) == []


def test_pop_race_between_threads_takes_each_entry_once(store: Store, key: Callable[[str], str]) -> None:
    queue = key("queue")
    for n in range(200):
        store.push(queue, str(n), ttl=30)
    taken: list[str] = []
    lock = threading.Lock()

    def taker() -> None:
        while True:
            got = store.pop(queue, 3)
            if not got:
                return
            with lock:
                taken.extend(got)

    threads = [threading.Thread(target=taker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken, key=int) == [str(n) for n in range(200)]


def test_sqlite_set_many_writes_batches_of_every_size(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        for size in (1, 2, 3, 5, 127, 128, 129, 200, 255, 256, 257, 600):
            items = {f"k{size}:{i}": f"v{size}:{i}" for i in range(size)}
            store.set_many(items, ttl=60)
            assert {key: store.get(key) for key in items} == items
    finally:
        store.close()


def test_sqlite_batches_of_many_sizes_do_not_grow_memory(tmp_path: Path) -> None:
    """A worker writes answered callbacks in batches of whatever size gathered; memory must not grow with the sizes."""
    def rss_mib() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    if not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc to read this process's memory")
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.set_many({"warm": "up"}, ttl=60)
        before = rss_mib()
        for batch in range(400):
            size = batch % 200 + 1
            store.set_many({f"cb:{batch}:{i}": "reply:" + "x" * 300 for i in range(size)}, ttl=900)
        assert rss_mib() - before < 5  # one cached statement per batch size grew it by about 10 MiB
    finally:
        store.close()
