"""Credentials out of every message and every log line.

:func:`redact` hides access tokens, corp secrets and webhook keys wherever
they appear as query parameters, and every secret the configuration holds
(remembered by :func:`remember_secret`). Importing this module wraps the
logging module's record factory, so each record any logger makes (urllib3's,
a plugin's, the host's) is cleaned when it is created: whatever handlers,
levels and filters the logging configuration has, none of them sees a secret.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any

__all__ = ["message_of", "redact", "remember_secret"]

_SECRET_PARAM = re.compile(r"(?<![A-Za-z0-9_])((?:access_token|corpsecret|key)=)[^&\s'\"]+", re.IGNORECASE)
# Shorter values would hide ordinary words; real secrets are longer.
_MIN_SECRET_LENGTH = 8
_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Hide ``value`` (a token, key or secret from the config) in every log line from now on."""
    global _secrets
    if value and len(value) >= _MIN_SECRET_LENGTH and value not in _secrets:
        with _secrets_lock:
            _secrets = _secrets | {value}


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with access tokens, corp secrets and webhook keys replaced by ``***``.

    Query parameters that carry a credential are hidden wherever they appear
    (URLs inside exception messages); any ``secrets`` given are removed too,
    and so is every secret remembered from the configuration.
    """
    if "=" in text:  # every credential parameter has one; most lines have none
        text = _SECRET_PARAM.sub(r"\1***", text)
    for secret in (*secrets, *_secrets):
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def message_of(record: logging.LogRecord) -> str:
    """``record.getMessage()``, without formatting it again when :func:`_clean` already did."""
    cached = record.__dict__.get("_wechatbot_message")
    if cached is not None and cached[0] is record.msg and cached[1] is record.args:
        return cached[2]
    return record.getMessage()


def _clean(record: logging.LogRecord) -> None:
    """Redact a record's message and its traceback text in place.

    The message, once formatted here, is kept on the record for the
    formatters (:func:`message_of`): the same until a filter changes ``msg``
    or ``args``.
    """
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to the handler to report
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    record._wechatbot_message = (record.msg, record.args, cleaned)  # type: ignore[attr-defined]
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(text)
        if cleaned != text:
            record.exc_text = cleaned


def _install() -> None:
    previous = logging.getLogRecordFactory()
    if getattr(previous, "wechatbot_redacts", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _clean(record)
        return record

    make_record.wechatbot_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)


_install()
