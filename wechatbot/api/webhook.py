"""The group robot's webhook (``webhook/send?key=KEY``)."""
from __future__ import annotations

import requests

from ..config import DEFAULT_API_BASE
from .calls import JSON_HEADERS, encode_json, errcode_of
from .hints import WeComAPIError, WeComNetworkError
from ..redact import redact

__all__ = ["webhook_send"]


def webhook_send(key: str, payload: dict, api_base: str = DEFAULT_API_BASE, timeout: float = 10.0,
                 session: requests.Session | None = None) -> dict:
    """Post ``payload`` to a group robot (``webhook/send?key=KEY``); returns the JSON answer.

    The key is the robot's only credential: it never appears in an error or log line.
    """
    url = f"{(api_base or DEFAULT_API_BASE).rstrip('/')}/cgi-bin/webhook/send"
    try:
        resp = (session or requests).post(url, params={"key": key}, data=encode_json(payload),
                                          headers=JSON_HEADERS, timeout=timeout)
    except requests.RequestException as exc:
        raise WeComNetworkError(f"webhook/send failed: {redact(str(exc), key)}") from None
    if resp.status_code != 200:
        raise WeComNetworkError(f"webhook/send: WeCom answered HTTP {resp.status_code}")
    try:
        answer = resp.json()
    except ValueError:
        raise WeComNetworkError("webhook/send: WeCom's answer is not JSON") from None
    errcode = errcode_of(answer) if isinstance(answer, dict) else -1
    if errcode != 0:
        raise WeComAPIError(errcode, redact(str(answer.get("errmsg", "")), key), "webhook/send")
    return answer
