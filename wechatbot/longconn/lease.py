"""A lease in the shared store: which one process, of all workers and hosts, may act.

Taken with the store's atomic ``add``, kept with ``renew`` (compare-and-renew:
only while the key still holds this owner's token) and given up with
``release``. The holder counts its lease as lost a margin *before* the store
would expire it, measured from the moment it sent the last successful renew,
so that it has stopped before anyone else can take over.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from ..store import Store

log = logging.getLogger("wechatbot.longconn")


class Lease:
    """One named lease; this object is one candidate holder."""

    def __init__(self, store: Store, key: str, ttl: float = 5.0) -> None:
        self.store = store
        self.key = key
        self.ttl = ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._valid_until = 0.0
        self._next_renew = 0.0

    @property
    def renew_every(self) -> float:
        return self.ttl / 4

    @property
    def held(self) -> bool:
        """Whether this owner may act now."""
        return time.monotonic() < self._valid_until

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; True if this owner holds it now."""
        started = time.monotonic()
        try:
            taken = self.store.add(self.key, self.owner, self.ttl)
        except Exception as exc:
            log.warning("lease %s: the store failed (%s)", self.key, exc)
            return False
        if taken:
            self._valid_until = started + self.ttl * 0.8
            self._next_renew = started + self.renew_every
        return taken

    def keep(self) -> bool:
        """Renew the lease when due; False once it is lost (renewal refused, or overdue)."""
        now = time.monotonic()
        if now >= self._next_renew and now < self._valid_until:
            try:
                if self.store.renew(self.key, self.owner, self.ttl):
                    self._valid_until = now + self.ttl * 0.8
                else:
                    log.warning("lease %s: taken by %s", self.key, self.holder() or "nobody (expired)")
                    self._valid_until = 0.0
            except Exception as exc:  # the store is down: hold on until the lease runs out
                log.warning("lease %s: cannot renew (%s)", self.key, exc)
            self._next_renew = now + self.renew_every
        return self.held

    def release(self) -> None:
        """Give the lease up (only if this owner still holds it)."""
        self._valid_until = 0.0
        try:
            self.store.release(self.key, self.owner)
        except Exception as exc:
            log.warning("lease %s: cannot release (%s); it expires in %g s", self.key, exc, self.ttl)

    def holder(self) -> str | None:
        """The owner token of whoever holds the lease now (None: nobody)."""
        return self.store.get(self.key)
