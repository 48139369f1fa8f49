"""A fake WeCom server API: a real HTTP server on 127.0.0.1 for tests.

:class:`FakeWeComAPI` answers the endpoints the bot host uses (``gettoken``,
``message/send``, ``message/update_template_card``, ``media/get``,
``media/upload``, ``webhook/send`` and the AI bot's ``response_url``,
``aibot/response``) the way WeCom does: HTTP 200 with a JSON
``errcode`` for failures, files streamed with ``Content-Disposition`` and
``Range`` support. It records everything it receives, and errors, expired
tokens, slow answers and broken downloads can be injected on demand.

It runs in a background thread of the test process. The host under test may
run in other processes (gunicorn workers): they reach it over HTTP through
:attr:`FakeWeComAPI.url`, and every piece of state lives here::

    with FakeWeComAPI() as fake:
        fake.add_app("ww_corp", "app-secret", agent_id=1000002)
        api = WeComAPI("ww_corp", "app-secret", 1000002, store, api_base=fake.url)
        api.send_text("zhangsan", "hello")
        assert fake.sent[0]["text"]["content"] == "hello"
"""
from __future__ import annotations

import json
import os
import re
import secrets
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from ..wecom.limits import MSGTYPES, NEWS_ARTICLE_LIMIT, TEXT_LIMIT

__all__ = ["FakeWeComAPI", "RecordedRequest", "Upload"]

MAX_ARTICLES = NEWS_ARTICLE_LIMIT
INTERACTIVE_CARDS = frozenset({"button_interaction", "vote_interaction", "multiple_interaction"})
# type -> (largest size in bytes, WeCom's errcode for a file that is too big)
UPLOAD_LIMITS = {
    "image": (10 * 1024 * 1024, 40009),
    "voice": (2 * 1024 * 1024, 40006),
    "video": (10 * 1024 * 1024, 40011),
    "file": (20 * 1024 * 1024, 40006),
}
#: The fake's answer to a response_url that is unknown, used or expired (WeCom
#: documents no code for it).
RESPONSE_CODE_INVALID = 95001
#: A markdown answer through response_url holds at most this many bytes.
RESPONSE_MARKDOWN_LIMIT = 20480
ERRMSGS = {
    -1: "system busy",
    40001: "invalid credential",
    40004: "invalid media type",
    40005: "invalid file type",
    40006: "invalid file size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40011: "invalid video size",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40033: "invalid charset. please check your request, if include \\uxxxx will create fail!",
    40056: "invalid agentid",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41005: "media data missing",
    41006: "media_id missing",
    41011: "agentid missing",
    42001: "access_token expired",
    44004: "empty content",
    45002: "content size out of limit",
    45008: "article size out of limit",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    47001: "data format error",
    48002: "api forbidden",
    40068: "invalid tagid",
    60020: "not allow to access from your ip",
    60111: "userid not found",
    86003: "chatid not exist",
    81013: "user & party & tag all invalid",
    830002: "file size too large, please use range download",
    93000: "invalid webhook url",
    RESPONSE_CODE_INVALID: "invalid response_code: unknown, used or expired (one use, 1 hour)",
}
# An escape like \u4e2d in a request body (one not itself escaped as \\u). WeCom
# answers 40033 for those, so a client must send UTF-8 (ensure_ascii=False).
_UNICODE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[0-9a-fA-F]{4}")
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as it arrived."""

    method: str
    path: str  # relative to /cgi-bin/, e.g. "message/send"
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Upload:
    """One file received by ``media/upload``."""

    media_id: str
    type: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class _App:
    corp_id: str
    secret: str
    agent_id: int | None


@dataclass
class _Token:
    app: _App
    expires_at: float


@dataclass
class _Media:
    data: bytes | None
    path: Path | None
    filename: str
    content_type: str
    content_disposition: str | None
    cut_after: int | None
    cut_times: int
    require_range: bool

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]


@dataclass
class _State:
    """Everything the fake knows; guarded by ``cond``."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    apps: list[_App] = field(default_factory=list)
    tokens: dict[str, _Token] = field(default_factory=dict)
    media: dict[str, _Media] = field(default_factory=dict)
    webhook_keys: set[str] = field(default_factory=set)
    failures: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)
    http_failures: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    down: dict[str, tuple[int | None, float]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)
    card_updates: list[dict] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    webhook_sent: list[tuple[str, dict]] = field(default_factory=list)
    response_codes: dict[str, float] = field(default_factory=dict)
    bot_files: dict[str, bytes] = field(default_factory=dict)
    responses: list[tuple[str, dict]] = field(default_factory=list)
    users: dict[str, list[int]] = field(default_factory=dict)
    tags: dict[str, tuple[list[str], list[int]]] = field(default_factory=dict)
    app_chats: set[str] = field(default_factory=set)
    appchat_sent: list[dict] = field(default_factory=list)
    gettoken_calls: int = 0


def _normalize(path: str) -> str:
    """``/cgi-bin/message/send`` and ``message/send`` name the same endpoint."""
    path = path.strip("/")
    return path[len("cgi-bin/"):] if path.startswith("cgi-bin/") else path


def _content_disposition(filename: str) -> str:
    try:
        filename.encode("ascii")
    except UnicodeEncodeError:
        quoted = urllib.parse.quote(filename, safe="")
        fallback = "media" + os.path.splitext(filename)[1].encode("ascii", "ignore").decode()
        return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"
    return f'attachment; filename="{filename}"'


def _parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(first, last) for ``bytes=a-b``; None to ignore the header; "unsatisfiable"."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or (not match.group(1) and not match.group(2)):
        return None  # several ranges or garbage: answer the whole file, as RFC 9110 allows
    first_s, last_s = match.groups()
    if not first_s:  # bytes=-N: the last N bytes
        length = int(last_s)
        if length == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    first = int(first_s)
    last = min(int(last_s), size - 1) if last_s else size - 1
    if first >= size or first > last:
        return "unsatisfiable"
    return first, last


def _multipart_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/form-data body into (disposition params, content) pairs."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        return []
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        params: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                for key, quoted, bare in re.findall(r';\s*([\w*]+)="?(?:([^"]*)"|([^;]*))', value):
                    params[key.lower()] = quoted or bare.strip()
            elif name.strip().lower() == "content-type":
                params["content-type"] = value.strip()
        parts.append((params, content))
    return parts


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Hundreds of concurrent clients connect at once in the concurrency tests;
    # the default backlog of 5 would make the kernel drop and delay their SYNs.
    request_queue_size = 1024

    def __init__(self, fake: FakeWeComAPI) -> None:
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on keep-alive clients so their handler threads end."""
        with self.sockets_lock:
            sockets, self.open_sockets = list(self.open_sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm the
    # second one waits for the client's delayed ACK (about 40 ms per answer).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the recorded requests are the log

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            self.server.fake._dispatch(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up (a cancelled download)

    # Helpers the fake's endpoint methods use to answer.

    def send_json(self, obj: dict, status: int = 200) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, errcode: int, errmsg: str | None = None) -> None:
        ip = self.client_address[0]
        text = errmsg or ERRMSGS.get(errcode, "error")
        self.send_json({
            "errcode": errcode,
            "errmsg": f"{text}, hint: [{int(time.time())}-fake], from ip: {ip}, "
                      f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}",
        })


class FakeWeComAPI:
    """A fake WeCom server API on ``127.0.0.1`` (a random free port), for tests.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`).
    Register apps with :meth:`add_app` and files with :meth:`add_media`, point
    the client's ``api_base`` at :attr:`url`, then inspect :attr:`sent`,
    :attr:`requests`, :attr:`uploads`, :attr:`webhook_sent` and
    :attr:`gettoken_calls`. All methods are thread-safe.

    ``expires_in`` is what ``gettoken`` announces (and enforces) for new
    tokens; ``delay`` is a pause, in seconds, before every answer.
    """

    def __init__(self, expires_in: int = 7200, delay: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay = delay
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: dict[str, Callable[[_Handler, dict[str, str], bytes, _Token | None], None]] = {
            "message/send": self._message_send,
            "message/update_template_card": self._update_template_card,
            "media/get": self._media_get,
            "media/upload": self._media_upload,
            "user/get": self._user_get,
            "tag/get": self._tag_get,
            "appchat/send": self._appchat_send,
        }

    # Life cycle

    def start(self) -> FakeWeComAPI:
        """Start serving in a background thread; returns self."""
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name="fake-wecom-api", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and hang up on every open connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeWeComAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to use as ``api_base``, e.g. ``http://127.0.0.1:43121``."""
        if self._server is None:
            raise RuntimeError("the fake WeCom API is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # Set-up

    def add_app(self, corp_id: str, secret: str, agent_id: int | str | None = None) -> None:
        """Accept ``gettoken`` for this corp id and secret.

        With ``agent_id``, ``message/send`` with this app's token must carry
        that agentid (else errcode 40056), as WeCom checks.
        """
        with self._state.cond:
            self._state.apps.append(_App(corp_id, secret, None if agent_id in (None, "") else int(agent_id)))

    def add_media(
        self,
        media_id: str,
        data: bytes | str | os.PathLike[str],
        filename: str | None = None,
        content_type: str = "application/octet-stream",
        *,
        content_disposition: str | bytes | None = None,
        cut_after: int | None = None,
        cut_times: int = 1,
        require_range: bool = False,
    ) -> None:
        """Serve a file at ``media/get?media_id=…``.

        ``data`` is the content, or the path of a file streamed from disk (for
        large files). ``filename`` goes into ``Content-Disposition`` (default
        ``<media_id>``); ``content_disposition`` replaces that header verbatim
        (bytes are sent as they are, for raw UTF-8 or hostile names).
        ``cut_after=N`` breaks the connection after N bytes of the next
        download, ``cut_times`` times in a row. ``require_range`` answers errcode 830002 to a request without
        ``Range``, as WeCom does for large files.
        """
        if isinstance(data, bytes):
            content, path = data, None
        else:
            content, path = None, Path(data)
        if isinstance(content_disposition, bytes):
            content_disposition = content_disposition.decode("latin-1")  # written back byte for byte
        media = _Media(content, path, filename or media_id, content_type, content_disposition, cut_after,
                       cut_times if cut_after is not None else 0, require_range)
        with self._state.cond:
            self._state.media[media_id] = media

    def add_webhook(self, key: str) -> None:
        """Accept ``webhook/send?key=KEY`` (other keys get errcode 93000)."""
        with self._state.cond:
            self._state.webhook_keys.add(key)

    def webhook_url(self, key: str) -> str:
        """Accept ``key`` and return its full webhook URL, as a group robot's callback carries it."""
        self.add_webhook(key)
        return f"{self.url}/cgi-bin/webhook/send?key={urllib.parse.quote(key)}"

    def add_response_url(self, valid_for: float = 3600.0) -> str:
        """A fresh AI bot ``response_url``: usable once, for ``valid_for`` seconds (D:101138)."""
        code = secrets.token_urlsafe(16)
        with self._state.cond:
            self._state.response_codes[code] = time.time() + valid_for
        return f"{self.url}/cgi-bin/aibot/response?response_code={code}"
    def add_user(self, userid: str, departments: list[int] | tuple[int, ...] = (1,)) -> None:
        """Answer ``user/get`` for ``userid`` with these department ids."""
        with self._state.cond:
            self._state.users[userid] = list(departments)

    def add_tag(self, tagid: int | str, users: list[str] | tuple[str, ...] = (), departments: list[int] | tuple[int, ...] = ()) -> None:
        """Answer ``tag/get`` for ``tagid`` with these members (users and whole departments)."""
        with self._state.cond:
            self._state.tags[str(tagid)] = (list(users), list(departments))

    def add_app_chat(self, chatid: str) -> None:
        """Accept ``appchat/send`` to this app chat (群聊会话)."""
        with self._state.cond:
            self._state.app_chats.add(chatid)

    def add_bot_file(self, data: bytes, encoding_aes_key: str) -> str:
        """Serve ``data`` the way an AI bot message's ``url`` does (AES-256-CBC with the
        bot's key); returns the URL."""
        from ..wecom.bot_files import encrypt_bot_file

        file_id = secrets.token_hex(8)
        with self._state.cond:
            self._state.bot_files[file_id] = encrypt_bot_file(data, encoding_aes_key)
        return f"{self.url}/aibot-files/{file_id}"

    def fail_next(self, path: str, errcode: int, times: int = 1, errmsg: str | None = None) -> None:
        """Answer the next ``times`` requests to ``path`` (e.g. ``"message/send"``) with ``errcode``."""
        with self._state.cond:
            self._state.failures.setdefault(_normalize(path), []).extend([(errcode, errmsg)] * times)

    def fail_http_next(self, path: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``path`` with HTTP ``status`` and no JSON (a broken gateway)."""
        with self._state.cond:
            self._state.http_failures.setdefault(_normalize(path), []).extend([status] * times)

    def go_down(self, *paths: str, status: int | None = 500, hang: float = 0.0) -> None:
        """Until :meth:`come_back`, fail every request to ``paths`` without handling it.

        With ``status``, answer that HTTP status and no JSON (a broken
        gateway); with ``status=None``, hold the request ``hang`` seconds and
        hang up without answering (a network that swallows requests, which a
        client sees as a timeout). Either way nothing is sent or recorded as sent.
        """
        with self._state.cond:
            for path in paths:
                self._state.down[_normalize(path)] = (status, hang)

    def come_back(self, *paths: str) -> None:
        """End :meth:`go_down` for ``paths`` (every path when none is named)."""
        with self._state.cond:
            for path in paths or list(self._state.down):
                self._state.down.pop(_normalize(path), None)

    def set_delay(self, seconds: float, path: str | None = None) -> None:
        """Pause ``seconds`` before answering ``path`` (every path when None)."""
        if path is None:
            self.delay = seconds
        else:
            with self._state.cond:
                self._state.delays[_normalize(path)] = seconds

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid: using one answers errcode 42001."""
        with self._state.cond:
            for token in self._state.tokens.values():
                token.expires_at = 0.0

    def clear(self) -> None:
        """Forget recorded requests, messages, uploads and the gettoken count."""
        with self._state.cond:
            state = self._state
            state.requests.clear()
            state.sent.clear()
            state.card_updates.clear()
            state.uploads.clear()
            state.webhook_sent.clear()
            state.responses.clear()
            state.appchat_sent.clear()
            state.gettoken_calls = 0

    # What was received (copies, safe to keep)

    @property
    def gettoken_calls(self) -> int:
        """How many ``gettoken`` requests arrived (failed ones included)."""
        with self._state.cond:
            return self._state.gettoken_calls

    @property
    def sent(self) -> list[dict]:
        """Every ``message/send`` body accepted, in arrival order."""
        with self._state.cond:
            return list(self._state.sent)

    @property
    def card_updates(self) -> list[dict]:
        """Every ``message/update_template_card`` body accepted."""
        with self._state.cond:
            return list(self._state.card_updates)

    @property
    def uploads(self) -> list[Upload]:
        """Every file accepted by ``media/upload``."""
        with self._state.cond:
            return list(self._state.uploads)

    @property
    def webhook_sent(self) -> list[tuple[str, dict]]:
        """Every ``(key, payload)`` accepted by ``webhook/send``."""
        with self._state.cond:
            return list(self._state.webhook_sent)

    @property
    def responses(self) -> list[tuple[str, dict]]:
        """Every ``(response_code, body)`` accepted by an AI bot ``response_url``."""
        with self._state.cond:
            return list(self._state.responses)

    def wait_for_responses(self, n: int, timeout: float = 5.0) -> list[tuple[str, dict]]:
        """Wait until ``n`` response_url answers arrived; returns them, or raises TimeoutError."""
        with self._state.cond:
            if not self._state.cond.wait_for(lambda: len(self._state.responses) >= n, timeout):
                raise TimeoutError(f"expected {n} response_url answers within {timeout}s, got {len(self._state.responses)}")
            return list(self._state.responses)

    def wait_for_webhooks(self, n: int, timeout: float = 5.0) -> list[tuple[str, dict]]:
        """Wait until ``n`` webhook messages arrived; returns them, or raises TimeoutError."""
        with self._state.cond:
            if not self._state.cond.wait_for(lambda: len(self._state.webhook_sent) >= n, timeout):
                raise TimeoutError(f"expected {n} webhook messages within {timeout}s, got {len(self._state.webhook_sent)}")
            return list(self._state.webhook_sent)

    @property
    def appchat_sent(self) -> list[dict]:
        """Every ``appchat/send`` body accepted."""
        with self._state.cond:
            return list(self._state.appchat_sent)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, answered or not."""
        with self._state.cond:
            return list(self._state.requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The received requests for one endpoint."""
        path = _normalize(path)
        return [r for r in self.requests if r.path == path]

    def wait_for_sent(self, n: int, timeout: float = 5.0) -> list[dict]:
        """Wait until ``n`` messages were sent; returns them, or raises TimeoutError."""
        with self._state.cond:
            if not self._state.cond.wait_for(lambda: len(self._state.sent) >= n, timeout):
                raise TimeoutError(f"expected {n} sent messages within {timeout}s, got {len(self._state.sent)}")
            return list(self._state.sent)

    # Serving

    def _dispatch(self, handler: _Handler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        path = _normalize(parsed.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        state = self._state
        with state.cond:
            state.requests.append(RecordedRequest(handler.command, path, query, dict(handler.headers), body))
            if path == "gettoken":
                state.gettoken_calls += 1
            delay = state.delays.get(path, self.delay)
            pending = state.failures.get(path)
            failure = pending.pop(0) if pending else None
            broken = state.http_failures.get(path)
            http_status = broken.pop(0) if broken else None
            down = state.down.get(path)
        if down is not None:
            status, hang = down
            if status is None:
                time.sleep(hang)
                handler.close_connection = True  # no answer at all
                return
            http_status = status
        if delay:
            time.sleep(delay)
        if http_status is not None:
            handler.send_response(http_status)
            handler.send_header("Content-Type", "text/html")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if failure is not None:
            handler.send_error_json(*failure)
            return
        if path == "gettoken":
            self._gettoken(handler, query)
        elif path == "webhook/send":
            self._webhook_send(handler, query, body)
        elif path.startswith("aibot-files/"):
            with state.cond:
                data = state.bot_files.get(path.split("/", 1)[1])
            if data is None:
                handler.send_response(404)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
            else:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/octet-stream")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
        elif path == "aibot/response":
            self._aibot_response(handler, query, body)
        elif path in self._routes:
            token = self._check_token(handler, query)
            if token is not None:
                self._routes[path](handler, query, body, token)
        else:
            handler.send_error_json(404, f"api not found: /cgi-bin/{path}")

    def _check_token(self, handler: _Handler, query: dict[str, str]) -> _Token | None:
        value = query.get("access_token")
        if not value:
            handler.send_error_json(41001)
            return None
        with self._state.cond:
            token = self._state.tokens.get(value)
        if token is None:
            handler.send_error_json(40014)
            return None
        if token.expires_at <= time.time():
            handler.send_error_json(42001)
            return None
        return token

    def _gettoken(self, handler: _Handler, query: dict[str, str]) -> None:
        corp_id, secret = query.get("corpid", ""), query.get("corpsecret", "")
        if not corp_id:
            return handler.send_error_json(41002)
        if not secret:
            return handler.send_error_json(41004)
        with self._state.cond:
            apps = [a for a in self._state.apps if a.corp_id == corp_id]
            app = next((a for a in apps if a.secret == secret), None)
            if app is not None:
                value = secrets.token_urlsafe(48)
                self._state.tokens[value] = _Token(app, time.time() + self.expires_in)
        if not apps:
            return handler.send_error_json(40013)
        if app is None:
            return handler.send_error_json(40001)
        handler.send_json({"errcode": 0, "errmsg": "ok", "access_token": value, "expires_in": self.expires_in})

    def _json_body(self, handler: _Handler, body: bytes) -> dict | None:
        if _UNICODE_ESCAPE.search(body):
            handler.send_error_json(40033)
            return None
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict):
            handler.send_error_json(47001)
            return None
        return data

    def _check_agent(self, handler: _Handler, data: dict, token: _Token) -> bool:
        expected = token.app.agent_id
        if expected is None:
            return True
        if "agentid" not in data:
            handler.send_error_json(41011)
            return False
        try:
            ok = int(data["agentid"]) == expected
        except (TypeError, ValueError):
            ok = False
        if not ok:
            handler.send_error_json(40056)
        return ok

    def _message_send(self, handler: _Handler, query: dict[str, str], body: bytes, token: _Token | None) -> None:
        data = self._json_body(handler, body)
        if data is None or not self._check_agent(handler, data, token):  # type: ignore[arg-type]
            return
        msgtype = data.get("msgtype")
        if msgtype not in MSGTYPES or not isinstance(data.get(msgtype), dict):
            return handler.send_error_json(40008)
        if not any(data.get(k) for k in ("touser", "toparty", "totag")):
            return handler.send_error_json(81013)
        payload = data[msgtype]
        if msgtype in ("text", "markdown"):
            content = payload.get("content")
            if not content:
                return handler.send_error_json(44004)
            if len(str(content).encode("utf-8")) > TEXT_LIMIT:
                return handler.send_error_json(45002)
        if msgtype in ("news", "mpnews") and not 1 <= len(payload.get("articles") or []) <= MAX_ARTICLES:
            return handler.send_error_json(45008)
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": secrets.token_hex(16)}
        if msgtype == "template_card" and payload.get("card_type") in INTERACTIVE_CARDS:
            answer["response_code"] = secrets.token_urlsafe(24)
        with self._state.cond:
            self._state.sent.append(data)
            self._state.cond.notify_all()
        handler.send_json(answer)

    def _user_get(self, handler: _Handler, query: dict[str, str], body: bytes, token: _Token | None) -> None:
        with self._state.cond:
            departments = self._state.users.get(query.get("userid", ""))
        if departments is None:
            return handler.send_error_json(60111)
        handler.send_json({"errcode": 0, "errmsg": "ok", "userid": query["userid"], "department": departments})

    def _tag_get(self, handler: _Handler, query: dict[str, str], body: bytes, token: _Token | None) -> None:
        with self._state.cond:
            tag = self._state.tags.get(query.get("tagid", ""))
        if tag is None:
            return handler.send_error_json(40068)
        handler.send_json({"errcode": 0, "errmsg": "ok", "tagname": f"tag{query['tagid']}",
                           "userlist": [{"userid": u, "name": u} for u in tag[0]], "partylist": tag[1]})

    def _appchat_send(self, handler: _Handler, query: dict[str, str], body: bytes, token: _Token | None) -> None:
        data = self._json_body(handler, body)
        if data is None:
            return
        with self._state.cond:
            known = data.get("chatid") in self._state.app_chats
        if not known:
            return handler.send_error_json(86003)
        msgtype = data.get("msgtype")
        if msgtype not in MSGTYPES or not isinstance(data.get(msgtype), dict):
            return handler.send_error_json(40008)
        with self._state.cond:
            self._state.appchat_sent.append(data)
            self._state.cond.notify_all()
        handler.send_json({"errcode": 0, "errmsg": "ok"})

    def _update_template_card(self, handler: _Handler, query: dict[str, str], body: bytes, token: _Token | None) -> None:
        data = self._json_body(handler, body)
        if data is None or not self._check_agent(handler, data, token):  # type: ignore[arg-type]
            return
        if not data.get("response_code"):
            return handler.send_error_json(47001, "response_code missing")
        with self._state.cond:
            self._state.card_updates.append(data)
        handler.send_json({"errcode": 0, "errmsg": "ok", "invaliduser": []})

    def _media_get(self, handler: _Handler, query: dict[str, str], body: bytes, token: _Token | None) -> None:
        media_id = query.get("media_id")
        if not media_id:
            return handler.send_error_json(41006)
        with self._state.cond:
            media = self._state.media.get(media_id)
            cut = None
            if media is not None and media.cut_times > 0:
                cut, media.cut_times = media.cut_after, media.cut_times - 1
        if media is None:
            return handler.send_error_json(40007)
        range_header = handler.headers.get("Range")
        if media.require_range and not range_header:
            return handler.send_error_json(830002)
        size = media.size
        span = _parse_range(range_header, size) if range_header else None
        if span == "unsatisfiable":
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{size}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        first, last = span if isinstance(span, tuple) else (0, size - 1)
        handler.send_response(206 if isinstance(span, tuple) else 200)
        handler.send_header("Content-Type", media.content_type)
        handler.send_header("Content-Disposition", media.content_disposition or _content_disposition(media.filename))
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(last - first + 1))
        if isinstance(span, tuple):
            handler.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        handler.end_headers()
        self._stream(handler, media, first, last - first + 1, cut)

    @staticmethod
    def _stream(handler: _Handler, media: _Media, offset: int, length: int, cut: int | None) -> None:
        budget = length if cut is None else min(length, cut)
        if media.data is not None:
            view = memoryview(media.data)[offset:offset + budget]
            for start in range(0, len(view), _CHUNK):
                handler.wfile.write(view[start:start + _CHUNK])
        else:
            with open(media.path, "rb") as fh:  # type: ignore[arg-type]
                fh.seek(offset)
                remaining = budget
                while remaining > 0:
                    chunk = fh.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    handler.wfile.write(chunk)
                    remaining -= len(chunk)
        if budget < length:
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)

    def _media_upload(self, handler: _Handler, query: dict[str, str], body: bytes, token: _Token | None) -> None:
        media_type = query.get("type", "")
        if media_type not in UPLOAD_LIMITS:
            return handler.send_error_json(40005)
        parts = _multipart_parts(handler.headers.get("Content-Type", ""), body)
        media = next(((p, c) for p, c in parts if p.get("name") == "media"), None)
        if media is None:
            return handler.send_error_json(41005)
        params, content = media
        limit, errcode = UPLOAD_LIMITS[media_type]
        if len(content) <= 5:
            return handler.send_error_json(40006)
        if len(content) > limit:
            return handler.send_error_json(errcode)
        # multipart encoders escape these three the HTML5 way
        filename = params.get("filename", "").replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n") or "media"
        content_type = params.get("content-type", "application/octet-stream")
        media_id = f"{media_type}-{secrets.token_hex(12)}"
        with self._state.cond:
            self._state.uploads.append(Upload(media_id, media_type, filename, content_type, content))
            self._state.media[media_id] = _Media(content, None, filename, content_type, None, None, 0, False)
        handler.send_json({
            "errcode": 0, "errmsg": "", "type": media_type, "media_id": media_id,
            "created_at": str(int(time.time())),
        })

    def _webhook_send(self, handler: _Handler, query: dict[str, str], body: bytes) -> None:
        key = query.get("key", "")
        with self._state.cond:
            known = key in self._state.webhook_keys
        if not known:
            return handler.send_error_json(93000)
        data = self._json_body(handler, body)
        if data is None:
            return
        msgtype = data.get("msgtype")
        if not msgtype or not isinstance(data.get(msgtype), dict):
            return handler.send_error_json(40008)
        with self._state.cond:
            self._state.webhook_sent.append((key, data))
            self._state.cond.notify_all()
        handler.send_json({"errcode": 0, "errmsg": "ok"})

    def _aibot_response(self, handler: _Handler, query: dict[str, str], body: bytes) -> None:
        code = query.get("response_code", "")
        with self._state.cond:
            expires = self._state.response_codes.get(code)
        if expires is None or expires <= time.time():
            return handler.send_error_json(RESPONSE_CODE_INVALID)
        data = self._json_body(handler, body)
        if data is None:
            return
        msgtype = data.get("msgtype")
        part = data.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype not in ("markdown", "template_card") or not isinstance(part, dict):
            return handler.send_error_json(40008)
        if msgtype == "markdown":
            content = part.get("content")
            if not isinstance(content, str) or not content:
                return handler.send_error_json(44004)
            if len(content.encode("utf-8")) > RESPONSE_MARKDOWN_LIMIT:
                return handler.send_error_json(45002)
        with self._state.cond:
            if self._state.response_codes.pop(code, None) is None:  # used meanwhile
                return handler.send_error_json(RESPONSE_CODE_INVALID)
            self._state.responses.append((code, data))
            self._state.cond.notify_all()
        handler.send_json({"errcode": 0, "errmsg": "ok"})
