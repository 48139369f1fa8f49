"""One API call: the access token added, a timeout, credentials never shown, retried as the errcode allows.

Calls answered with an invalid/expired token are refreshed and retried once;
"system busy" and frequency limits are retried a few times with backoff; any
other errcode raises :class:`WeComAPIError` with a hint. Neither the secret
nor the token appears in an error message or a log line.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter

from ..config import DEFAULT_API_BASE
from .hints import RETRY_ERRCODES, TOKEN_ERRCODES, WeComAPIError, WeComError, WeComNetworkError
from ..redact import redact
from .token import AccessToken

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["APIClient", "JSON_HEADERS", "agent_id_value", "encode_json", "errcode_of"]

log = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


@dataclass
class Attempts:
    """What a call has already retried."""

    refreshed: bool = False
    busy: int = 0


def new_session() -> requests.Session:
    """A requests session whose pool suits many threads calling at once."""
    session = requests.Session()
    # Plugin calls come from many threads at once; a pool that is too small
    # would open and drop a connection per call.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def agent_id_value(agent_id: str | int) -> str | int:
    """WeCom wants agentid as a number; keep anything else as given."""
    text = str(agent_id).strip()
    return int(text) if text.isdigit() else text


def encode_json(body: dict) -> bytes:
    """``body`` as UTF-8 JSON: WeCom rejects \\uXXXX escapes (errcode 40033)."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def errcode_of(body: dict) -> int:
    """The answer's ``errcode`` as a number (-1 when it is not one)."""
    try:
        return int(body.get("errcode", 0) or 0)
    except (TypeError, ValueError):
        return -1


class APIClient:
    """The server API of one WeCom app (one corp id + secret + agent id): calls and retries.

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
        self._secret = secret
        self._session = session or new_session()
        self._token = AccessToken(store, corp_id, secret, self._counted_gettoken, lock_ttl=timeout + 5.0,
                                  label=self._label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(corp_id={self.corp_id!r}, app={self.app_name!r}, agent_id={self.agent_id!r})"

    @property
    def _label(self) -> str:
        return f"[wecom:{self.app_name}]" if self.app_name else f"corp {self.corp_id}"

    def _redact(self, text: str) -> str:
        return redact(text, self._secret, self._token.known)

    # Access token

    def access_token(self, force_refresh: bool = False) -> str:
        """A valid access token, from the shared cache or fetched from ``gettoken``.

        ``force_refresh`` discards the cached token, unless another caller has
        replaced it meanwhile (then that newer one is returned).
        """
        return self._token.get(force_refresh)

    def _counted_gettoken(self) -> tuple[str, float]:
        """``_gettoken``, counted in ``wechatbot_token_fetches`` by app and outcome."""
        from .. import metrics  # here, not at import: the CLI's send command never needs it

        app = f"wecom:{self.app_name}" if self.app_name else "wecom"
        try:
            answer = self._gettoken()
        except Exception:
            metrics.token_fetched(app, ok=False)
            raise
        metrics.token_fetched(app, ok=True)
        return answer

    def _gettoken(self) -> tuple[str, float]:
        """Call ``gettoken``: (the new token, its lifetime in seconds)."""
        if not self._secret:
            raise WeComError(f"{self._label} has no secret configured: set secret in the app's section")
        attempts = Attempts()
        while True:
            resp = self._http("GET", "gettoken", params={"corpid": self.corp_id, "corpsecret": self._secret})
            body = self._decode(resp, "gettoken")
            errcode = errcode_of(body)
            if errcode == 0 and body.get("access_token"):
                return str(body["access_token"]), float(body.get("expires_in") or 7200)
            if errcode in RETRY_ERRCODES and attempts.busy < self.retries:
                self._backoff(errcode, "gettoken", attempts)
                continue
            raise WeComAPIError(errcode, self._redact(str(body.get("errmsg", ""))), "gettoken")

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

    def _backoff(self, errcode: int, path: str, attempts: Attempts) -> None:
        """Wait before retrying a busy answer (exponential, with jitter)."""
        delay = self.backoff * (2 ** attempts.busy) * random.uniform(0.5, 1.0)
        attempts.busy += 1
        log.debug("%s: errcode %s, retry %d of %d in %.2fs", path, errcode, attempts.busy, self.retries, delay)
        time.sleep(delay)

    def _recover(self, errcode: int, errmsg: str, path: str, token: str, attempts: Attempts) -> None:
        """Get ready to retry a failed call, or raise its error."""
        if errcode in TOKEN_ERRCODES and not attempts.refreshed:
            attempts.refreshed = True
            log.info("%s: access token rejected (errcode %s); fetching a new one and retrying once", path, errcode)
            self._token.refresh(stale=token)
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
        attempts = Attempts()
        while True:
            token = self.access_token()
            kwargs: dict[str, Any] = {"params": {**(params or {}), "access_token": token}}
            if body is not None:
                kwargs["data"], kwargs["headers"] = encode_json(body), JSON_HEADERS
            if files is not None:
                kwargs["files"] = files()
            answer = self._decode(self._http(method, path, **kwargs), path)
            errcode = errcode_of(answer)
            if errcode == 0:
                return answer
            self._recover(errcode, str(answer.get("errmsg", "")), path, token, attempts)

    def get(self, path: str, **params: Any) -> dict:
        """GET any API (``"user/get"``, ``userid="zhangsan"``); returns the JSON answer."""
        return self._call("GET", path, params=params)

    def post(self, path: str, json: dict, params: dict | None = None) -> dict:  # noqa: A002 - requests' name
        """POST ``json`` to any API; returns the JSON answer."""
        return self._call("POST", path, params=params, body=json)
