"""The root of every error wechatbot raises on purpose.

``except WechatbotError`` catches a configuration, crypto, message, plugin
loading, store or WeCom API failure in one clause. Each error keeps the
built-in base it always had (``ValueError`` for a bad config value, for
example), so code that catches those still works.
"""
from __future__ import annotations

__all__ = ["WechatbotError", "one_line"]


class WechatbotError(Exception):
    """Any failure that wechatbot reports on purpose, with a message that says what to fix."""


def one_line(text: str) -> str:
    """``text`` on one line: a message a person reads in a log or a terminal."""
    return " ".join(str(text).split())
