"""One WebSocket connection to WeCom, from opening to closing, on the ``websockets`` library.

:func:`run_connection` opens the socket, subscribes, then keeps it: a reader
thread takes every frame the server sends (receipts to the send queue,
callbacks to the handler), while the calling thread sends the queue's due
frames and the heartbeat, and asks ``keep_going`` between rounds. It returns
why the connection ended; reconnecting is the caller's decision.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from . import protocol
from .sendqueue import SendQueue

log = logging.getLogger("wechatbot.longconn")

# Why a connection ended.
STOPPED = "stopped"  # keep_going said no (closing, or the lease is gone)
KICKED = "kicked"  # WeCom's disconnected_event: another connection took the bot
REFUSED = "refused"  # the subscription was refused (bot_id or secret)
DROPPED = "dropped"  # the socket closed, or never opened
DEAD = "dead"  # heartbeats went unanswered

# How long the sending thread sleeps at most between two rounds.
ROUND = 0.1


@dataclass(frozen=True)
class ConnectionSettings:
    """Where to connect and as which bot. ``repr`` leaves the secret out."""

    url: str
    bot_id: str
    secret: str
    heartbeat: float = protocol.HEARTBEAT_INTERVAL
    open_timeout: float = 10.0

    def __repr__(self) -> str:
        return f"ConnectionSettings(url={self.url!r}, bot_id={self.bot_id!r})"


@dataclass
class Ended:
    """How a connection ended: the reason, WeCom's errcode and errmsg, and whether it had subscribed."""

    reason: str
    subscribed: bool = False
    errcode: int | None = None
    errmsg: str = ""


def run_connection(settings: ConnectionSettings, queue: SendQueue, on_callback: Callable[[dict[str, Any]], None],
                   keep_going: Callable[[], bool], connected: threading.Event | None = None) -> Ended:
    """Connect, subscribe and serve until the connection ends; say how it ended.

    ``connected``, when given, is set while the connection is subscribed.
    """
    try:
        opened = connect(settings.url, open_timeout=settings.open_timeout, close_timeout=2,
                         ping_interval=20, ping_timeout=20, max_size=4 * 1024 * 1024)
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        log.warning("bot %s: cannot connect to %s: %s", settings.bot_id, settings.url, exc)
        return Ended(DROPPED)
    try:
        with opened as ws:
            refused = _subscribe(ws, settings)
            if refused is not None:
                return refused
            log.info("bot %s: subscribed on %s", settings.bot_id, settings.url)
            if connected is not None:
                connected.set()
            return _Session(ws, settings, queue, on_callback, keep_going).serve()
    finally:
        if connected is not None:
            connected.clear()
        lost = queue.connection_lost()
        unknown = sum(1 for outcome in lost if outcome.result == "unknown")
        if lost:
            log.warning("bot %s: %d frame(s) in flight when the connection ended: %d go again on the next "
                        "connection (stream frames and card updates show nothing twice), %d unknown, not resent",
                        settings.bot_id, len(lost), len(lost) - unknown, unknown)


def _subscribe(ws: ClientConnection, settings: ConnectionSettings) -> Ended | None:
    """Send ``aibot_subscribe`` and wait for its receipt; an :class:`Ended` when it failed."""
    sub = protocol.subscribe(settings.bot_id, settings.secret)
    deadline = time.monotonic() + settings.open_timeout
    try:
        ws.send(protocol.encode(sub))
        while True:
            received = protocol.decode(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if protocol.is_receipt(received) and protocol.req_id(received) == protocol.req_id(sub):
                break
    except (ConnectionClosed, TimeoutError, protocol.FrameError) as exc:
        log.warning("bot %s: no answer to aibot_subscribe: %s", settings.bot_id, exc)
        return Ended(DROPPED)
    errcode = int(received.get("errcode", 0) or 0)
    if errcode != protocol.OK:
        errmsg = str(received.get("errmsg", ""))
        log.error("bot %s: WeCom refused the subscription: errcode %s %s (check bot_id and secret, "
                  "made under 长连接 on the bot's API page)", settings.bot_id, errcode, errmsg)
        return Ended(REFUSED, errcode=errcode, errmsg=errmsg)
    return None


class _Session:
    """A subscribed connection: a reader thread and the sending loop."""

    def __init__(self, ws: ClientConnection, settings: ConnectionSettings, queue: SendQueue,
                 on_callback: Callable[[dict[str, Any]], None], keep_going: Callable[[], bool]) -> None:
        self.ws = ws
        self.settings = settings
        self.queue = queue
        self.on_callback = on_callback
        self.keep_going = keep_going
        self.kicked = threading.Event()
        self.closed = threading.Event()
        self.unanswered_pings = 0

    def serve(self) -> Ended:
        reader = threading.Thread(target=self._read, name=f"wechatbot-longconn-read-{self.settings.bot_id}", daemon=True)
        reader.start()
        try:
            return self._send_loop()
        finally:
            self.ws.close()
            reader.join(timeout=5)

    def _send_loop(self) -> Ended:
        next_ping = time.monotonic() + self.settings.heartbeat
        while True:
            if self.kicked.is_set():
                return Ended(KICKED, subscribed=True)
            if self.closed.is_set():
                return Ended(DROPPED, subscribed=True)
            if not self.keep_going():
                return Ended(STOPPED, subscribed=True)
            now = time.monotonic()
            try:
                if now >= next_ping:
                    if self.unanswered_pings >= protocol.MISSED_HEARTBEATS:
                        log.warning("bot %s: %d heartbeats unanswered: the connection is dead",
                                    self.settings.bot_id, self.unanswered_pings)
                        return Ended(DEAD, subscribed=True)
                    self.unanswered_pings += 1
                    self.ws.send(protocol.encode(protocol.ping()))
                    next_ping = now + self.settings.heartbeat
                self.queue.expire()
                self._send_due()
            except ConnectionClosed:
                return Ended(KICKED if self.kicked.is_set() else DROPPED, subscribed=True)
            self.queue.wait(min(ROUND, max(0.0, next_ping - time.monotonic())))

    def _send_due(self) -> None:
        due = self.queue.take_due()
        for n, item in enumerate(due):
            try:
                self.ws.send(protocol.encode(item.frame))
            except ConnectionClosed:
                self.queue.put_back(due[n:])
                raise

    def _read(self) -> None:
        try:
            while True:
                raw = self.ws.recv()
                try:
                    received = protocol.decode(raw)
                except protocol.FrameError as exc:
                    log.warning("bot %s: ignored a message that is not a frame: %s", self.settings.bot_id, exc)
                    continue
                self._dispatch(received)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self.queue.wake()

    def _dispatch(self, received: dict[str, Any]) -> None:
        if protocol.is_receipt(received):
            req_id = protocol.req_id(received)
            if req_id.startswith(protocol.PING):
                self.unanswered_pings = 0
                return
            outcome = self.queue.receipt(received)
            if outcome is None and not req_id.startswith(protocol.SUBSCRIBE):
                log.info("bot %s: a receipt for %s matched no frame in flight (late, after its timeout)",
                         self.settings.bot_id, req_id)
            return
        if protocol.is_disconnected_event(received):
            log.warning("bot %s: disconnected_event: another connection subscribed this bot", self.settings.bot_id)
            self.kicked.set()
            self.ws.close()
            return
        if received.get("cmd") in (protocol.MSG_CALLBACK, protocol.EVENT_CALLBACK):
            try:
                self.on_callback(received)
            except Exception:
                log.exception("bot %s: the handler of a %s failed", self.settings.bot_id, received.get("cmd"))
            return
        log.info("bot %s: ignored a frame with cmd %r", self.settings.bot_id, received.get("cmd"))
