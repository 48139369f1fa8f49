"""This process's id, read without a system call.

``os.getpid()`` asks the kernel every time; the hot path checks on every
callback whether it runs in a process forked since its state was made
(gunicorn workers). The id is kept here and renewed in each forked child.
"""
from __future__ import annotations

import os

_pid = os.getpid()


def _renew() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew)


def current_pid() -> int:
    """The id of the calling process (the child's own id after a fork)."""
    return _pid
