"""A rule (a matcher and a reply) and the rulebook that finds the first matching rule.

Text rules and event rules are kept in two lists, each in config order, so a
message only walks the rules that can answer it; the first match wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from wechatbot import Event, Message, Reply, TextMessage

from .matchers import EventMatcher, IncomingText, TextMatcher
from .reply_specs import ReplyTemplate


@dataclass(frozen=True)
class Rule:
    """One named rule: what it listens for and what it answers."""

    name: str
    matcher: TextMatcher | EventMatcher
    reply: ReplyTemplate

    @property
    def for_events(self) -> bool:
        """Whether the rule answers events rather than text messages."""
        return isinstance(self.matcher, EventMatcher)


def message_fields(message: Message) -> dict[str, str]:
    """The values of the message placeholders (empty when the message has no such field)."""
    return {
        "from_user": message.from_user or "",
        "to_user": message.to_user or "",
        "agent_id": message.agent_id or "",
        "content": message.content if isinstance(message, TextMessage) else "",
        "event_key": (message.event_key or "") if isinstance(message, Event) else "",
    }


class Rulebook:
    """The rules of one app, ready to answer."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = list(rules)
        self.text_rules = [rule for rule in self.rules if not rule.for_events]
        self.event_rules = [rule for rule in self.rules if rule.for_events]

    def __len__(self) -> int:
        return len(self.rules)

    def find_text(self, message: TextMessage) -> tuple[Rule, Reply] | None:
        """The first text rule matching ``message`` and its reply, or None."""
        incoming = IncomingText.of(message.content)
        for rule in self.text_rules:
            groups = rule.matcher.match(incoming)  # type: ignore[arg-type]
            if groups is not None:
                return rule, rule.reply.render({**message_fields(message), **groups})
        return None

    def find_event(self, event: Event) -> tuple[Rule, Reply] | None:
        """The first event rule matching ``event`` and its reply, or None."""
        for rule in self.event_rules:
            groups = rule.matcher.match(event)  # type: ignore[arg-type]
            if groups is not None:
                return rule, rule.reply.render({**message_fields(event), **groups})
        return None
