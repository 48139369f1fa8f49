"""The WeCom server API: access token, calls and retries, messages, media, the group robot's webhook."""
from .client import (
    DEFAULT_API_BASE, MSGTYPES, TEXT_LIMIT, UPLOAD_LIMITS, MediaFile, MediaLimitError, WeComAPI,
    WeComAPIError, WeComError, WeComNetworkError, client_for, hint_for, redact, safe_filename, webhook_send,
)

__all__ = [
    "DEFAULT_API_BASE", "MSGTYPES", "TEXT_LIMIT", "UPLOAD_LIMITS", "MediaFile", "MediaLimitError", "WeComAPI",
    "WeComAPIError", "WeComError", "WeComNetworkError", "client_for", "hint_for", "redact", "safe_filename",
    "webhook_send",
]
