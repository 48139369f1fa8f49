"""The dedup claim is a lease held by a live process: a retry whose first arrival died takes it over.

Silent owners are taken over once; dead ones whenever a retry finds them dead.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time

from wechatbot.dedup import Dedup
from wechatbot.store import MemoryStore


def dead_pid() -> int:
    """The pid of a process that has just ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_first_arrival_alive_keeps_its_claim() -> None:
    store = MemoryStore()
    first, retry = Dedup(store, silent_after=5.0), Dedup(store, silent_after=5.0)
    assert first.claim("cb:x:msg:1")
    assert not retry.claim("cb:x:msg:1", take_over=True)


def test_a_claim_whose_process_died_is_taken_over_once() -> None:
    store = MemoryStore()
    store.set("cb:x:msg:2", f"running:{socket.gethostname()}:{dead_pid()}:{time.time():.3f}")
    retry, later_retry = Dedup(store), Dedup(store)
    assert retry.claim("cb:x:msg:2", take_over=True)  # its owner is dead: run it
    assert not later_retry.claim("cb:x:msg:2", take_over=True)  # taken over once: never again


def test_a_taken_over_claim_whose_new_owner_died_too_is_taken_over_again() -> None:
    store = MemoryStore()
    store.set("cb:x:msg:7", f"running:{socket.gethostname()}:{dead_pid()}:{time.time():.3f}:again")
    assert Dedup(store).claim("cb:x:msg:7", take_over=True)  # workers killed one after the other
    assert store.get("cb:x:msg:7").endswith(":again")


def test_a_taken_over_claim_that_is_only_silent_is_not_taken_over_again() -> None:
    store = MemoryStore()
    store.set("cb:x:msg:8", f"running:{socket.gethostname()}:{dead_pid()}:{time.time() - 60:.3f}")
    assert Dedup(store, silent_after=0.1).claim("cb:x:msg:8", take_over=True)  # dead: taken over
    time.sleep(0.2)  # its new owner (this process, alive) is now silent past the deadline
    assert not Dedup(store, silent_after=0.1).claim("cb:x:msg:8", take_over=True)


def test_a_claim_silent_past_the_deadline_is_taken_over_once() -> None:
    store = MemoryStore()
    first = Dedup(store, silent_after=0.2)
    assert first.claim("cb:x:msg:3", take_over=True)
    assert not Dedup(store, silent_after=0.2).claim("cb:x:msg:3", take_over=True)
    time.sleep(0.3)
    assert Dedup(store, silent_after=0.2).claim("cb:x:msg:3", take_over=True)
    time.sleep(0.3)
    assert not Dedup(store, silent_after=0.2).claim("cb:x:msg:3", take_over=True)


def test_an_answered_callback_is_never_taken_over() -> None:
    store = MemoryStore()
    first = Dedup(store, silent_after=0.1)
    assert first.claim("cb:x:msg:4", take_over=True)
    first.answered("cb:x:msg:4", "<xml/>")
    first.flush()
    time.sleep(0.2)
    assert not Dedup(store, silent_after=0.1).claim("cb:x:msg:4", take_over=True)
    assert Dedup(store).wait_for_answer("cb:x:msg:4", 0.1) == "<xml/>"


def test_a_claim_on_another_machine_is_judged_by_its_age_only() -> None:
    store = MemoryStore()
    store.set("cb:x:msg:5", f"running:another-host:{dead_pid()}:{time.time():.3f}")
    assert not Dedup(store, silent_after=5.0).claim("cb:x:msg:5", take_over=True)


def test_without_take_over_a_dead_owners_claim_stays() -> None:
    store = MemoryStore()
    store.set("cb:x:msg:6", f"running:{socket.gethostname()}:{dead_pid()}:{time.time() - 60:.3f}")
    assert not Dedup(store).claim("cb:x:msg:6")
