"""Credentials out of messages: access tokens, corp secrets and webhook keys become ``***``."""
from __future__ import annotations

import logging
import re

__all__ = ["redact"]

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
