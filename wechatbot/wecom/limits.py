"""WeCom's size limits and the character rules of XML, each defined once.

The protocol code (crypto, messages, replies), the API client and the fake
WeCom API all take these from here.
"""
from __future__ import annotations

import re

__all__ = [
    "MSGTYPES",
    "NEWS_ARTICLE_LIMIT",
    "TEXT_LIMIT",
    "XML_ILLEGAL",
    "XML_ILLEGAL_CHARS",
]

#: A text (passive reply, ``message/send`` text or markdown) holds at most this
#: many UTF-8 bytes; WeCom cuts longer texts.
TEXT_LIMIT = 2048
#: A news message holds at most this many articles.
NEWS_ARTICLE_LIMIT = 8
#: The ``msgtype`` values ``message/send`` accepts.
MSGTYPES = (
    "text", "image", "voice", "video", "file", "textcard", "news", "mpnews",
    "markdown", "miniprogram_notice", "template_card",
)
#: Characters XML 1.0 cannot carry anywhere, not even in CDATA or as references,
#: as the body of a regular-expression character class.
XML_ILLEGAL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
#: Matches one character XML 1.0 cannot carry.
XML_ILLEGAL = re.compile(f"[{XML_ILLEGAL_CHARS}]")
