"""Frames that must reach the user, kept in the shared store until WeCom confirms or refuses them.

A reply, a welcome, a card update, a push or a stream's last frame is
written down here when it is made (in whichever process), and deleted once
settled: delivered, refused for good, given up, or sent with no receipt.
The holder of the connection keeps its frames in memory to send them; if
its process is killed meanwhile (waiting for the connection, or for a pause
after "WeCom busy" or a rate limit), the next holder finds the records here
and sends them, so the pushes of the long connection survive a killed worker
as the host's durable jobs do. A frame in flight when its process died may
then arrive twice, as a job's push may.

Stream frames before the last are not written down: newer text replaces
them, and a stream whose process died is ended by the next holder anyway
(``service.finish_orphans``).

Each record is ``longconn:pending:<bot>:<key>``; the bot's index (a list of
keys) lets the holder find them, and is pruned each time it is read.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from ..store import PREFIXES, Store

log = logging.getLogger("wechatbot.longconn")

# Beyond its deadline a record stays this long, for the holder to report it as given up.
GRACE = 120.0


class PendingFrames:
    """The records of one bot's frames that are not settled yet."""

    def __init__(self, store: Store, bot_id: str) -> None:
        self.store = store
        self.prefix = f"{PREFIXES['longconn_pending']}{bot_id}:"
        self.index = PREFIXES["longconn_pending_index"] + bot_id

    def add(self, frame: dict[str, Any], conversation: str, meta: dict[str, Any] | None, retry_for: float) -> dict[str, Any]:
        """Write a frame down; return its entry (``key``, ``until``: its deadline, a wall-clock time)."""
        entry = {"key": uuid.uuid4().hex, "frame": frame, "conversation": conversation, "meta": meta,
                 "until": time.time() + retry_for}
        ttl = retry_for + GRACE
        self.store.set(self.prefix + entry["key"], json.dumps(entry, ensure_ascii=False), ttl)
        self.store.push(self.index, entry["key"], ttl)
        return entry

    def done(self, key: str) -> None:
        """The frame is settled: forget it."""
        self.store.delete(self.prefix + key)

    def unsettled(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """Every frame not settled yet (at most ``limit``), oldest first; prunes the index of the others."""
        keys: list[str] = []
        while len(keys) < limit:
            batch = self.store.pop(self.index, min(1000, limit - len(keys)))
            if not batch:
                break
            keys.extend(batch)
        entries = []
        for key in keys:
            raw = self.store.get(self.prefix + key)
            if raw is None:
                continue  # settled
            try:
                entry = json.loads(raw)
                until = float(entry["until"])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("dropped a broken record of a pending frame (%s)", exc)
                self.done(key)
                continue
            self.store.push(self.index, key, max(1.0, until - time.time()) + GRACE)
            entries.append(entry)
        return entries
