"""The access token of one app secret: cached in the shared store, fetched by one caller at a time.

The token is keyed by corp id *and* a hash of the app's secret, because every
app secret has its own token. When it is missing or rejected, one caller
fetches a new one under a store lock while the others wait for it, so many
gunicorn workers (and hosts) cause one ``gettoken``.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["AccessToken"]

log = logging.getLogger(__name__)


class AccessToken:
    """The shared, locked access token of one corp id + secret.

    ``fetch`` calls ``gettoken`` and returns ``(token, expires_in seconds)``;
    ``lock_ttl`` bounds how long a fetcher may hold the store lock (and how
    long the others wait before fetching anyway); ``label`` names the app in
    log lines. Safe to share between threads.
    """

    def __init__(self, store: Store, corp_id: str, secret: str, fetch: Callable[[], tuple[str, float]],
                 lock_ttl: float, label: str) -> None:
        self.store = store
        self.lock_ttl = lock_ttl
        self.label = label
        self._fetch_answer = fetch
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]
        # Corp id and a digest of the secret: each secret has its own token,
        # and a new secret (after a reset) starts with an empty cache.
        self.key = f"wecom-token:{corp_id}:{digest}"
        self.lock_name = f"wecom-token:{corp_id}:{digest}"
        self._mutex = threading.Lock()
        #: The last token seen, so that error messages can hide it.
        self.known: str | None = None

    def get(self, force_refresh: bool = False) -> str:
        """A valid access token, from the shared cache or fetched from ``gettoken``.

        ``force_refresh`` discards the cached token, unless another caller has
        replaced it meanwhile (then that newer one is returned).
        """
        token = self.store.get(self.key)
        if token and not force_refresh:
            self.known = token
            return token
        return self.refresh(stale=token)

    def refresh(self, stale: str | None) -> str:
        """Return a cached token other than ``stale``, fetching one if there is none.

        Threads of this process queue on a mutex so that only one of them
        talks to the store lock; across processes the store lock elects the
        one that calls ``gettoken``, and the others poll the cache until the
        new token appears. If the lock holder seems stuck, fetch anyway.
        """
        with self._mutex:
            deadline = time.monotonic() + self.lock_ttl
            pause = 0.01
            while True:
                token = self.store.get(self.key)
                if token and token != stale:
                    self.known = token
                    return token
                with self.store.lock(self.lock_name, ttl=self.lock_ttl, wait=0) as acquired:
                    if acquired:
                        token = self.store.get(self.key)
                        if token and token != stale:
                            self.known = token
                            return token
                        return self._fetch()
                if time.monotonic() >= deadline:
                    log.warning("%s: the token lock is still held after %.0fs; fetching a token anyway",
                                self.label, self.lock_ttl)
                    return self._fetch()
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def _fetch(self) -> str:
        token, expires_in = self._fetch_answer()
        # Expire a few minutes early, so a token is never used right at its end.
        ttl = max(expires_in - min(300.0, expires_in / 5), 1.0)
        self.store.set(self.key, token, ttl=ttl)
        self.known = token
        log.info("%s: fetched a new access token (valid %.0fs, cached %.0fs)", self.label, expires_in, ttl)
        return token
