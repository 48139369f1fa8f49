"""Recognising WeCom's retries of a callback, through the shared store.

WeCom sends a callback again when it had no answer within 5 seconds. A message
is identified by its app and MsgId; an event has no MsgId, so it is identified
by a hash of the whole decrypted message (keys made of FromUserName and
CreateTime, as some peers use, merge distinct events of the same second).
"""
from __future__ import annotations

import hashlib
import time

from .messages import Message
from .store import Store

# WeCom retries for about 20 seconds; keep the mark well past that.
DEDUP_TTL = 900.0

RUNNING = "running"
NO_REPLY = "none"
DEFERRED = "deferred"
REPLY_PREFIX = "reply:"


def callback_key(app_name: str, message: Message, plaintext: str) -> str:
    """The identity of one callback, the same for every retry of it."""
    if message.msg_id:
        return f"cb:{app_name}:msg:{message.msg_id}"
    digest = hashlib.sha256(plaintext.encode("utf-8")).hexdigest()
    return f"cb:{app_name}:sha:{digest}"


class Dedup:
    """Marks callbacks as seen and remembers how each one was answered."""

    def __init__(self, store: Store, ttl: float = DEDUP_TTL) -> None:
        self.store = store
        self.ttl = ttl

    def claim(self, key: str) -> bool:
        """True for the first arrival of a callback, False for a retry."""
        return self.store.add(key, RUNNING, self.ttl)

    def answered(self, key: str, reply_xml: str | None) -> None:
        """Remember the plaintext reply XML (``None``: answered empty)."""
        self.store.set(key, REPLY_PREFIX + reply_xml if reply_xml else NO_REPLY, self.ttl)

    def deferred(self, key: str) -> None:
        """Remember that the reply goes out later through the API."""
        self.store.set(key, DEFERRED, self.ttl)

    def wait_for_answer(self, key: str, timeout: float) -> str | None:
        """For a retry: the first arrival's reply XML, waiting while it is still running.

        ``None`` when it was answered empty, deferred, or still running after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            state = self.store.get(key)
            if state is None or state != RUNNING:
                return state[len(REPLY_PREFIX):] if state and state.startswith(REPLY_PREFIX) else None
            if time.monotonic() + delay > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
