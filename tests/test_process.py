"""Tests for wechatbot.process: the cached process id."""
from __future__ import annotations


def test_current_pid_follows_fork() -> None:
    """The cached process id is the child's own after a fork, as os.getpid() is."""
    import os

    from wechatbot.process import current_pid

    assert current_pid() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, str(current_pid() == os.getpid() != 0).encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 10) == b"True"
    assert current_pid() == os.getpid() != child
