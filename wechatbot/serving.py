"""The gunicorn worker class: gthread's, but a request thread only ever gets a request that has arrived whole.

gthread hands a connection to a request thread as soon as it is accepted;
the thread then reads the request from the socket, as slowly as the client
sends it. A few dozen clients trickling their headers a byte at a time, or
announcing a body and never sending it, hold every thread, and WeCom's
callbacks queue behind them until WeCom gives up (5 s). :class:`BufferingWorker`
reads each request in the worker's event loop instead, the way a buffering
reverse proxy (nginx) does, and passes it to a thread only once it is all
there: a slow client costs a socket and a buffer, never a thread.

Each request must arrive within ``$WECHATBOT_REQUEST_TIMEOUT`` seconds
(default 5: WeCom itself gives up then) of its first byte; one that does
not is answered ``408 Request Timeout`` and closed. The worker also stamps
each request with the moment it arrived (``environ["wechatbot.arrived"]``,
``time.monotonic()``), so that the host's ``reply_deadline`` counts from
the callback's arrival, not from when a thread got to it; and it tells the
host when a round of requests (``threads`` of them) waits for a thread
(``environ["wechatbot.crowded"]()``): then no callback waits for slow
plugins (their replies are pushed), so a burst is answered as fast as the
threads can decrypt it, not ``reply_deadline`` per round of threads.

Whatever it adds to a request costs a few microseconds in the event loop
(the request is read there, with one ``recv`` when it arrives in one
piece) and saves the thread's own wait for the first byte. TLS and
HTTP/2-by-prior-knowledge connections go gthread's way (the request is
read by its thread): put a TLS-terminating proxy in front.

A body larger than the app takes (``[wechatbot] max_body``) is not
buffered: the request goes to a thread once its headers are in, the app
refuses it unread, and the connection is closed after the answer.

A kept-alive connection is answered ``Connection: close`` after
``$WECHATBOT_KEEPALIVE_REQUESTS`` requests (default 100; 0: no limit), as
nginx's ``keepalive_requests`` does. A client that keeps its connections
open (a reverse proxy's upstream keep-alive, a load generator) otherwise
stays with whichever worker accepted them first: when one worker happened
to accept them all, it served every request on one core, at a third of the
rate, while the other worker sat idle. Opened again, a connection goes to
the worker that accepts it first, most often the one with time to spare.
"""
from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from collections import OrderedDict
from functools import partial
from typing import Any, Callable

from gunicorn import http, util
from gunicorn.workers.gthread import TConn, ThreadWorker

# What this worker builds on: gthread as gunicorn 27 has it (setup.cfg asks for it).
_GTHREAD_PARTS = ("enqueue_req", "finish_request", "murder_pending", "_keepalive_after", "on_client_socket_readable")
if not all(hasattr(ThreadWorker, name) for name in _GTHREAD_PARTS) or not hasattr(TConn, "wait_for_data"):
    import gunicorn

    raise ImportError(f"wechatbot.serving.BufferingWorker needs gunicorn 27's gthread worker, not gunicorn "
                      f"{gunicorn.__version__}'s: pip install 'gunicorn>=27', or set worker_class = 'gthread'")

from .config import parse_number  # noqa: E402
from .ext import ARRIVED, CROWDED  # noqa: E402  # the environ keys the callback view reads

#: Seconds a request may take to arrive, from its first byte (or its connection).
DEFAULT_REQUEST_TIMEOUT = 5.0
#: Requests a kept-alive connection carries before it is closed (0: no limit).
DEFAULT_KEEPALIVE_REQUESTS = 100
#: The body buffered when the app does not say how large a body it takes.
DEFAULT_BODY_LIMIT = 1024 * 1024
#: How long a closed connection's unread input is drained (RFC 9112 9.6), at most.
LINGER = 2.0
_RECV = 64 * 1024
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 46\r\n\r\nthe request did not arrive in time; send again\n")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# The arrival of the request a thread is serving, for the environ (set in handle()).
_serving = threading.local()

# What _scan() says of a buffer.
_MORE, _WHOLE, _HEADERS_ONLY = 0, 1, 2


class _Conn(TConn):
    """A connection with the request being read into ``buf``."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any, worker: BufferingWorker) -> None:
        super().__init__(cfg, sock, client, server)
        self.worker = worker
        self.arrived = 0.0
        self.buf = bytearray()
        self.need = -1          # the request's length in bytes once its headers are in (-1: not yet)
        self.scanned = 0        # where the search for the end of the headers goes on
        self.chunk_at = -1      # chunked body: where the next chunk's size line starts
        self.whole = True       # False: handed on before all of it arrived (closed after the answer)
        self.registered = False  # in the worker's poller

    def init(self) -> None:
        super().init()
        if not self.whole:  # the thread reads the rest: not for longer than the request may take
            self.sock.settimeout(max(0.5, self.arrived + self.worker.request_timeout - time.monotonic()))

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            util.close(self.sock)


class BufferingWorker(ThreadWorker):
    """gthread, reading each HTTP/1 request whole in the event loop before a thread serves it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = _setting("WECHATBOT_REQUEST_TIMEOUT", float, DEFAULT_REQUEST_TIMEOUT)
        self.keepalive_requests = _setting("WECHATBOT_KEEPALIVE_REQUESTS", int, DEFAULT_KEEPALIVE_REQUESTS)
        self.body_limit = DEFAULT_BODY_LIMIT
        cfg = self.cfg
        self.header_limit = (cfg.limit_request_line or 8190) + (cfg.limit_request_fields or 100) * (
            (cfg.limit_request_field_size or 8190) + 2) + 4
        self.buffering = (not cfg.is_ssl and getattr(cfg, "protocol", "http") == "http"
                          and getattr(cfg, "http2_cleartext", "off") not in ("prior-knowledge", "both"))
        self.reading: OrderedDict[_Conn, float] = OrderedDict()    # connections still arriving, by deadline
        self.lingering: OrderedDict[_Conn, float] = OrderedDict()  # closed for writing, draining

    # -- start-up -------------------------------------------------------------

    def load_wsgi(self) -> None:
        """Load the app, wrapped to put the arrival in each environ; take its body limit."""
        super().load_wsgi()
        self.body_limit = body_limit(self.wsgi)
        self.wsgi = _stamping(self.wsgi, self.crowded)

    def crowded(self) -> bool:
        """Whether requests wait for a thread, ``threads`` of them or more (then none should wait for plugins)."""
        queue = getattr(self.tpool, "_work_queue", None)  # ThreadPoolExecutor's; absent elsewhere: never crowded
        return queue is not None and queue.qsize() >= self.cfg.threads

    def run(self) -> None:
        if self.buffering and hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Linux: a connection is accepted once its first bytes are in, not before.
            for listener in self.sockets:
                if getattr(listener, "FAMILY", None) in (socket.AF_INET, socket.AF_INET6):
                    try:
                        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, max(1, int(self.request_timeout)))
                    except OSError:
                        pass
        super().run()

    # -- connections in ---------------------------------------------------------

    def accept(self, listener: Any) -> None:
        if not self.buffering:
            super().accept(listener)
            return
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._start(_Conn(self.cfg, client_sock, client_addr, listener.getsockname(), self))

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection's next request begins (it stays in the poller while it arrives)."""
        if not isinstance(conn, _Conn):
            super().on_client_socket_readable(conn, client)
            return
        self.keepalived_conns.remove(conn)
        conn.registered = True
        self._start(conn)

    def enqueue_req(self, conn: Any) -> None:
        """Pipelined input after an answer (gthread hands it straight to a thread): read it whole first."""
        if not isinstance(conn, _Conn):
            super().enqueue_req(conn)
            return
        conn.sock.setblocking(False)
        self._start(conn)

    def _start(self, conn: _Conn) -> None:
        """Begin reading one request on ``conn``: what the parser holds already, then the socket."""
        conn.arrived = time.monotonic()
        conn.buf = bytearray(conn.parser.unreader.take_buffered()) if conn.parser is not None else bytearray()
        conn.need, conn.scanned, conn.chunk_at, conn.whole = -1, 0, -1, True
        if conn.buf and self._scanned(conn):
            return
        self._receive(conn)

    def _on_readable(self, conn: _Conn, _sock: Any) -> None:
        self._receive(conn)

    def _receive(self, conn: _Conn) -> None:
        """Read what has arrived; pass the request on when it is whole, else wait for more."""
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":  # the client went away before its request was in
            self._forget(conn)
            self.nr_conns -= 1
            util.close(conn.sock)
            return
        if data is not None:
            conn.buf += data
            if self._scanned(conn):
                return
        if not conn.registered:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
            conn.registered = True
            self.reading[conn] = conn.arrived + self.request_timeout
        elif conn not in self.reading:  # a kept-alive connection, registered for its next request
            self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
            self.reading[conn] = conn.arrived + self.request_timeout

    def _scanned(self, conn: _Conn) -> bool:
        """Pass ``conn`` on to a thread if its request is in (or will not be buffered); True if it was."""
        verdict = _scan(conn, self.body_limit, self.header_limit)
        if verdict == _MORE:
            return False
        self._forget(conn)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(conn.buf)
        conn.buf = bytearray()
        conn.whole = verdict == _WHOLE
        conn.data_ready = True  # gthread's thread must not wait for data: it is here
        ThreadWorker.enqueue_req(self, conn)
        return True

    def _forget(self, conn: _Conn) -> None:
        """Take ``conn`` out of the poller and the deadlines."""
        if conn.registered:
            self.poller.unregister(conn.sock)
            conn.registered = False
        self.reading.pop(conn, None)

    # -- the request thread ------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        _serving.arrived = getattr(conn, "arrived", None)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """gthread's, answering ``Connection: close`` once the connection has carried its share of requests."""
        if self.keepalive_requests:
            conn.served = getattr(conn, "served", 0) + 1  # TLS connections are gthread's own TConn
            if conn.served >= self.keepalive_requests:
                req.must_close = True
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        if not getattr(conn, "whole", True):
            return False  # its unread rest is not drained by a thread: the connection closes
        return super()._keepalive_after(conn, keepalive)

    # -- deadlines and closing -----------------------------------------------------

    def murder_pending(self) -> None:
        """Also: answer 408 to requests that did not arrive in time, and end lingering closes."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading:
            conn, deadline = next(iter(self.reading.items()))
            if deadline > now:
                break
            self._forget(conn)
            self.nr_conns -= 1
            try:
                conn.sock.send(_TIMED_OUT)
            except OSError:
                pass
            self.linger(conn)
        while self.lingering:
            conn, deadline = next(iter(self.lingering.items()))
            if deadline > now:
                break
            self._closed(conn)

    def linger(self, conn: _Conn) -> None:
        """Close ``conn`` after its client has read the answer, without the event loop waiting for it.

        gunicorn's graceful close waits on the socket for up to 2 s in the
        event loop; here the socket waits in the poller instead.
        """
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drain, conn))
        except (OSError, ValueError, KeyError):
            util.close(conn.sock)
            return
        conn.registered = True
        self.lingering[conn] = time.monotonic() + LINGER

    def _drain(self, conn: _Conn, _sock: Any) -> None:
        try:
            if conn.sock.recv(_RECV):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._closed(conn)

    def _closed(self, conn: _Conn) -> None:
        self.lingering.pop(conn, None)
        if conn.registered:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.registered = False
        util.close(conn.sock)


def _scan(conn: _Conn, body_limit: int, header_limit: int) -> int:
    """Whether the request in ``conn.buf`` is whole (``_WHOLE``), not yet (``_MORE``) or is not to be buffered.

    Not buffered (``_HEADERS_ONLY``): headers or a body over the limits, or
    headers the parser will refuse anyway. An ``Expect: 100-continue`` is
    answered here, and taken out of the request (so it is not answered twice).
    """
    buf = conn.buf
    if conn.need < 0:
        end = buf.find(b"\r\n\r\n", max(0, conn.scanned - 3))
        if end < 0:
            conn.scanned = len(buf)
            return _MORE if len(buf) <= header_limit else _HEADERS_ONLY
        head = buf[:end + 2].lower()
        expect = head.find(b"\r\nexpect:")
        if expect >= 0:
            line_end = head.index(b"\r\n", expect + 2)
            if head[expect + 9:line_end].strip() == b"100-continue":
                try:
                    conn.sock.send(_CONTINUE)
                except OSError:
                    pass
                del buf[expect + 2:line_end + 2]
                return _scan(conn, body_limit, header_limit)
        head_end = end + 4
        if b"\r\ntransfer-encoding:" in head:
            conn.need = head_end
            conn.chunk_at = head_end
        else:
            start = head.find(b"\r\ncontent-length:")
            length = 0
            if start >= 0:
                value = head[start + 17:head.index(b"\r\n", start + 2)].strip()
                if not value.isdigit():
                    return _HEADERS_ONLY  # the parser answers 400
                length = int(value)
            if length > body_limit:
                return _HEADERS_ONLY
            conn.need = head_end + length
    if conn.chunk_at < 0:
        return _WHOLE if len(buf) >= conn.need else _MORE
    return _scan_chunks(conn, body_limit)


def _scan_chunks(conn: _Conn, body_limit: int) -> int:
    """The same for a chunked body, from the chunk where the last look stopped."""
    buf = conn.buf
    at = conn.chunk_at
    while True:
        line_end = buf.find(b"\r\n", at)
        if line_end < 0:
            return _MORE if len(buf) - at <= 1024 and at - conn.need <= body_limit else _HEADERS_ONLY
        try:
            size = int(bytes(buf[at:line_end]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            return _HEADERS_ONLY  # the parser answers 400
        if size == 0:  # the last chunk, then trailer fields up to an empty line
            if buf.find(b"\r\n\r\n", line_end) >= 0:
                return _WHOLE
            return _MORE if len(buf) - line_end <= 8192 else _HEADERS_ONLY
        at = line_end + 2 + size + 2
        conn.chunk_at = at
        if at - conn.need > body_limit:
            return _HEADERS_ONLY


def _setting(name: str, kind: type, default: Any) -> Any:
    """``$name`` as a number of ``kind`` (``default`` when unset); a ``ConfigError`` naming it for anything else."""
    value = os.environ.get(name)
    return parse_number(f"${name}", value, kind) if value else default


def body_limit(app: Any) -> int:
    """The largest body ``app`` takes: the wechatbot host's ``max_body`` (or Flask's ``MAX_CONTENT_LENGTH``)."""
    limits = []
    host = getattr(app, "extensions", {}).get("wechatbot")
    if host is not None:
        limits.append(host.config.max_body)
    flask_limit = getattr(app, "config", {}).get("MAX_CONTENT_LENGTH")
    if isinstance(flask_limit, int):
        limits.append(flask_limit)
    return max(limits) if limits else DEFAULT_BODY_LIMIT


def _stamping(app: Callable[..., Any], crowded: Callable[[], bool]) -> Callable[..., Any]:
    """``app``, putting the request's arrival (stamped by the worker) and ``crowded`` in its environ."""
    def stamped(environ: dict, start_response: Callable[..., Any]) -> Any:
        environ[ARRIVED] = _serving.arrived
        environ[CROWDED] = crowded
        return app(environ, start_response)

    return stamped
