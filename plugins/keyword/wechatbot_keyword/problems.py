"""The two errors of the keyword plugin: a problem inside one rule, and the
start-up error that names the rule it was found in."""
from __future__ import annotations

SECTION = "[plugin:keyword]"


class BadRule(ValueError):
    """What is wrong with one rule, without the rule's name (the loader adds it)."""


class KeywordConfigError(ValueError):
    """A start-up error in the keyword rules; the message names the section and rule."""

    @classmethod
    def for_rule(cls, rule: str, problem: object) -> KeywordConfigError:
        """``[plugin:keyword] rule 'NAME': PROBLEM``."""
        return cls(f"{SECTION} rule '{rule}': {problem}")

    @classmethod
    def for_option(cls, option: str, problem: object) -> KeywordConfigError:
        """``[plugin:keyword] OPTION: PROBLEM``."""
        return cls(f"{SECTION} {option}: {problem}")
