"""A real gunicorn serving the host, for end-to-end tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from .hosts import free_port, wait_until_serving


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py`` run in ``root`` (a checkout: gunicorn.conf.py, wsgi.py).

    ``config`` is the host's config file; its output (error log, and the
    access log when ``env`` asks for one) goes to ``log_path``. It answers
    ``/healthz`` before the constructor returns, or the constructor raises
    ``RuntimeError`` with the end of the log after ``start_timeout`` seconds
    (generous: on a busy machine each worker takes seconds to import and build).
    """

    def __init__(self, root: str | os.PathLike[str], config: str | os.PathLike[str], log_path: str | os.PathLike[str], *,
                 workers: int = 2, threads: int = 8, env: Mapping[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = Path(log_path)
        full_env = {**os.environ, "WECHATBOT_CONFIG": str(config), "WECHATBOT_BIND": self.url[len("http://"):],
                    "WECHATBOT_WORKERS": str(workers), "WECHATBOT_THREADS": str(threads), **(env or {})}
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
                                        cwd=root, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until_serving(self.url, timeout=start_timeout)
        except TimeoutError:
            tail = self.log_text()[-3000:]  # read before stop() closes the log
            self.stop()
            raise RuntimeError(f"gunicorn did not answer within {start_timeout:g} s: {tail}") from None

    def log_text(self) -> str:
        """Everything gunicorn wrote so far."""
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        """The pids of the master's live workers."""
        import psutil

        return sorted(child.pid for child in psutil.Process(self.process.pid).children())

    def stop(self) -> None:
        """Stop gunicorn (SIGTERM, then SIGKILL after 15 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()

    def __enter__(self) -> Gunicorn:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
