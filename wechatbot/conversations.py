"""Questions that wait for the user's answer (``context.ask``), across workers and hosts.

A plugin asks; the question is recorded in the shared store under the user and
the chat it was asked in, and sent as the plugin's reply. The same user's next
message in the same chat is the answer: whichever worker or host it reaches
claims the question once (``add`` on a claim key), and hands the answer to the
plugin's ``then(answer, context, state)`` before any other plugin sees it.

A question expires after its timeout (the next message then goes to the
plugins as usual); a cancel word drops it with a short reply.
"""
from __future__ import annotations

import importlib
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .config import DEFAULT_ASK_TIMEOUT, DEFAULT_CANCEL_REPLY, DEFAULT_CANCEL_WORDS
from .store import PREFIXES
from .wecom.replies import TextReply

if TYPE_CHECKING:
    from .dedup import Fetched
    from .store import Store



@dataclass(frozen=True)
class Pending:
    """A question waiting for its answer."""

    id: str
    plugin: str
    then: str  # "module:qualname" of the function the answer goes to
    question: str
    state: Any

    def handler(self) -> Callable[..., Any]:
        """The ``then`` function, imported by name (it may run in another process)."""
        module, _, name = self.then.partition(":")
        func: Any = importlib.import_module(module)
        for part in name.split("."):
            func = getattr(func, part)
        return func


def function_name(func: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function, or a clear error for any other."""
    target = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', '?')}"
    if "<" in target or "?" in target:
        raise ValueError(f"context.ask needs a module-level function as then=, not {target}")
    return target


def chat_of(message: Any) -> str:
    """The chat a message came from: its ``chat_id``, or ``-`` for a one-to-one conversation."""
    return getattr(message, "chat_id", None) or "-"


class Conversations:
    """The pending questions of one endpoint (``[wecom]`` / ``[wecom:NAME]``)."""

    def __init__(self, store: Store, endpoint: str, timeout: float = DEFAULT_ASK_TIMEOUT,
                 cancel_words: Iterable[str] = DEFAULT_CANCEL_WORDS, cancel_reply: str = DEFAULT_CANCEL_REPLY) -> None:
        self.store = store
        self.endpoint = endpoint
        self.timeout = timeout
        self.cancel_words = {word.strip().casefold() for word in cancel_words if word.strip()}
        self.cancel_reply = cancel_reply

    def key_for(self, message: Any) -> str:
        """The store key of the question ``message``'s sender would be answering."""
        return f"{PREFIXES['ask']}{self.endpoint}:{chat_of(message)}:{message.from_user}"

    def ask(self, plugin: str, message: Any, question: str, then: Callable[..., Any], state: Any = None,
            timeout: float | None = None) -> TextReply:
        """Record a question for the sender of ``message``; return the question as a reply."""
        record = {"id": uuid.uuid4().hex, "plugin": plugin, "then": function_name(then),
                  "question": question, "state": state}
        try:
            raw = json.dumps(record, ensure_ascii=False)
        except TypeError as exc:
            raise TypeError(f"context.ask state must be plain JSON: {exc}") from None
        self.store.set(self.key_for(message), raw, timeout or self.timeout)
        return TextReply(question)

    def take(self, message: Any, fetched: Fetched | None = None) -> Pending | None:
        """The question ``message`` answers, claimed for this message only; None when there is none.

        Two messages arriving at once on different workers cannot both take
        the same question: the claim is an atomic ``add`` in the shared store.
        ``fetched`` is the question's record as read with the callback's dedup
        claim (:meth:`Dedup.claim_and_get`); without it, it is read here.
        """
        key = self.key_for(message)
        raw = self.store.get(key) if fetched is None else fetched.value
        if raw is None:
            return None
        record = json.loads(raw)
        if not self.store.add(f"{PREFIXES['ask_taken']}{record['id']}", "1", self.timeout):
            return None
        self.store.delete(key)
        return Pending(record["id"], record["plugin"], record["then"], record["question"], record.get("state"))

    def is_cancel(self, message: Any) -> bool:
        """Whether ``message`` is one of the cancel words."""
        content = getattr(message, "content", None)
        return isinstance(content, str) and content.strip().casefold() in self.cancel_words
