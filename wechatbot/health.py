"""What ``/healthz`` and ``/readyz`` answer.

``/healthz`` (liveness) says only that the process answers HTTP: restarting it
would not help a host whose Redis is down. ``/readyz`` (readiness) asks the
store and the queue themselves, so a load balancer stops sending callbacks to
a host that could only answer them with errors, and sends them again once
both answer.
"""
from __future__ import annotations

from typing import Any, Callable

from .redact import redact
from .store import PREFIXES, Store

#: The key /readyz reads: never written, so reading it only asks the store to answer.
PROBE_KEY = PREFIXES["ready"] + "probe"


def _check(name: str, probe: Callable[[], Any]) -> tuple[bool, str]:
    try:
        probe()
    except Exception as exc:  # whatever the backend raises, it is the reason
        return False, f"{name}: {redact(f'{type(exc).__name__}: {exc}')}"
    return True, f"{name}: ok"


def readiness(store: Store, queue_length: Callable[[], int]) -> tuple[bool, str]:
    """``(ready, text)``: whether the store and the queue answer, one line each."""
    # A resilient store answers from memory while it is down: ask the real one.
    check = getattr(store, "check", None)
    probe = (lambda: check(PROBE_KEY)) if check is not None else (lambda: store.get(PROBE_KEY))
    results = [_check("store", probe), _check("queue", queue_length)]
    return all(ok for ok, _ in results), "".join(line + "\n" for _, line in results)
