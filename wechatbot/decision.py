"""How a reply leaves: a pure function of the reply, the message, the channel and the time left.

It sends nothing and remembers nothing, so every rule about "passive or
pushed" sits here, in one place, and is tested without a server.
"""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from .wecom.replies import ChunkedReply

if TYPE_CHECKING:
    from .channels import Channel
    from .wecom.messages import Message
    from .wecom.replies import Reply


class Route(Enum):
    """The ways an answer to one callback can take."""

    #: Nothing to say: answer the HTTP request empty.
    EMPTY = "empty"
    #: The reply goes back in the HTTP answer.
    PASSIVE = "passive"
    #: Answer empty and push the reply through the outbox at once (it is ready
    #: but a passive answer cannot carry it, or WeCom stopped waiting).
    PUSH_NOW = "push now"
    #: Answer with the first frame of a stream (an iterator reply on the AI bot);
    #: the iterator runs on, and any worker answers WeCom's refresh polls.
    STREAM = "stream"
    #: Answer empty; the plugins are still working (or have not started): a
    #: durable job pushes their reply when it comes.
    PUSH_LATER = "push later"


def decide(reply: Reply | None, message: Message, channel: Channel, time_left: float, *, finished: bool = True) -> Route:
    """The route for ``reply`` to ``message`` on ``channel``.

    ``time_left`` is what remains of ``reply_deadline`` (zero or less: WeCom
    has stopped waiting for this answer); ``finished`` is False while the
    plugins are still working on ``message``.
    """
    if not finished:
        return Route.PUSH_LATER
    if reply is None:
        return Route.EMPTY
    if time_left <= 0:
        return Route.PUSH_NOW
    if channel.streams and isinstance(reply, ChunkedReply) and message.accepts_passive_reply and not message.is_event:
        return Route.STREAM
    if channel.can_answer_passively(reply, message):
        return Route.PASSIVE
    return Route.PUSH_NOW
