"""The WeCom server API client of one app: access token, message/send, media get and upload.

One :class:`WeComAPI` per configured app, made of the pieces in this package:
the shared token (:mod:`.token`), calls and retries (:mod:`.calls`), messages
(:mod:`.messages`) and media (:mod:`.media`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import DEFAULT_API_BASE
from .media import MediaMixin
from .messages import MessagesMixin

if TYPE_CHECKING:
    from ..config import AppConfig
    from ..store import Store

__all__ = ["WeComAPI", "client_for"]


class WeComAPI(MessagesMixin, MediaMixin):
    """The server API of one WeCom app (one corp id + secret + agent id).

    ``store`` holds the access token for every process that shares it;
    ``api_base`` points elsewhere than the public API (tests use a fake);
    ``timeout`` bounds every request (seconds); ``retries`` and ``backoff``
    control how often and how patiently "busy" answers are retried;
    ``resume_attempts`` bounds how often a broken download is resumed.
    Safe to share between threads.
    """


def client_for(app: AppConfig, store: Store) -> WeComAPI:
    """The API client of a configured app (``[wecom]`` or ``[wecom:NAME]``)."""
    return WeComAPI(app.corp_id, app.secret, app.agent_id or None, store,
                    api_base=app.api_base or DEFAULT_API_BASE, app_name=app.name)
