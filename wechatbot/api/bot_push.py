"""Late answers of the bots: a POST to the URL their callback carried.

The AI bot's ``response_url`` (one use, valid for 1 hour, plain JSON, no
token, D:101138) and the group robot's ``WebhookUrl`` (``webhook/send?key=``)
are whole URLs whose query is the credential: it never appears in an error
or a log line.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import requests

from .calls import JSON_HEADERS, encode_json, errcode_of
from .hints import WeComAPIError, WeComNetworkError

__all__ = ["post_to_url", "shown_url"]


def shown_url(url: str) -> str:
    """``url`` without its query and fragment (where the one-use code or key is)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def post_to_url(url: str, payload: dict, timeout: float = 10.0, session: requests.Session | None = None) -> dict:
    """POST ``payload`` as JSON to a callback's ``response_url`` or ``WebhookUrl``.

    Returns WeCom's JSON answer; raises :class:`WeComNetworkError` when
    nothing usable came back and :class:`WeComAPIError` for an errcode.
    """
    shown = shown_url(url)
    if not url.startswith(("https://", "http://")):
        raise WeComNetworkError(f"not an http(s) URL: {shown!r}")
    try:
        resp = (session or requests).post(url, data=encode_json(payload), headers=JSON_HEADERS, timeout=timeout)
    except requests.RequestException as exc:
        raise WeComNetworkError(f"POST {shown} failed: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise WeComNetworkError(f"POST {shown}: WeCom answered HTTP {resp.status_code}")
    try:
        answer = resp.json()
    except ValueError:
        raise WeComNetworkError(f"POST {shown}: the answer is not JSON") from None
    errcode = errcode_of(answer) if isinstance(answer, dict) else -1
    if errcode != 0:
        raise WeComAPIError(errcode, str(answer.get("errmsg", "")) if isinstance(answer, dict) else "", shown)
    return answer
