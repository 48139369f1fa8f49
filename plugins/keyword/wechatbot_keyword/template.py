"""Reply texts with ``{placeholder}`` fields, checked once at start-up.

A template is cut into literal pieces and field names when the rules load,
so a placeholder that no message can fill is a start-up error instead of an
answer with a hole in it, and answering a message is a plain join.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Collection, Mapping

from .problems import BadRule

#: Message fields every rule may use; regex rules add their named groups.
MESSAGE_FIELDS = ("from_user", "to_user", "content", "event_key", "agent_id")

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Template:
    """A parsed text: ``pieces`` alternates literal text and a field name (or None)."""

    source: str
    pieces: tuple[tuple[str, str | None], ...]

    def render(self, values: Mapping[str, str]) -> str:
        """The text with every placeholder replaced by its value."""
        return "".join(literal + (values[name] if name is not None else "") for literal, name in self.pieces)


def compile_template(text: str, known: Collection[str]) -> Template:
    """Parse ``text``; every placeholder must be one of ``known``.

    ``{{`` and ``}}`` stand for literal braces. Raises :class:`BadRule` for a
    stray brace, an empty ``{}``, a format spec or an unknown name.
    """
    pieces: list[tuple[str, str | None]] = []
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise BadRule(f"bad placeholder in {text!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for literal, name, spec, conversion in parsed:
        if name is None:
            pieces.append((literal, None))
            continue
        if spec or conversion:
            raise BadRule(f"placeholder {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                          f"in {text!r} takes no conversion or format; write {{{name}}}")
        if name not in known:
            choices = ", ".join("{" + k + "}" for k in known)
            shown = "{" + name + "}"
            raise BadRule(f"unknown placeholder {shown} in {text!r} (known: {choices}; "
                          "write {{ and }} for literal braces)")
        pieces.append((literal, name))
    return Template(text, tuple(pieces))
