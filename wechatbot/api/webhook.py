"""The group robot's webhook (``webhook/send?key=KEY``)."""
from __future__ import annotations

from urllib.parse import quote

import requests

from ..config import DEFAULT_API_BASE
from .bot_push import post_to_url

__all__ = ["webhook_send"]


def webhook_send(key: str, payload: dict, api_base: str = DEFAULT_API_BASE, timeout: float = 10.0,
                 session: requests.Session | None = None) -> dict:
    """Post ``payload`` to a group robot (``webhook/send?key=KEY``); returns the JSON answer.

    The key is the robot's only credential: it travels in the query, which
    :func:`post_to_url` never shows in an error or log line.
    """
    url = f"{(api_base or DEFAULT_API_BASE).rstrip('/')}/cgi-bin/webhook/send?key={quote(key, safe='')}"
    return post_to_url(url, payload, timeout=timeout, session=session)
