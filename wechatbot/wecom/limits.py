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
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_LENGTH",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_EQUALS",
    "MAX_MARKUP",
    "MAX_NAME_LENGTH",
    "MAX_NONCE_LENGTH",
    "MAX_SIGNATURE_LENGTH",
    "MAX_TIMESTAMP_LENGTH",
    "MSGTYPES",
    "RESPONSE_URL_MARKDOWN_LIMIT",
    "STREAM_CONTENT_LIMIT",
    "STREAM_IMAGE_BYTES",
    "STREAM_IMAGE_LIMIT",
    "NEWS_ARTICLE_LIMIT",
    "TEXT_LIMIT",
    "XML_ILLEGAL",
    "XML_ILLEGAL_CHARS",
    "StructureGuard",
    "TooComplex",
    "count_markup",
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

# How much structure a callback may have. WeCom's own documents nest about
# five levels deep, hold a few dozen elements and no attributes; these caps
# leave plenty of room for that and refuse documents built to make a parser
# work or a worker's memory grow (checked before and while parsing).

#: Elements may nest at most this deep (``<xml>`` is level 1).
MAX_DEPTH = 32
#: A document may hold at most this many elements.
MAX_ELEMENTS = 10_000
#: A document may hold at most this many ``<`` characters (markup and text
#: together), counted before any parsing starts.
MAX_MARKUP = 4 * MAX_ELEMENTS
#: An element may carry at most this many attributes.
MAX_ATTRIBUTES = 16
#: A document may hold at most this many ``=`` characters (every attribute
#: needs one), counted before parsing: a parser builds all of an element's
#: attributes before anyone can count them.
MAX_EQUALS = 4096
#: An element or attribute name may be at most this many characters long.
MAX_NAME_LENGTH = 256
#: An attribute value may be at most this many characters long.
MAX_ATTRIBUTE_LENGTH = 4096

#: The query parameters WeCom signs are short: a SHA-1 hex signature, a
#: timestamp in seconds, a nonce of a few characters. Longer values are refused.
MAX_SIGNATURE_LENGTH = 128
MAX_TIMESTAMP_LENGTH = 20
MAX_NONCE_LENGTH = 128


class TooComplex(Exception):
    """A document breaks one of the structure caps; the message names the cap."""


def count_markup(document: str | bytes) -> None:
    """Refuse a document with more than :data:`MAX_MARKUP` ``<`` or :data:`MAX_EQUALS` ``=``, before parsing it."""
    binary = isinstance(document, bytes)
    found = document.count(b"<" if binary else "<")  # type: ignore[arg-type]
    if found > MAX_MARKUP:
        raise TooComplex(f"it holds {found} '<' characters (at most {MAX_MARKUP})")
    found = document.count(b"=" if binary else "=")  # type: ignore[arg-type]
    if found > MAX_EQUALS:
        raise TooComplex(f"it holds {found} '=' characters, so too many attributes (at most {MAX_EQUALS})")


class StructureGuard:
    """Counts what an expat parser reports and raises :class:`TooComplex` past a cap.

    Call :meth:`enter` from the start-element handler and :meth:`leave`
    from the end-element handler; raising from a handler stops expat at once.
    """

    __slots__ = ("depth", "elements")

    def __init__(self) -> None:
        self.depth = 0
        self.elements = 0

    def enter(self, name: str, attrs: dict[str, str]) -> None:
        """One more element opened."""
        self.depth += 1
        self.elements += 1
        if self.depth > MAX_DEPTH:
            raise TooComplex(f"its elements nest deeper than {MAX_DEPTH} levels")
        if self.elements > MAX_ELEMENTS:
            raise TooComplex(f"it holds more than {MAX_ELEMENTS} elements")
        if len(name) > MAX_NAME_LENGTH:
            raise TooComplex(f"an element name is longer than {MAX_NAME_LENGTH} characters")
        if attrs:
            if len(attrs) > MAX_ATTRIBUTES:
                raise TooComplex(f"an element has {len(attrs)} attributes (at most {MAX_ATTRIBUTES})")
            for key, value in attrs.items():
                if len(key) > MAX_NAME_LENGTH or len(value) > MAX_ATTRIBUTE_LENGTH:
                    raise TooComplex(f"an attribute is longer than {MAX_NAME_LENGTH} characters (name) "
                                     f"or {MAX_ATTRIBUTE_LENGTH} (value)")

    def leave(self) -> None:
        """One element closed."""
        self.depth -= 1
