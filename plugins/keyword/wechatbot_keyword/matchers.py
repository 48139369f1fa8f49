"""What a rule listens for: a text (exact, contains, prefix, regex) or an event.

Everything a matcher needs is prepared when the rules load (folded patterns,
compiled expressions); matching a message only compares strings. A match
returns the values it adds to the reply's placeholders (a regex's named
groups), or None when the message does not match.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from wechatbot import Event

from .problems import BadRule

TEXT_KINDS = ("exact", "contains", "prefix", "regex")


@dataclass(frozen=True)
class IncomingText:
    """A text message's content as the text matchers see it, prepared once per message.

    ``text`` is the content without surrounding whitespace; ``folded`` the
    same text case-folded, for rules that ignore case.
    """

    text: str
    folded: str

    @classmethod
    def of(cls, content: str) -> IncomingText:
        """Prepare ``content`` for matching."""
        text = content.strip()
        return cls(text, text.casefold())


class TextMatcher(Protocol):
    """Matches a text message; ``placeholders`` are the names ``match`` may fill."""

    placeholders: frozenset[str]

    def match(self, incoming: IncomingText) -> dict[str, str] | None: ...


@dataclass(frozen=True)
class _PlainMatcher:
    """exact, contains and prefix: a string comparison, case-folded when asked."""

    kind: str
    pattern: str
    ignore_case: bool
    placeholders: frozenset[str] = field(default=frozenset(), init=False)

    def match(self, incoming: IncomingText) -> dict[str, str] | None:
        text = incoming.folded if self.ignore_case else incoming.text
        if self.kind == "exact":
            found = text == self.pattern
        elif self.kind == "contains":
            found = self.pattern in text
        else:
            found = text.startswith(self.pattern)
        return {} if found else None


@dataclass(frozen=True)
class _RegexMatcher:
    """A regular expression searched in the text; named groups become placeholders."""

    regex: re.Pattern[str]
    placeholders: frozenset[str]

    def match(self, incoming: IncomingText) -> dict[str, str] | None:
        found = self.regex.search(incoming.text)
        if found is None:
            return None
        return {name: value or "" for name, value in found.groupdict().items()}


def text_matcher(kind: str, pattern: str, ignore_case: bool) -> TextMatcher:
    """A matcher for ``kind`` (one of :data:`TEXT_KINDS`); raises :class:`BadRule`."""
    if not pattern.strip():
        raise BadRule(f"the {kind} pattern is empty")
    if kind == "regex":
        try:
            regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except re.error as exc:
            raise BadRule(f"bad regular expression '{pattern}': {exc}") from None
        return _RegexMatcher(regex, frozenset(regex.groupindex))
    if kind in ("exact", "contains", "prefix"):
        pattern = pattern.strip()
        return _PlainMatcher(kind, pattern.casefold() if ignore_case else pattern, ignore_case)
    raise BadRule(f"unknown match kind {kind!r} (known: {', '.join(TEXT_KINDS)}, or an event rule)")


@dataclass(frozen=True)
class EventMatcher:
    """An event by its name (lower case, as ``Event.event``), and its EventKey when given.

    The key is compared exactly: it is an identifier the app's developer chose
    (a menu item's key, a card button's key), not something a user types.
    """

    name: str
    key: str | None = None
    placeholders: frozenset[str] = field(default=frozenset(), init=False)

    def match(self, event: Event) -> dict[str, str] | None:
        if event.event != self.name:
            return None
        if self.key is not None and (event.event_key or "") != self.key:
            return None
        return {}


def event_matcher(name: str, key: str | None = None) -> EventMatcher:
    """A matcher for the event ``name`` (any case), with ``key`` when given; raises :class:`BadRule`."""
    name = name.strip()
    if not name or any(ch.isspace() for ch in name):
        raise BadRule(f"bad event name {name!r}: give one word such as click, enter_agent or subscribe")
    if key is not None:
        key = key.strip()
        if not key:
            raise BadRule(f"the event key of {name!r} is empty; leave it out to match every key")
    return EventMatcher(name.lower(), key)
