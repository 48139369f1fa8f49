"""Clients that never finish sending their request, held open against a server (tests, benchmarks).

Half trickle the request line and headers a byte at a time; the other half
send whole headers announcing a body, a few bytes of it, then nothing more.
A connection the server closes is opened again at once, so the pressure
stays the same for as long as they run. What the server said before
closing (its status line, if any) is counted.
"""
from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

_HEADERS = (b"POST /callback?msg_signature=slow&timestamp=0&nonce=slow HTTP/1.1\r\n"
            b"Host: slow.example\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n")
_STALLED = _HEADERS + b"<xml><Encr"


class _Slow:
    __slots__ = ("sock", "trickle", "sent", "answer")

    def __init__(self, sock: socket.socket, trickle: bool) -> None:
        self.sock = sock
        self.trickle = trickle
        self.sent = 0
        self.answer = b""


class SlowClients:
    """``count`` slow connections to ``url`` (``http://host:port``), kept at that number until :meth:`stop`.

    Tricklers send one more byte every ``interval`` seconds. ``statuses``
    counts the server's answers to connections it closed (``"none"`` for a
    close without one), ``opened`` the connections made in all.
    """

    def __init__(self, url: str, count: int = 300, interval: float = 0.2) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.count = count
        self.interval = interval
        self.statuses: Counter[str] = Counter()
        self.opened = 0
        self.refused = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def start(self) -> SlowClients:
        """Open every connection, then keep them going in a thread."""
        for i in range(self.count):
            self._open(trickle=i % 2 == 0)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and close every connection."""
        self._stop.set()
        self._thread.join(10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def __enter__(self) -> SlowClients:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _open(self, trickle: bool) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.connect(self.address)
            if not trickle:
                sock.sendall(_STALLED)
            sock.setblocking(False)
        except OSError:
            sock.close()
            self.refused += 1
            return
        slow = _Slow(sock, trickle)
        self.opened += 1
        self._selector.register(sock, selectors.EVENT_READ, slow)

    def _run(self) -> None:
        next_byte = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_byte - time.monotonic())
            for key, _ in self._selector.select(timeout):
                self._readable(key.data)
            if time.monotonic() >= next_byte:
                next_byte += self.interval
                for key in list(self._selector.get_map().values()):
                    slow = key.data
                    if slow.trickle and slow.sent < len(_HEADERS) - 1:  # never the last byte
                        try:
                            slow.sent += slow.sock.send(_HEADERS[slow.sent:slow.sent + 1])
                        except BlockingIOError:
                            pass
                        except OSError:
                            self._closed(slow)
            missing = self.count - len(self._selector.get_map())
            for i in range(missing):
                if self._stop.is_set():
                    break
                self._open(trickle=i % 2 == 0)

    def _readable(self, slow: _Slow) -> None:
        try:
            data = slow.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            slow.answer += data
            return
        self._closed(slow)

    def _closed(self, slow: _Slow) -> None:
        """The server closed ``slow``: count what it said."""
        self._selector.unregister(slow.sock)
        slow.sock.close()
        first = slow.answer.split(b"\r\n", 1)[0].split()
        self.statuses[first[1].decode() if len(first) > 1 else "none"] += 1
