"""The WeCom server API: access token, calls and retries, messages, media, the group robot's webhook.

``token`` keeps the shared, locked access token; ``calls`` makes one call and
retries it; ``messages`` and ``media`` are the APIs a host uses; ``webhook``
posts to a group robot; ``hints`` holds the error codes, their hints and the
errors. Credentials never reach a message or a log line (:mod:`wechatbot.redact`).
"""
from ..config import DEFAULT_API_BASE
from ..wecom.limits import MSGTYPES, TEXT_LIMIT
from .client import WeComAPI, client_for
from .hints import MediaLimitError, WeComAPIError, WeComError, WeComNetworkError, hint_for
from .media import UPLOAD_LIMITS, MediaFile, safe_filename
from ..redact import redact
from .webhook import webhook_send

__all__ = [
    "DEFAULT_API_BASE", "MSGTYPES", "TEXT_LIMIT", "UPLOAD_LIMITS", "MediaFile", "MediaLimitError", "WeComAPI",
    "WeComAPIError", "WeComError", "WeComNetworkError", "client_for", "hint_for", "redact", "safe_filename",
    "webhook_send",
]
