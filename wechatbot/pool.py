"""The bounded thread pool that runs plugins which may block, and pushes off the request thread."""
from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class BoundedPool:
    """A thread pool that refuses work instead of queueing without bound."""

    def __init__(self, workers: int, queue: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="wechatbot-plugin")
        self.slots = threading.BoundedSemaphore(max(1, workers) + max(0, queue))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future | None:
        """Run ``fn(*args)`` in the pool; ``None`` when the pool and its queue are full."""
        if not self.slots.acquire(blocking=False):
            return None
        # In this caller's context: the callback's id stays on the lines logged there.
        future = self.executor.submit(contextvars.copy_context().run, fn, *args)
        future.add_done_callback(lambda _: self.slots.release())
        return future

    def shutdown(self) -> None:
        """Stop taking work and wait for the running calls to end."""
        self.executor.shutdown(wait=True, cancel_futures=True)
