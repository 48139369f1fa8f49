"""Start-up failures as one line: ``gunicorn wsgi:app`` stops once, with the reason and no traceback.

A configuration, store URL, plugin load or plugin start-up error is a
:class:`~wechatbot.errors.WechatbotError` whose message names the key or the
plugin and what to do. Under gunicorn every worker builds the app, so each
would fail the same way; the first one prints the line and exits with
gunicorn's "app failed to load" code, which makes the master stop at once
instead of starting workers again; the others exit quietly.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WechatbotError, one_line
from .store_marks import forget_opened_stores, under_gunicorn

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["APP_LOAD_ERROR", "create_app_or_exit", "forget_reported_failure"]

#: gunicorn's exit code for "the application could not be loaded": the master halts.
APP_LOAD_ERROR = 4


def _marker(master_pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"wechatbot-start-failed-{master_pid}"


def _first_to_report() -> bool:
    """True in the first process of a gunicorn master's workers (or outside gunicorn) to fail."""
    if not under_gunicorn():
        return True
    try:
        fd = os.open(_marker(os.getppid()), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True
    os.close(fd)
    return True


def forget_reported_failure(master_pid: int | None = None) -> None:
    """Remove the marks left for ``master_pid``: a failed start, stores opened (gunicorn's ``on_exit`` calls this)."""
    pid = master_pid or os.getpid()
    try:
        _marker(pid).unlink()
    except OSError:
        pass
    forget_opened_stores(pid)


def create_app_or_exit(**kwargs: Any) -> Flask:
    """:func:`wechatbot.create_app`, or one line on stderr and exit code 4 when it cannot start."""
    from .ext import create_app

    try:
        return create_app(**kwargs)
    except WechatbotError as exc:
        if not _first_to_report():
            # Only one worker may exit with gunicorn's halting code: a second
            # one reaped while the master halts makes it crash with a traceback.
            raise SystemExit(1) from None
        print(f"wechatbot: cannot start: {one_line(str(exc))}", file=sys.stderr, flush=True)
        raise SystemExit(APP_LOAD_ERROR) from None
