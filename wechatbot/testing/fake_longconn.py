"""A fake WeCom long-connection server: a real WebSocket server on 127.0.0.1.

It speaks the AI bot's long-connection protocol as D:101463 describes it, and
lets a test be the WeCom side::

    with FakeLongConnServer({"bot-1": "secret-1"}) as fake:
        # point [wecom:NAME] ws_url at fake.url, start the host …
        fake.wait_subscribed("bot-1")
        req_id = fake.push_text("bot-1", "hello", msgid="m1", userid="zhangsan")
        final = fake.wait_final_reply(req_id)

What it checks, answering with the errcode the real server uses (or WeCom's
global codes where the page names none):

- ``aibot_subscribe`` with the wrong bot_id or secret: 853000 (the socket
  stays open); any other frame before subscribing: 40058;
- a new subscription of a bot sends the old connection ``disconnected_event``
  and closes it 0.2 s later: one valid connection per bot;
- a reply to a req_id it never pushed: 846604; a stream frame after the
  stream's ``finish: true``: 846608; a msgtype the command does not take: 40008;
- a second frame for a req_id whose receipt is still outstanding: 6000 (and
  it is recorded in :attr:`violations`);
- every reply and push counts against its conversation's 30 a minute and
  1000 an hour: 45009 beyond.

Every frame it received is recorded in :attr:`frames`; receipts can be
delayed or dropped, a frame refused with any errcode (:class:`Refuse`: -1
busy, 45009 …) or the connection cut when a frame arrives, before or after it
is applied (:data:`CUT`, :data:`CUT_AFTER`), all through
:meth:`receipt_policy`; heartbeats can be left unanswered, connections kicked
or dropped without a closing handshake, and new ones refused while
:attr:`accepting` is False (WeCom unreachable).
"""
from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from ..longconn import protocol

@dataclass(frozen=True)
class Refuse:
    """A receipt policy's answer: refuse the frame (not applied) with this errcode."""

    errcode: int
    errmsg: str = "refused by the test"


#: A receipt policy's answer: cut the connection as the frame arrives, before applying it.
CUT = "cut"
#: A receipt policy's answer: apply the frame, then cut the connection before its receipt.
CUT_AFTER = "cut-after"

# How a receipt is answered: seconds to wait (0: at once), None to drop it, a Refuse, CUT or CUT_AFTER.
ReceiptPolicy = Callable[[dict[str, Any], int], "float | None | Refuse | str"]


@dataclass
class Received:
    """One frame the server received, on which connection, when (monotonic)."""

    conn_id: int
    frame: dict[str, Any]
    at: float

    @property
    def cmd(self) -> str:
        return str(self.frame.get("cmd", ""))

    @property
    def req_id(self) -> str:
        return protocol.req_id(self.frame)


@dataclass
class _Conn:
    conn_id: int
    ws: ServerConnection
    opened: float
    bot_id: str | None = None
    subscribed_at: float | None = None
    closed_at: float | None = None
    kicked: bool = False


@dataclass
class _Pushed:
    """A callback the server pushed: what replies it may get."""

    bot_id: str
    cmd: str
    body: dict[str, Any]
    at: float
    replies: list[dict[str, Any]] = field(default_factory=list)
    finished_streams: set[str] = field(default_factory=set)
    outstanding: int = 0  # receipts not yet sent for this req_id

    @property
    def eventtype(self) -> str:
        return str((self.body.get("event") or {}).get("eventtype", ""))

    @property
    def conversation(self) -> str:
        return protocol.conversation_of(self.body)


class FakeLongConnServer:
    """The WeCom side of the long connection, for tests."""

    def __init__(self, bots: dict[str, str] | None = None, *, per_minute: int = 30, per_hour: int = 1000,
                 close_after_kick: float = 0.2) -> None:
        self.bots = dict(bots or {})
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.close_after_kick = close_after_kick
        self.frames: list[Received] = []
        self.violations: list[str] = []
        self.answer_pings = True
        #: While False, every new connection is closed at once (WeCom cannot be reached).
        self.accepting = True
        self._policy: ReceiptPolicy = lambda frame, nth: 0.0
        self._conns: dict[int, _Conn] = {}
        self._pushed: dict[str, _Pushed] = {}
        self._sent_by_conversation: dict[str, deque[float]] = defaultdict(deque)
        self._next_id = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- running -------------------------------------------------------------

    def start(self) -> FakeLongConnServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._server = serve(self._serve, sock=sock, ping_interval=None, compression=None)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-longconn", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeLongConnServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def add_bot(self, bot_id: str, secret: str) -> None:
        self.bots[bot_id] = secret

    # -- what the test controls ---------------------------------------------

    def receipt_policy(self, policy: ReceiptPolicy) -> None:
        """Decide each reply's receipt: ``policy(frame, nth)`` → delay in seconds, None to drop it,
        :class:`Refuse` to answer an errcode instead, :data:`CUT` / :data:`CUT_AFTER` to cut the connection.

        ``nth`` counts the frames received for that req_id and command (1 for the first).
        Subscribe and ping receipts are not affected, nor frames the server refuses by its own rules.
        """
        self._policy = policy

    def push_message(self, bot_id: str, body: dict[str, Any]) -> str:
        """Push an ``aibot_msg_callback`` to the bot's connection; return its req_id."""
        return self._push(bot_id, protocol.MSG_CALLBACK, body)

    def push_text(self, bot_id: str, content: str, *, msgid: str | None = None, userid: str = "zhangsan",
                  chatid: str | None = None) -> str:
        """Push a text message from ``userid`` (in group ``chatid`` when given)."""
        body: dict[str, Any] = {
            "msgid": msgid or secrets.token_hex(16), "aibotid": bot_id,
            "chattype": "group" if chatid else "single", "from": {"userid": userid},
            "msgtype": "text", "text": {"content": content},
        }
        if chatid:
            body["chatid"] = chatid
        return self.push_message(bot_id, body)

    def push_event(self, bot_id: str, eventtype: str, *, userid: str = "zhangsan", chatid: str | None = None,
                   msgid: str | None = None, **event_fields: Any) -> str:
        """Push an ``aibot_event_callback`` (enter_chat, template_card_event, feedback_event …)."""
        body: dict[str, Any] = {
            "msgid": msgid or secrets.token_hex(16), "create_time": int(time.time()), "aibotid": bot_id,
            "chattype": "group" if chatid else "single", "from": {"userid": userid},
            "msgtype": "event", "event": {"eventtype": eventtype, **({eventtype: event_fields} if event_fields else {})},
        }
        if chatid:
            body["chatid"] = chatid
        return self._push(bot_id, protocol.EVENT_CALLBACK, body)

    def kick(self, bot_id: str) -> None:
        """Tell the bot's connection ``disconnected_event`` and close it, as a new subscription does."""
        conn = self.active(bot_id)
        if conn is not None:
            self._kick(conn)

    def drop(self, bot_id: str) -> None:
        """Cut the bot's connection without a closing handshake (a network failure)."""
        conn = self.active(bot_id)
        if conn is not None:
            self._cut(conn)

    def _cut(self, conn: _Conn) -> None:
        with self._lock:
            conn.closed_at = conn.closed_at or time.monotonic()
            self._changed.notify_all()
        try:
            conn.ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.ws.socket.close()

    # -- what the test reads --------------------------------------------------

    def active(self, bot_id: str) -> _Conn | None:
        """The bot's subscribed, open connection (None: none)."""
        with self._lock:
            for conn in self._conns.values():
                if conn.bot_id == bot_id and conn.subscribed_at is not None and conn.closed_at is None and not conn.kicked:
                    return conn
        return None

    def subscriptions(self, bot_id: str) -> list[_Conn]:
        """Every connection that subscribed the bot, in order."""
        with self._lock:
            return sorted((c for c in self._conns.values() if c.bot_id == bot_id and c.subscribed_at is not None),
                          key=lambda c: c.subscribed_at or 0.0)

    def open_subscribed(self, bot_id: str) -> int:
        """How many subscribed connections of the bot are open right now."""
        with self._lock:
            return sum(1 for c in self._conns.values()
                       if c.bot_id == bot_id and c.subscribed_at is not None and c.closed_at is None)

    def received(self, cmd: str | None = None, req_id: str | None = None) -> list[Received]:
        """Frames received, optionally only one command's or one req_id's."""
        with self._lock:
            return [r for r in self.frames if (cmd is None or r.cmd == cmd) and (req_id is None or r.req_id == req_id)]

    def replies(self, req_id: str) -> list[dict[str, Any]]:
        """The reply frames received for a pushed callback, in order."""
        with self._lock:
            return list(self._pushed[req_id].replies)

    def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> Any:
        """Wait until ``condition()`` is true; return its value, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = condition()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake long-connection server: {what} not seen within {timeout:g} s")
                self._changed.wait(min(remaining, 0.05))

    def wait_subscribed(self, bot_id: str, count: int = 1, timeout: float = 10.0) -> _Conn:
        """Wait until the bot has subscribed ``count`` times in all; return the active connection."""
        return self.wait_for(lambda: len(self.subscriptions(bot_id)) >= count and self.active(bot_id),
                             timeout, f"subscription #{count} of {bot_id}")

    def wait_final_reply(self, req_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the reply that ends a callback's answer: a finished stream or any other reply."""
        def final() -> dict[str, Any] | None:
            for reply in self.replies(req_id):
                stream = protocol.stream_of(reply)
                if stream is None or stream.finish:
                    return reply
            return None
        return self.wait_for(final, timeout, f"the final reply to {req_id}")

    # -- the server side --------------------------------------------------------

    def _push(self, bot_id: str, cmd: str, body: dict[str, Any]) -> str:
        conn = self.active(bot_id)
        if conn is None:
            raise RuntimeError(f"bot {bot_id} has no subscribed connection to push to")
        req_id = secrets.token_hex(16)
        with self._lock:
            self._pushed[req_id] = _Pushed(bot_id, cmd, body, time.monotonic())
        self._send(conn, protocol.frame(cmd, req_id, body))
        return req_id

    def _send(self, conn: _Conn, out: dict[str, Any]) -> None:
        try:
            conn.ws.send(json.dumps(out, ensure_ascii=False))
        except (ConnectionClosed, OSError):
            pass

    def _receipt(self, conn: _Conn, req_id: str, errcode: int = 0, errmsg: str = "ok", **extra: Any) -> dict[str, Any]:
        return {"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": errmsg, **extra}

    def _serve(self, ws: ServerConnection) -> None:
        if not self.accepting:
            ws.socket.close()
            return
        with self._lock:
            self._next_id += 1
            conn = _Conn(self._next_id, ws, time.monotonic())
            self._conns[conn.conn_id] = conn
            self._changed.notify_all()
        try:
            for message in ws:
                try:
                    received = json.loads(message)
                except ValueError:
                    continue
                if not isinstance(received, dict):
                    continue
                with self._lock:
                    self.frames.append(Received(conn.conn_id, received, time.monotonic()))
                    self._changed.notify_all()
                self._handle(conn, received)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                if conn.closed_at is None:
                    conn.closed_at = time.monotonic()
                self._changed.notify_all()

    def _handle(self, conn: _Conn, received: dict[str, Any]) -> None:
        cmd = received.get("cmd")
        req_id = protocol.req_id(received)
        if cmd == protocol.SUBSCRIBE:
            self._subscribe(conn, received)
        elif conn.subscribed_at is None:
            self._send(conn, self._receipt(conn, req_id, 40058, "subscribe first (aibot_subscribe)"))
        elif cmd == protocol.PING:
            if self.answer_pings:
                self._send(conn, self._receipt(conn, req_id))
        elif cmd in (protocol.RESPOND, protocol.RESPOND_WELCOME, protocol.RESPOND_UPDATE, protocol.SEND):
            self._reply(conn, received)
        else:
            self._send(conn, self._receipt(conn, req_id, 40058, f"unknown cmd {cmd!r}"))

    def _subscribe(self, conn: _Conn, received: dict[str, Any]) -> None:
        body = received.get("body") or {}
        bot_id, secret = str(body.get("bot_id", "")), str(body.get("secret", ""))
        req_id = protocol.req_id(received)
        if bot_id not in self.bots or not secrets.compare_digest(self.bots[bot_id], secret):
            self._send(conn, self._receipt(conn, req_id, 853000, "invalid bot_id or secret"))
            return
        with self._lock:
            previous = [c for c in self._conns.values()
                        if c.bot_id == bot_id and c is not conn and c.subscribed_at is not None
                        and c.closed_at is None and not c.kicked]
            conn.bot_id = bot_id
            conn.subscribed_at = conn.subscribed_at or time.monotonic()
            self._changed.notify_all()
        self._send(conn, self._receipt(conn, req_id))
        for old in previous:
            self._kick(old)

    def _kick(self, conn: _Conn) -> None:
        with self._lock:
            conn.kicked = True
            self._changed.notify_all()
        event = {"msgid": secrets.token_hex(16), "create_time": int(time.time()), "aibotid": conn.bot_id,
                 "msgtype": "event", "event": {"eventtype": protocol.DISCONNECTED_EVENT}}
        self._send(conn, protocol.frame(protocol.EVENT_CALLBACK, secrets.token_hex(16), event))

        def close() -> None:
            time.sleep(self.close_after_kick)
            conn.ws.close(1000, "another connection subscribed this bot")

        threading.Thread(target=close, daemon=True).start()

    def _reply(self, conn: _Conn, received: dict[str, Any]) -> None:
        cmd = received["cmd"]
        req_id = protocol.req_id(received)
        body = received.get("body") or {}
        with self._lock:
            pushed = self._pushed.get(req_id)
            if cmd == protocol.SEND:
                pushed = self._pushed.setdefault(req_id, _Pushed(conn.bot_id or "", cmd, {"chatid": body.get("chatid")},
                                                                 time.monotonic()))
            errcode, errmsg = self._check(cmd, req_id, body, pushed)
            nth = len([r for r in self.frames if r.req_id == req_id and r.cmd == cmd])
            delay = self._policy(received, nth) if errcode == 0 else 0.0
            if delay == CUT or isinstance(delay, Refuse):  # not applied: its place in the budget is given back
                self._sent_by_conversation[self._conversation(cmd, body, pushed)].pop()
            if isinstance(delay, Refuse):
                errcode, errmsg, delay = delay.errcode, delay.errmsg, 0.0
            if pushed is not None and errcode != 6000 and delay != CUT:
                pushed.outstanding += 1
            if pushed is not None and errcode == 0 and delay != CUT:
                pushed.replies.append(received)
                stream = protocol.stream_of(received)
                if stream is not None and stream.finish:
                    pushed.finished_streams.add(stream.stream_id)
            self._changed.notify_all()
        if delay in (CUT, CUT_AFTER):
            if delay == CUT_AFTER:
                self._settle(pushed)
            self._cut(conn)
            return
        if errcode == 6000:  # answered at once, and it does not end the outstanding frame
            self._send(conn, self._receipt(conn, req_id, errcode, errmsg))
            return
        if delay is None:
            self._settle(pushed)
            return
        receipt = self._receipt(conn, req_id, errcode, errmsg)

        def answer() -> None:
            if delay:
                time.sleep(delay)
            self._settle(pushed)
            self._send(conn, receipt)

        if delay:
            threading.Thread(target=answer, daemon=True).start()
        else:
            answer()

    def _settle(self, pushed: _Pushed | None) -> None:
        if pushed is not None:
            with self._lock:
                pushed.outstanding -= 1
                self._changed.notify_all()

    def _check(self, cmd: str, req_id: str, body: dict[str, Any], pushed: _Pushed | None) -> tuple[int, str]:
        """The errcode WeCom would answer a reply frame with (0: accepted). Called under the lock."""
        if pushed is None:
            return protocol.ERR_WINDOW_CLOSED, "unknown req_id, or its reply window is over"
        if pushed.outstanding > 0:
            self.violations.append(f"a second {cmd} for {req_id} while one was in flight")
            return protocol.ERR_CONFLICT, "more than one callers at the same time, data version conflict"
        try:
            protocol.check_reply({"cmd": cmd, "body": body})
        except ValueError as exc:
            return 40008, str(exc)
        if cmd == protocol.RESPOND_WELCOME and pushed.eventtype != "enter_chat":
            return 40058, "a welcome answers enter_chat only"
        if cmd == protocol.RESPOND_UPDATE and pushed.eventtype != "template_card_event":
            return 40058, "a card update answers template_card_event only"
        if cmd == protocol.RESPOND and pushed.cmd != protocol.MSG_CALLBACK:
            return 40058, "aibot_respond_msg answers a message callback"
        stream = protocol.stream_of({"cmd": cmd, "body": body})
        if stream is not None:
            if stream.stream_id in pushed.finished_streams:
                return protocol.ERR_STREAM_CLOSED, "the stream is finished and can no longer be updated"
            if len(stream.content.encode("utf-8")) > 20480:
                return 40058, "stream content over 20480 bytes"
        sent = self._sent_by_conversation[self._conversation(cmd, body, pushed)]
        now = time.monotonic()
        while sent and sent[0] <= now - 3600:
            sent.popleft()
        if len(sent) >= self.per_hour or sum(1 for t in sent if t > now - 60) >= self.per_minute:
            return protocol.ERR_FREQUENCY, "api freq out of limit (per conversation)"
        sent.append(now)
        return 0, "ok"

    @staticmethod
    def _conversation(cmd: str, body: dict[str, Any], pushed: _Pushed) -> str:
        """The conversation whose budget a reply frame spends."""
        return str(body.get("chatid", "")) if cmd == protocol.SEND else pushed.conversation
