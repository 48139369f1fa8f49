"""Whether a gunicorn master's workers have opened their SQLite store already.

Every worker builds its own host and opens the store; the first one to find
no file creates it (a first start). A worker started later by the same
master (one replacing a dead worker) must not: if the file is missing then,
its folder was removed while the host runs, which is an outage for every
worker (``outage``), not a reason to begin a fresh empty database in the new
ones while the others wait for the old. So the first worker to open the store
leaves a mark in the temporary folder, named after the master and the path,
and the master's ``on_exit`` removes it.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from .store import Store, open_store

__all__ = ["forget_opened_stores", "open_store_once", "under_gunicorn"]

_PREFIX = "wechatbot-store-opened-"


def under_gunicorn() -> bool:
    """Whether this process is a gunicorn master or one of its workers."""
    return "gunicorn" in os.path.basename(sys.argv[0] or "") or "SERVER_SOFTWARE" in os.environ


def _mark(master_pid: int, path: str) -> Path:
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"{_PREFIX}{master_pid}-{digest}"


def open_store_once(url: str) -> Store:
    """:func:`~wechatbot.store.open_store`, creating a SQLite file only in the first of a master's workers.

    Outside gunicorn, or for another backend, it is ``open_store`` itself.
    """
    cleaned = url.strip()
    if not cleaned.lower().startswith("sqlite:///") or not under_gunicorn():
        return open_store(url)
    mark = _mark(os.getppid(), os.path.abspath(cleaned[len("sqlite:///"):]))
    if mark.exists():
        return open_store(url, create=False)
    store = open_store(url)
    try:
        mark.touch()
    except OSError:
        pass  # no temporary folder to write in: later workers may create the file, as before
    return store


def forget_opened_stores(master_pid: int) -> None:
    """Remove the marks of ``master_pid``'s workers (when the master exits)."""
    for mark in Path(tempfile.gettempdir()).glob(f"{_PREFIX}{master_pid}-*"):
        try:
            mark.unlink()
        except OSError:
            pass
