"""What every channel offers the pipeline: parse at one end, render at the other.

A channel is one kind of WeCom endpoint (``[wecom] type``): how its decrypted
callbacks become messages, what it can answer in the HTTP response, in which
envelope the answer goes back, and how a reply that cannot go passively is
pushed. The pipeline knows nothing about XML or JSON: it asks the channel.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from ..config import EndpointConfig
from ..wecom.callbacks import acknowledgement
from ..wecom.messages import Message
from ..wecom.replies import Reply


class Channel(ABC):
    """The protocol of one endpoint type; one instance per configured endpoint.

    Subclasses set :attr:`type` (the ``[wecom] type`` value), :attr:`envelope`
    and :attr:`push_via`, and implement the four methods.
    """

    #: The ``[wecom] type`` this channel serves.
    type: ClassVar[str]
    #: The envelope its callbacks come in: ``"xml"``, ``"json"``, or ``None``
    #: for either (the answer then goes back in the callback's own format).
    envelope: ClassVar[str | None] = None
    #: The outbox's way of pushing a reply that cannot go passively.
    push_via: ClassVar[str] = "message_send"
    #: Whether an iterator reply streams (the AI bot); elsewhere it is joined into one text.
    streams: ClassVar[bool] = False

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config

    @abstractmethod
    def parse(self, plaintext: str) -> Message:
        """The typed message for one decrypted callback (raise MessageParseError if broken)."""

    @abstractmethod
    def dump(self, message: Message) -> str:
        """A plaintext that :meth:`parse` reads back into ``message`` (for durable jobs)."""

    @abstractmethod
    def can_answer_passively(self, reply: Reply, message: Message) -> bool:
        """Whether ``reply`` to ``message`` can go back in the HTTP answer."""

    @abstractmethod
    def render_passive(self, reply: Reply, message: Message, now: int) -> str:
        """The plaintext passive answer carrying ``reply`` (only when it can go passively)."""

    def overflow(self, reply: Reply) -> str:
        """The part of a passively answered ``reply`` that must follow through the outbox (usually none)."""
        return ""

    def acknowledgement(self, message: Message) -> str:
        """The plain body WeCom expects when nothing answers ``message``: ``success``
        for a suite's callback, else empty."""
        return acknowledgement(message)

    def reply_envelope(self, callback_envelope: str) -> str:
        """The envelope format of the answer to a callback that came in ``callback_envelope``."""
        return self.envelope or callback_envelope

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.section!r})"
