"""The WeCom server API client: access token, message/send, media get and upload.

One :class:`WeComAPI` per configured app. The access token lives in the shared
store (memory, SQLite or Redis), keyed by corp id *and* a hash of the app's
secret, because every app secret has its own token. When it is missing or
rejected, one caller fetches a new one under a store lock while the others
wait for it, so many gunicorn workers (and hosts) cause one ``gettoken``.

Calls answered with an invalid/expired token are refreshed and retried once;
"system busy" and frequency limits are retried a few times with backoff; any
other errcode raises :class:`WeComAPIError` with a hint for the mistakes
people make when setting an app up. Neither the secret nor the token appears
in an error message or a log line.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import mimetypes
import os
import random
import re
import tempfile
import threading
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable

import requests
from requests.adapters import HTTPAdapter

from ..config import DEFAULT_API_BASE
from ..wecom.replies import split_text

if TYPE_CHECKING:
    from ..config import AppConfig
    from ..store import Store

__all__ = [
    "DEFAULT_API_BASE",
    "MSGTYPES",
    "TEXT_LIMIT",
    "UPLOAD_LIMITS",
    "MediaFile",
    "MediaLimitError",
    "WeComAPI",
    "WeComAPIError",
    "WeComError",
    "WeComNetworkError",
    "client_for",
    "hint_for",
    "redact",
    "safe_filename",
    "webhook_send",
]

log = logging.getLogger(__name__)

TEXT_LIMIT = 2048  # bytes of UTF-8 in one text or markdown message
TOKEN_ERRCODES = frozenset({40014, 42001, 42007, 42009})
RETRY_ERRCODES = frozenset({-1, 45009, 45033})
RANGE_ERRCODE = 830002  # media/get: the file is too large, fetch it in ranges
MSGTYPES = (
    "text", "image", "voice", "video", "file", "textcard", "news", "mpnews",
    "markdown", "miniprogram_notice", "template_card",
)
MIN_UPLOAD_BYTES = 6  # WeCom wants every uploaded file larger than 5 bytes
# media/upload type -> (largest size in bytes, accepted file name extensions or None for any)
UPLOAD_LIMITS: dict[str, tuple[int, frozenset[str] | None]] = {
    "image": (10 * 1024 * 1024, frozenset({".jpg", ".jpeg", ".png"})),
    "voice": (2 * 1024 * 1024, frozenset({".amr"})),
    "video": (10 * 1024 * 1024, frozenset({".mp4"})),
    "file": (20 * 1024 * 1024, None),
}
DOWNLOAD_CHUNK = 64 * 1024
RANGE_CHUNK = 20 * 1024 * 1024  # WeCom's advice for ranged downloads of large files
MAX_FILENAME_BYTES = 200
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}

HINTS = {
    -1: "WeCom is busy; it stayed busy through the retries, try again later",
    40001: "the app secret is wrong, was reset, or the app is disabled: copy the Secret from the "
           "app's page in the WeCom admin console into secret",
    40013: "the corp id is wrong: corp_id must be the 企业ID shown under 我的企业 → 企业信息",
    40091: "the secret is not valid: copy the app's Secret again into secret",
    40014: "the access token was rejected even after fetching a new one; check that no other "
           "program resets this app's secret",
    42001: "the access token expired even after fetching a new one; check the server's clock",
    41001: "the request carried no access token (a bug in the caller)",
    40056: "agent_id is not the AgentId of the app whose secret is configured",
    301002: "agent_id does not belong to the app whose secret is configured",
    60020: "the server's IP is not in the app's trusted IPs (企业可信IP): add the 'from ip' above in "
           "the app's settings in the admin console; it takes about a minute to apply",
    48002: "this API is not permitted for the app: grant the permission in the admin console "
           "(some APIs are not open to every app type)",
    81013: "every recipient is invalid or outside the app's visible range (可见范围): check "
           "touser/toparty/totag and the app's visible range",
    82001: "every member, department or tag given is invalid",
    40007: "the media_id is wrong or expired (media ids last 3 days)",
    41006: "the media_id is missing",
    40004: "the media type is not accepted (image: jpg/png, voice: amr, video: mp4)",
    40005: "the media type parameter must be image, voice, video or file",
    40006: "the file size is not accepted (more than 5 bytes; image/video ≤ 10 MB, voice ≤ 2 MB, file ≤ 20 MB)",
    40009: "the image is too large (≤ 10 MB)",
    40011: "the video is too large (≤ 10 MB)",
    40033: "the request contains \\uXXXX escapes; send UTF-8 JSON",
    44004: "the text content is empty",
    45002: "the content is too long (a text message holds 2048 bytes)",
    45008: "a news message holds 1 to 8 articles",
    45009: "the API frequency limit was hit; WeCom blocks the caller for the rest of the minute or hour",
    45033: "too many concurrent calls (for example on one media_id); lower the concurrency",
    830002: "the file is too large for one download; fetch it with Range requests",
    93000: "the webhook key is wrong, or the robot was removed from its group",
}

_SECRET_PARAM = re.compile(r"(?<![A-Za-z0-9_])((?:access_token|corpsecret|key)=)[^&\s'\"]+", re.IGNORECASE)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with access tokens, corp secrets and webhook keys replaced by ``***``.

    Query parameters that carry a credential are hidden wherever they appear
    (URLs inside exception messages); any ``secrets`` given are removed too.
    """
    text = _SECRET_PARAM.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _RedactFilter(logging.Filter):
    """Hide credentials in urllib3's debug lines, which print every request URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactFilter())


def hint_for(errcode: int) -> str | None:
    """What to check for ``errcode``, for the errors people meet when setting an app up."""
    return HINTS.get(errcode)


class WeComError(Exception):
    """Any failure talking to WeCom."""


class WeComAPIError(WeComError):
    """WeCom answered a call with a nonzero ``errcode``.

    ``str()`` reads ``errcode 60020: <errmsg> (hint: …)``; ``path`` is the API
    that answered (``message/send``).
    """

    def __init__(self, errcode: int, errmsg: str, path: str = "", hint: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        self.hint = hint if hint is not None else hint_for(errcode)
        super().__init__(errcode, errmsg)

    def __str__(self) -> str:
        text = f"errcode {self.errcode}: {self.errmsg}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class WeComNetworkError(WeComError):
    """WeCom could not be reached, or answered something that is not the API's JSON."""


class MediaLimitError(WeComError, ValueError):
    """A file breaks a size or type limit (checked before uploading, or while downloading)."""


@dataclass(frozen=True)
class MediaFile:
    """A downloaded media file.

    ``path`` is where it was written (None when written to a file object),
    ``filename`` the sender's file name made safe, ``size`` its length in
    bytes and ``content_type`` what WeCom said it is.
    """

    path: Path | None
    filename: str
    size: int
    content_type: str


@dataclass
class _Attempts:
    """What a call has already retried."""

    refreshed: bool = False
    busy: int = 0


def _new_session() -> requests.Session:
    session = requests.Session()
    # Plugin calls come from many threads at once; a pool that is too small
    # would open and drop a connection per call.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _agent_id_value(agent_id: str | int) -> str | int:
    """WeCom wants agentid as a number; keep anything else as given."""
    text = str(agent_id).strip()
    return int(text) if text.isdigit() else text


def _join_ids(ids: str | int | Iterable[str | int] | None) -> str | None:
    if ids is None or isinstance(ids, (str, int)):
        return None if ids in (None, "") else str(ids)
    joined = "|".join(str(i) for i in ids)
    return joined or None


def _encode_json(body: dict) -> bytes:
    # WeCom rejects \uXXXX escapes (errcode 40033): send real UTF-8.
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _errcode(body: dict) -> int:
    try:
        return int(body.get("errcode", 0) or 0)
    except (TypeError, ValueError):
        return -1


def _param_value(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def filename_from_disposition(header: str | None) -> str | None:
    """The file name in a ``Content-Disposition`` header, not yet made safe.

    ``filename*=UTF-8''…`` (RFC 6266/5987) wins over ``filename=``; a plain
    ``filename`` that arrived as raw UTF-8 bytes is decoded as UTF-8.
    """
    if not header:
        return None
    params: dict[str, str] = {}
    for name, value in re.findall(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', header):
        params.setdefault(name.lower(), _param_value(value))
    extended = params.get("filename*")
    if extended:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        if encoded:
            try:
                return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="replace")
            except LookupError:
                return urllib.parse.unquote(encoded, errors="replace")
    plain = params.get("filename")
    if plain is None:
        return None
    try:  # http.client decodes header bytes as Latin-1
        return plain.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return plain


def _truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def safe_filename(name: str | None, fallback: str = "media", max_bytes: int = MAX_FILENAME_BYTES) -> str:
    """``name`` reduced to a harmless file name: never a path, never hidden, bounded.

    Keeps only the last path component (``/`` and ``\\`` both separate),
    drops control and invisible formatting characters, replaces characters
    Windows forbids, strips leading and trailing dots and spaces, and cuts the
    name to ``max_bytes`` of UTF-8 keeping its extension. An empty result,
    ``.`` or ``..`` gives ``fallback`` (itself made safe).
    """
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(
        "_" if ch in '<>:"|?*' else ch
        for ch in text
        if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
    )
    text = text.strip(" .")
    if not text:
        return "media" if name == fallback else safe_filename(fallback, "media", max_bytes)
    if len(text.encode("utf-8")) > max_bytes:
        stem, ext = os.path.splitext(text)
        if len(ext.encode("utf-8")) > 16:
            stem, ext = text, ""
        text = _truncate_utf8(stem, max_bytes - len(ext.encode("utf-8"))).rstrip(" .") + ext
    return text


def _seekable(fh: Any) -> bool:
    seekable = getattr(fh, "seekable", None)
    return bool(seekable and seekable())


def _is_json_answer(resp: requests.Response) -> bool:
    """Whether media/get answered an error as JSON instead of sending the file."""
    content_type = resp.headers.get("Content-Type", "").lower()
    if "json" in content_type:
        return True
    if "Content-Disposition" in resp.headers:
        return False
    return not content_type or content_type.startswith(("text/plain", "text/html"))


def _read_limited(resp: requests.Response, limit: int = 1024 * 1024) -> bytes:
    data = bytearray()
    for chunk in resp.iter_content(DOWNLOAD_CHUNK):
        data += chunk
        if len(data) > limit:
            break
    return bytes(data)


def _content_range(header: str | None) -> tuple[int, int | None] | None:
    """(first byte, total size or None) from ``bytes a-b/total``."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", header or "")
    if not match:
        return None
    return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))


def _place_in_directory(tmp: str, directory: Path, filename: str) -> Path:
    """Move the finished download into ``directory`` without replacing an existing file."""
    stem, ext = os.path.splitext(filename)
    for n in range(1000):
        candidate = directory / (filename if n == 0 else f"{stem}-{n}{ext}")
        try:
            os.link(tmp, candidate)  # fails if the name is taken, atomically
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if candidate.exists():
                continue
            os.replace(tmp, candidate)  # a file system without hard links
            return candidate
        os.unlink(tmp)
        return candidate
    raise WeComError(f"too many files named like {filename!r} in {directory}")


class WeComAPI:
    """The server API of one WeCom app (one corp id + secret + agent id).

    ``store`` holds the access token for every process that shares it;
    ``api_base`` points elsewhere than the public API (tests use a fake);
    ``timeout`` bounds every request (seconds); ``retries`` and ``backoff``
    control how often and how patiently "busy" answers are retried;
    ``resume_attempts`` bounds how often a broken download is resumed.
    Safe to share between threads.
    """

    def __init__(
        self,
        corp_id: str,
        secret: str,
        agent_id: str | int | None,
        store: Store,
        api_base: str = DEFAULT_API_BASE,
        app_name: str = "",
        timeout: float = 10.0,
        session: requests.Session | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        resume_attempts: int = 5,
    ) -> None:
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.store = store
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self.app_name = app_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.resume_attempts = resume_attempts
        self.range_chunk = RANGE_CHUNK
        self._secret = secret
        self._session = session or _new_session()
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]
        # Corp id and a digest of the secret: each secret has its own token,
        # and a new secret (after a reset) starts with an empty cache.
        self._token_key = f"wecom-token:{corp_id}:{digest}"
        self._lock_name = f"wecom-token:{corp_id}:{digest}"
        self._refresh_mutex = threading.Lock()
        self._known_token: str | None = None

    def __repr__(self) -> str:
        return f"WeComAPI(corp_id={self.corp_id!r}, app={self.app_name!r}, agent_id={self.agent_id!r})"

    @property
    def _label(self) -> str:
        return f"[wecom:{self.app_name}]" if self.app_name else f"corp {self.corp_id}"

    def _redact(self, text: str) -> str:
        return redact(text, self._secret, self._known_token)

    # Access token

    def access_token(self, force_refresh: bool = False) -> str:
        """A valid access token, from the shared cache or fetched from ``gettoken``.

        ``force_refresh`` discards the cached token, unless another caller has
        replaced it meanwhile (then that newer one is returned).
        """
        token = self.store.get(self._token_key)
        if token and not force_refresh:
            self._known_token = token
            return token
        return self._refresh(stale=token)

    def _refresh(self, stale: str | None) -> str:
        """Return a cached token other than ``stale``, fetching one if there is none.

        Threads of this process queue on a mutex so that only one of them
        talks to the store lock; across processes the store lock elects the
        one that calls ``gettoken``, and the others poll the cache until the
        new token appears. If the lock holder seems stuck, fetch anyway.
        """
        with self._refresh_mutex:
            deadline = time.monotonic() + self.timeout + 5.0
            pause = 0.01
            while True:
                token = self.store.get(self._token_key)
                if token and token != stale:
                    self._known_token = token
                    return token
                with self.store.lock(self._lock_name, ttl=self.timeout + 5.0, wait=0) as acquired:
                    if acquired:
                        token = self.store.get(self._token_key)
                        if token and token != stale:
                            self._known_token = token
                            return token
                        return self._fetch_token()
                if time.monotonic() >= deadline:
                    log.warning("%s: the token lock is still held after %.0fs; fetching a token anyway",
                                self._label, self.timeout + 5.0)
                    return self._fetch_token()
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def _fetch_token(self) -> str:
        if not self._secret:
            raise WeComError(f"{self._label} has no secret configured: set secret in the app's section")
        attempts = _Attempts()
        while True:
            resp = self._http("GET", "gettoken", params={"corpid": self.corp_id, "corpsecret": self._secret})
            body = self._decode(resp, "gettoken")
            errcode = _errcode(body)
            if errcode == 0 and body.get("access_token"):
                break
            if errcode in RETRY_ERRCODES and attempts.busy < self.retries:
                self._backoff(errcode, "gettoken", attempts)
                continue
            raise WeComAPIError(errcode, self._redact(str(body.get("errmsg", ""))), "gettoken")
        token = str(body["access_token"])
        expires_in = float(body.get("expires_in") or 7200)
        # Expire a few minutes early, so a token is never used right at its end.
        ttl = max(expires_in - min(300.0, expires_in / 5), 1.0)
        self.store.set(self._token_key, token, ttl=ttl)
        self._known_token = token
        log.info("%s: fetched a new access token (valid %.0fs, cached %.0fs)", self._label, expires_in, ttl)
        return token

    # Requests

    def _url(self, path: str) -> str:
        path = path.lstrip("/")
        if path.startswith("cgi-bin/"):
            path = path[len("cgi-bin/"):]
        return f"{self.api_base}/cgi-bin/{path}"

    def _http(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The one place a request leaves: always with a timeout, never leaking credentials."""
        kwargs.setdefault("timeout", self.timeout)
        started = time.monotonic()
        try:
            resp = self._session.request(method, self._url(path), **kwargs)
        except requests.RequestException as exc:
            raise WeComNetworkError(f"{method} {path} failed: {self._redact(str(exc))}") from None
        log.debug("%s %s: HTTP %s in %.0f ms", method, path, resp.status_code, (time.monotonic() - started) * 1000)
        return resp

    def _decode(self, resp: requests.Response, path: str) -> dict:
        if resp.status_code != 200:
            raise WeComNetworkError(f"{path}: WeCom answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise WeComNetworkError(f"{path}: WeCom's answer is not JSON") from None
        if not isinstance(body, dict):
            raise WeComNetworkError(f"{path}: WeCom's answer is not a JSON object")
        return body

    def _backoff(self, errcode: int, path: str, attempts: _Attempts) -> None:
        """Wait before retrying a busy answer (exponential, with jitter)."""
        delay = self.backoff * (2 ** attempts.busy) * random.uniform(0.5, 1.0)
        attempts.busy += 1
        log.warning("%s: errcode %s, retry %d of %d in %.2fs", path, errcode, attempts.busy, self.retries, delay)
        time.sleep(delay)

    def _recover(self, errcode: int, errmsg: str, path: str, token: str, attempts: _Attempts) -> None:
        """Get ready to retry a failed call, or raise its error."""
        if errcode in TOKEN_ERRCODES and not attempts.refreshed:
            attempts.refreshed = True
            log.info("%s: access token rejected (errcode %s); fetching a new one and retrying once", path, errcode)
            self._refresh(stale=token)
            return
        if errcode in RETRY_ERRCODES and attempts.busy < self.retries:
            self._backoff(errcode, path, attempts)
            return
        raise WeComAPIError(errcode, self._redact(errmsg), path)

    def _call(self, method: str, path: str, params: dict | None = None, body: dict | None = None,
              files: Any = None) -> dict:
        """Call an API with the token added, retrying as the errcode allows.

        ``files`` is a callable returning the multipart ``files`` argument,
        called again for every attempt (each attempt rereads the file).
        """
        attempts = _Attempts()
        while True:
            token = self.access_token()
            kwargs: dict[str, Any] = {"params": {**(params or {}), "access_token": token}}
            if body is not None:
                kwargs["data"], kwargs["headers"] = _encode_json(body), _JSON_HEADERS
            if files is not None:
                kwargs["files"] = files()
            answer = self._decode(self._http(method, path, **kwargs), path)
            errcode = _errcode(answer)
            if errcode == 0:
                return answer
            self._recover(errcode, str(answer.get("errmsg", "")), path, token, attempts)

    def get(self, path: str, **params: Any) -> dict:
        """GET any API (``"user/get"``, ``userid="zhangsan"``); returns the JSON answer."""
        return self._call("GET", path, params=params)

    def post(self, path: str, json: dict, params: dict | None = None) -> dict:  # noqa: A002 - requests' name
        """POST ``json`` to any API; returns the JSON answer."""
        return self._call("POST", path, params=params, body=json)

    # Messages

    def send_message(self, msg: dict) -> dict:
        """``message/send`` with a complete message body; fills ``agentid`` if absent."""
        body = dict(msg)
        if "agentid" not in body and self.agent_id not in (None, ""):
            body["agentid"] = _agent_id_value(self.agent_id)  # type: ignore[arg-type]
        return self.post("message/send", body)

    def send(
        self,
        msgtype: str,
        body: dict,
        touser: str | Iterable[str] | None = None,
        toparty: str | int | Iterable[str | int] | None = None,
        totag: str | int | Iterable[str | int] | None = None,
        safe: int = 0,
        enable_duplicate_check: bool = False,
        duplicate_check_interval: int | None = None,
        enable_id_trans: bool = False,
    ) -> dict:
        """Send one message of ``msgtype`` whose payload is ``body``.

        ``send("text", {"content": "hi"}, touser=["a", "b"])``. Lists of
        recipients are joined with ``|``; ``"@all"`` reaches everyone in the
        app's visible range. ``safe=1`` marks it confidential.
        """
        if msgtype not in MSGTYPES:
            raise ValueError(f"unknown msgtype {msgtype!r} (known: {', '.join(MSGTYPES)})")
        recipients = {
            name: joined for name, joined in
            (("touser", _join_ids(touser)), ("toparty", _join_ids(toparty)), ("totag", _join_ids(totag)))
            if joined
        }
        if not recipients:
            raise ValueError("a message needs touser, toparty or totag")
        msg: dict[str, Any] = {**recipients, "msgtype": msgtype, msgtype: body}
        if safe:
            msg["safe"] = safe
        if enable_id_trans:
            msg["enable_id_trans"] = 1
        if enable_duplicate_check:
            msg["enable_duplicate_check"] = 1
            if duplicate_check_interval is not None:
                msg["duplicate_check_interval"] = duplicate_check_interval
        return self.send_message(msg)

    def send_text(self, touser: str | Iterable[str], content: str, **options: Any) -> list[dict]:
        """Send a text; one longer than 2048 UTF-8 bytes goes as several messages.

        The parts split on character boundaries, after a newline where there is
        one, and nothing is dropped. Returns one API answer per part.
        ``options`` are those of :meth:`send`.
        """
        return [self.send("text", {"content": part}, touser=touser, **options) for part in split_text(content)]

    def update_template_card(self, body: dict) -> dict:
        """``message/update_template_card``: change a card a user interacted with.

        ``body`` carries ``response_code`` and either ``button`` or a new
        ``template_card`` (plus ``userids``/``atall`` …); ``agentid`` is filled in.
        """
        body = dict(body)
        if "agentid" not in body and self.agent_id not in (None, ""):
            body["agentid"] = _agent_id_value(self.agent_id)  # type: ignore[arg-type]
        return self.post("message/update_template_card", body)

    # Media

    def get_media(self, media_id: str, dest: str | os.PathLike[str] | BinaryIO,
                  max_bytes: int | None = None) -> MediaFile:
        """Download media ``media_id`` to ``dest``, streamed, never whole in memory.

        ``dest`` is a file path (replaced when the download is complete), a
        directory (the file gets the sender's name from ``Content-Disposition``
        made safe, never replacing an existing file) or a binary file object.
        A download that breaks resumes with ``Range``; WeCom's "too large"
        answer switches to ranged fetching. A JSON error instead of the file
        raises :class:`WeComAPIError`; more than ``max_bytes`` raises
        :class:`MediaLimitError`. On failure no partial file is left behind.
        """
        if hasattr(dest, "write"):
            fh = dest  # type: ignore[assignment]
            start = fh.tell() if _seekable(fh) else None  # type: ignore[union-attr,arg-type]
            try:
                return self._download(media_id, fh, max_bytes)  # type: ignore[arg-type]
            except MediaLimitError:
                if start is not None:
                    fh.seek(start)  # type: ignore[union-attr]
                    fh.truncate()  # type: ignore[union-attr]
                raise
        target = Path(os.fspath(dest))  # type: ignore[arg-type]
        into_directory = target.is_dir()
        directory = target if into_directory else target.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".wechatbot-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                got = self._download(media_id, fh, max_bytes)
            if into_directory:
                final = _place_in_directory(tmp, directory, got.filename)
            else:
                os.replace(tmp, target)
                final = target
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return MediaFile(final, got.filename, got.size, got.content_type)

    def _open_media(self, media_id: str, headers: dict[str, str], attempts: _Attempts) -> requests.Response:
        """A streaming media/get response that carries the file (errors raised)."""
        while True:
            token = self.access_token()
            resp = self._http("GET", "media/get", params={"access_token": token, "media_id": media_id},
                              headers=headers, stream=True)
            if resp.status_code in (200, 206) and not _is_json_answer(resp):
                return resp
            try:
                if resp.status_code not in (200, 206):
                    raise WeComNetworkError(f"media/get: WeCom answered HTTP {resp.status_code}")
                try:
                    answer = json.loads(_read_limited(resp))
                except (ValueError, requests.RequestException):
                    raise WeComNetworkError("media/get: WeCom sent neither a file nor a JSON answer") from None
            finally:
                resp.close()
            errcode = _errcode(answer) if isinstance(answer, dict) else -1
            if errcode == 0:
                raise WeComNetworkError("media/get: WeCom answered JSON without an error instead of the file")
            self._recover(errcode, str(answer.get("errmsg", "")), "media/get", token, attempts)

    def _download(self, media_id: str, fh: BinaryIO, max_bytes: int | None) -> MediaFile:
        """Write the media to ``fh``; the returned MediaFile has no path."""
        start = fh.tell() if _seekable(fh) else None
        attempts = _Attempts()
        written = 0
        total: int | None = None
        ranged = False
        broken = 0
        filename = content_type = None
        while True:
            before = written
            headers = {"Accept-Encoding": "identity"}  # offsets count bytes on the wire
            if ranged:
                headers["Range"] = f"bytes={written}-{written + self.range_chunk - 1}"
            elif written:
                headers["Range"] = f"bytes={written}-"
            try:
                resp = self._open_media(media_id, headers, attempts)
            except WeComAPIError as exc:
                if exc.errcode != RANGE_ERRCODE or ranged:
                    raise
                log.info("media/get %s: too large for one request; fetching it in ranges", media_id)
                ranged = True
                continue
            try:
                if resp.status_code == 206:
                    span = _content_range(resp.headers.get("Content-Range"))
                    if span is None or span[0] != written:
                        raise WeComNetworkError(f"media/get: the answer to a Range request starts elsewhere "
                                                f"({resp.headers.get('Content-Range')!r}, wanted byte {written})")
                    total = span[1] if span[1] is not None else total
                else:
                    if written:  # the server ignored Range: start over
                        if start is None:
                            raise WeComNetworkError("media/get: cannot resume (no Range support) into an unseekable file")
                        fh.seek(start)
                        fh.truncate()
                        written = 0
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                if filename is None:
                    content_type = resp.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()
                    ext = mimetypes.guess_extension(content_type) or ""
                    filename = safe_filename(filename_from_disposition(resp.headers.get("Content-Disposition")),
                                             fallback=safe_filename(media_id) + ext)
                if max_bytes is not None and total is not None and total > max_bytes:
                    raise MediaLimitError(f"media {media_id} is {total} bytes, more than max_bytes={max_bytes}")
                try:
                    for chunk in resp.iter_content(DOWNLOAD_CHUNK):
                        if max_bytes is not None and written + len(chunk) > max_bytes:
                            raise MediaLimitError(f"media {media_id} is larger than max_bytes={max_bytes}")
                        fh.write(chunk)
                        written += len(chunk)
                except requests.RequestException as exc:
                    reason = self._redact(str(exc))
                else:
                    reason = None
            finally:
                resp.close()
            if reason is None and (total is None or written >= total):
                break
            if reason is None and ranged and resp.status_code == 206 and written > before:
                continue  # the next range
            broken += 1
            if broken > self.resume_attempts:
                raise WeComNetworkError(f"media/get {media_id}: download kept breaking "
                                        f"({written} of {total or '?'} bytes after {broken} attempts): {reason or 'short answer'}")
            log.warning("media/get %s: download broke after %d of %s bytes; resuming with Range",
                        media_id, written, total or "?")
        return MediaFile(None, filename or safe_filename(media_id), written, content_type or "application/octet-stream")

    def upload_media(self, media_type: str, file: str | os.PathLike[str] | BinaryIO,
                     filename: str | None = None) -> dict:
        """``media/upload``: upload a temporary media file; returns WeCom's answer (``media_id``).

        ``file`` is a path or a binary file object; ``filename`` (default: the
        file's own name) is what recipients see. WeCom's documented limits are
        checked first, with a :class:`MediaLimitError` naming the broken one:
        more than 5 bytes; image ≤ 10 MB jpg/png; voice ≤ 2 MB amr; video
        ≤ 10 MB mp4; file ≤ 20 MB.
        """
        if media_type not in UPLOAD_LIMITS:
            raise MediaLimitError(f"media type must be one of {', '.join(UPLOAD_LIMITS)}, not {media_type!r}")
        limit, extensions = UPLOAD_LIMITS[media_type]
        if hasattr(file, "read"):
            return self._upload_stream(media_type, file, filename, limit, extensions)  # type: ignore[arg-type]
        path = Path(os.fspath(file))  # type: ignore[arg-type]
        self._check_upload(media_type, filename or path.name, path.stat().st_size, limit, extensions)
        with open(path, "rb") as fh:
            return self._upload_stream(media_type, fh, filename or path.name, limit, extensions)

    def _upload_stream(self, media_type: str, fh: BinaryIO, filename: str | None, limit: int,
                       extensions: frozenset[str] | None) -> dict:
        name = filename or os.path.basename(str(getattr(fh, "name", "") or "")) or "media"
        if _seekable(fh):
            start = fh.tell()
            size = fh.seek(0, io.SEEK_END) - start
            fh.seek(start)
        else:  # read at most one byte more than allowed, to know the size
            data = fh.read(limit + 1)
            fh, start, size = io.BytesIO(data), 0, len(data)
        self._check_upload(media_type, name, size, limit, extensions)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"

        def files() -> dict:
            fh.seek(start)
            return {"media": (name, fh, content_type)}

        return self._call("POST", "media/upload", params={"type": media_type}, files=files)

    @staticmethod
    def _check_upload(media_type: str, name: str, size: int, limit: int, extensions: frozenset[str] | None) -> None:
        if size < MIN_UPLOAD_BYTES:
            raise MediaLimitError(f"{name!r} is {size} bytes; WeCom only accepts files larger than 5 bytes")
        if size > limit:
            raise MediaLimitError(f"{name!r} is {size} bytes; {media_type} uploads may be at most "
                                  f"{limit // (1024 * 1024)} MB ({limit} bytes)")
        ext = os.path.splitext(name)[1].lower()
        if extensions is not None and ext not in extensions:
            accepted = ", ".join(sorted(extensions))
            raise MediaLimitError(f"{name!r} cannot be uploaded as {media_type}: only {accepted} files are "
                                  f"accepted (judged by the file name)")


def webhook_send(key: str, payload: dict, api_base: str = DEFAULT_API_BASE, timeout: float = 10.0,
                 session: requests.Session | None = None) -> dict:
    """Post ``payload`` to a group robot (``webhook/send?key=KEY``); returns the JSON answer.

    The key is the robot's only credential: it never appears in an error or log line.
    """
    url = f"{(api_base or DEFAULT_API_BASE).rstrip('/')}/cgi-bin/webhook/send"
    try:
        resp = (session or requests).post(url, params={"key": key}, data=_encode_json(payload),
                                          headers=_JSON_HEADERS, timeout=timeout)
    except requests.RequestException as exc:
        raise WeComNetworkError(f"webhook/send failed: {redact(str(exc), key)}") from None
    if resp.status_code != 200:
        raise WeComNetworkError(f"webhook/send: WeCom answered HTTP {resp.status_code}")
    try:
        answer = resp.json()
    except ValueError:
        raise WeComNetworkError("webhook/send: WeCom's answer is not JSON") from None
    errcode = _errcode(answer) if isinstance(answer, dict) else -1
    if errcode != 0:
        raise WeComAPIError(errcode, redact(str(answer.get("errmsg", "")), key), "webhook/send")
    return answer


def client_for(app: AppConfig, store: Store) -> WeComAPI:
    """The API client of a configured app (``[wecom]`` or ``[wecom:NAME]``)."""
    return WeComAPI(app.corp_id, app.secret, app.agent_id or None, store,
                    api_base=app.api_base or DEFAULT_API_BASE, app_name=app.name)
