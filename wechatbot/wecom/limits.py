"""WeCom's size limits and the character rules of XML, each defined once.

The protocol code (crypto, messages, replies), the API client and the fake
WeCom API all take these from here.
"""
from __future__ import annotations

import re

__all__ = [
    "FEEDBACK_ID_LIMIT",
    "GROUP_MARKDOWN_LIMIT",
    "GROUP_TEXT_LIMIT",
    "MSGTYPES",
    "RESPONSE_URL_MARKDOWN_LIMIT",
    "STREAM_CONTENT_LIMIT",
    "STREAM_IMAGE_BYTES",
    "STREAM_IMAGE_LIMIT",
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
#: An AI bot stream's ``content`` holds at most this many UTF-8 bytes (D:101031).
STREAM_CONTENT_LIMIT = 20480
#: Images on a stream's finishing frame: at most 10, each at most 10 MB, JPG or PNG.
STREAM_IMAGE_LIMIT = 10
STREAM_IMAGE_BYTES = 10 * 1024 * 1024
#: A stream's ``feedback.id`` holds at most 256 bytes.
FEEDBACK_ID_LIMIT = 256
#: A markdown answer through an AI bot's ``response_url`` (D:101138).
RESPONSE_URL_MARKDOWN_LIMIT = 20480
#: A group robot's text and markdown (D:99110).
GROUP_TEXT_LIMIT = 2048
GROUP_MARKDOWN_LIMIT = 4096
#: Characters XML 1.0 cannot carry anywhere, not even in CDATA or as references,
#: as the body of a regular-expression character class.
XML_ILLEGAL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
#: Matches one character XML 1.0 cannot carry.
XML_ILLEGAL = re.compile(f"[{XML_ILLEGAL_CHARS}]")
