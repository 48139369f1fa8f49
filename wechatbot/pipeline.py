"""One callback's way through the host, in one direction.

check the timestamp and signature → decrypt → parse (the endpoint's channel)
→ dedup claim → ask the plugins within ``reply_deadline`` (inline ones on the
request thread, the rest in the bounded pool) → :func:`decision.decide` →
the outbox or a durable job for what the HTTP answer cannot carry → render
and encrypt the passive answer. The view that called :meth:`Pipeline.callback`
gets an :class:`Answer` and sends it; nothing here calls back up.

A retry of a callback (same identity, see ``dedup``) never runs the plugins
again: it gets the first arrival's answer, waiting for it while it runs.
On the AI bot an iterator reply becomes a stream (``streaming``): the answer
is its first frame, and WeCom's refresh polls skip dedup and the plugins,
answered from the shared store with the stream's current text.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable

from . import logs, metrics
from .config import Config
from .decision import Route, decide
from .dedup import Dedup, Fetched, callback_key
from .deferred import dispatch_record
from .endpoint import Endpoint
from .jobs import Jobs
from .outbox import Outbox
from .pool import BoundedPool
from .process import current_pid
from .wecom.crypto import SignatureError
from .wecom.messages import Message
from .streaming import Streaming
from .wecom.replies import ChunkedReply, MarkdownReply, Reply

log = logging.getLogger("wechatbot.pipeline")

MIMETYPES = {"xml": "application/xml", "json": "application/json"}
EMPTY_MIMETYPE = "text/plain"

# Held only while starting a process's background threads.
_START_LOCK = threading.Lock()


class ReplayError(SignatureError):
    """The callback's timestamp is outside ``[wechatbot] replay_window``."""


def check_timestamp(timestamp: str, window: float) -> None:
    """Refuse a callback whose timestamp is more than ``window`` seconds off (0: no check)."""
    if not window:
        return
    try:
        skew = abs(time.time() - int(timestamp))
    except (ValueError, OverflowError):
        raise ReplayError(f"timestamp {timestamp[:20]!r} is not a number of seconds") from None
    if skew > window:
        raise ReplayError(
            f"timestamp is {skew:.0f} s away from this host's clock (replay_window = {window:g} s): "
            "a replayed request, or this host's clock is wrong"
        )


@dataclass(slots=True)
class Answer:
    """What the view sends back: the body (empty: no passive reply) and how it was reached."""

    body: str
    mimetype: str
    message: Message
    plugin: str | None = None
    route: Route = Route.EMPTY


@dataclass(slots=True)
class _Asked:
    """What the plugins said within the deadline."""

    plugin: str | None = None
    reply: Reply | None = None
    finished: bool = True
    future: Future | None = None  # still running in the pool past the deadline


class Pipeline:
    """Answers the callbacks of every endpoint of one host."""

    def __init__(self, config: Config, dedup: Dedup, pool: BoundedPool, jobs: Jobs, outbox: Outbox,
                 streaming: Streaming) -> None:
        self.streaming = streaming
        self.replay_window = config.replay_window
        self.deadline = config.reply_deadline
        self.dedup = dedup
        self.pool = pool
        self.jobs = jobs
        self.outbox = outbox
        self._pid: int | None = None

    def start(self) -> None:
        """Start this process's job consumer and dedup writer (again in a forked child)."""
        with _START_LOCK:
            if self._pid != current_pid():
                self.jobs.start()
                self.dedup.start()
                self._pid = current_pid()

    # -- the two requests WeCom makes ---------------------------------------

    def verify(self, endpoint: Endpoint, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Answer WeCom's URL verification: the decrypted echostr."""
        check_timestamp(timestamp, self.replay_window)
        return endpoint.crypto.verify_url(msg_signature, timestamp, nonce, echostr)

    def callback(self, endpoint: Endpoint, body: bytes, msg_signature: str, timestamp: str, nonce: str,
                 arrived_at: float | None = None, crowded: Callable[[], bool] | None = None) -> Answer:
        """Check, decrypt and answer one POSTed callback.

        ``reply_deadline`` counts from ``arrived_at`` (``time.monotonic()`` when
        the request came in, if the server says), else from now. While
        ``crowded()`` (the server's: other requests wait for a thread), the
        plugins are not waited for: their reply is pushed.

        Raises ``SignatureError`` (``ReplayError``) for a request WeCom did not
        sign just now, ``WeComCryptoError`` or ``MessageParseError`` for a
        broken one.
        """
        check_timestamp(timestamp, self.replay_window)
        plaintext, envelope = endpoint.crypto.open_callback(body, msg_signature, timestamp, nonce)
        channel = endpoint.channel
        arrived = time.time()
        message = channel.parse(plaintext)
        if self._pid != current_pid():  # forked after the host was built (gunicorn --preload)
            self.start()
        reply_envelope = channel.reply_envelope(envelope)
        if message.is_stream_refresh:
            # Never from the dedup cache: every poll gets the stream's current text.
            frame = self.streaming.refresh(endpoint, message.stream_id)  # type: ignore[attr-defined]
            passive = channel.render_passive(frame, message, int(arrived))
            return Answer(endpoint.crypto.encrypt_reply(passive, nonce, fmt=reply_envelope), MIMETYPES[reply_envelope],
                          message, None, Route.STREAM)
        key = callback_key(endpoint.name, message, plaintext)
        claimed, question = self._claim(endpoint, key, message)
        if not claimed:
            log.info("[%s] retry of %s: plugins not run again", endpoint.section, key)
            waited = time.monotonic() - arrived_at if arrived_at is not None else 0.0
            passive = self.dedup.wait_for_answer(key, max(0.0, self.deadline - waited))
            plugin, route = "(retry)", Route.PASSIVE if passive else Route.EMPTY
        else:
            started = arrived_at if arrived_at is not None else time.monotonic()
            asked = self._ask(endpoint, message, started, crowded, question)
            time_left = self.deadline - (time.monotonic() - started)
            route = decide(asked.reply, message, channel, time_left, finished=asked.finished)
            passive = self._follow(route, endpoint, message, plaintext, key, asked, late=time_left <= 0, arrived=arrived)
            plugin = asked.plugin
        if not passive:
            # A suite's callback must be answered "success", in plain text.
            return Answer(channel.acknowledgement(message), EMPTY_MIMETYPE, message, plugin, route)
        return Answer(endpoint.crypto.encrypt_reply(passive, nonce, fmt=reply_envelope), MIMETYPES[reply_envelope], message, plugin, route)

    # -- the steps ------------------------------------------------------------

    def _claim(self, endpoint: Endpoint, key: str, message: Message) -> tuple[bool, Fetched | None]:
        """Whether this is a first arrival, and the sender's pending question read along with the claim.

        A store that fails counts as a first arrival: answer it, do not 500.
        """
        try:
            return self.dedup.claim_and_get(key, endpoint.question_key(message), take_over=True)
        except Exception as exc:
            log.error("[%s] store unavailable, %s handled without retry detection: %s: %s",
                      endpoint.section, key, type(exc).__name__, exc)
            return True, None

    def _ask(self, endpoint: Endpoint, message: Message, started: float, crowded: Callable[[], bool] | None,
             question: Fetched | None = None) -> _Asked:
        """The endpoint's plan: the inline steps on this thread; if none answered, the rest in the pool, until the deadline.

        ``started`` is when the deadline began (``time.monotonic()``): a
        callback that waited for a thread until its time was up answers
        empty at once, its plugins queued as a durable job. One that would
        keep others waiting for a thread (``crowded()``) does not wait for
        the pool either.
        """
        plan = endpoint.plan(message, question)
        if plan.reply is not None:
            return _Asked(plan.plugin, plan.reply)
        plugin, reply = endpoint.ask_chain(message, plan.inline)
        if reply is not None or not plan.rest:
            return _Asked(plugin, reply)
        time_left = self.deadline - (time.monotonic() - started)
        if time_left <= 0:
            metrics.unwaited(endpoint.section, "late")
            log.warning("[%s] %s from %s reached a request thread after reply_deadline: answered empty and queued",
                        endpoint.section, message.type, message.from_user)
            return _Asked(finished=False)
        future = self.pool.submit(endpoint.ask_chain, message, plan.rest)
        if future is None:
            metrics.pool_full(endpoint.section)
            log.warning("[%s] plugin pool full: %s from %s answered empty and queued", endpoint.section, message.type, message.from_user)
            return _Asked(finished=False)
        if crowded is not None and crowded():
            metrics.unwaited(endpoint.section, "crowded")
            log.warning("[%s] request threads all taken and more callbacks waiting: %s from %s answered empty, "
                        "its reply pushed", endpoint.section, message.type, message.from_user)
            return _Asked(finished=False, future=future)
        try:
            plugin, reply = future.result(timeout=time_left)
        except FutureTimeout:
            return _Asked(finished=False, future=future)
        return _Asked(plugin, reply)

    def _follow(self, route: Route, endpoint: Endpoint, message: Message, plaintext: str, key: str, asked: _Asked,
                late: bool, arrived: float) -> str | None:
        """Carry out ``route``; return the plaintext passive answer (``None``: answer empty)."""
        if route is Route.PASSIVE:
            assert asked.reply is not None
            passive = endpoint.channel.render_passive(asked.reply, message, int(time.time()))
            self.dedup.answered(key, passive)
            rest = endpoint.channel.overflow(asked.reply)
            if rest:  # what a finished stream could not show follows through the outbox
                self.outbox.push_soon(endpoint, MarkdownReply(rest), message, asked.plugin)
            return passive
        if route is Route.STREAM:
            assert isinstance(asked.reply, ChunkedReply)
            first = self.streaming.start(endpoint, message, asked.plugin, asked.reply, arrived)
            passive = endpoint.channel.render_passive(first, message, int(time.time()))
            self.dedup.answered(key, passive)  # a retry of this message gets the same stream
            return passive
        if route is Route.EMPTY:
            self.dedup.answered(key, None)
            return None
        self.dedup.deferred(key)
        if route is Route.PUSH_NOW:
            assert asked.reply is not None
            if late:  # an inline plugin overran: WeCom has stopped waiting
                metrics.late_reply(endpoint.section, "pushed")
                log.warning("[%s] plugin %s overran reply_deadline; its reply is pushed", endpoint.section, asked.plugin)
            self.outbox.push_soon(endpoint, asked.reply, message, asked.plugin)
            return None
        self._push_later(endpoint, message, plaintext, key, asked.future)
        return None

    def _push_later(self, endpoint: Endpoint, message: Message, plaintext: str, key: str, future: Future | None) -> None:
        """Hand the reply still to come to a durable job (one that survives this process)."""
        record = dispatch_record(endpoint.name, plaintext)
        if future is None:  # the pool was full: a job runs the plugins
            try:
                self.jobs.submit(record, key)
            except Exception:
                log.exception("[%s] could not queue the plugins for %s from %s: no reply", endpoint.section, message.type, message.from_user)
            return
        log.info("[%s] plugins still busy after %.1f s: reply for %s will be pushed", endpoint.section, self.deadline, message.from_user)
        try:
            self.jobs.adopt(record, key)
        except Exception:
            log.exception("[%s] could not record the job for %s: pushed if this process lives", endpoint.section, key)
        future.add_done_callback(logs.carry(lambda done: self._finish_late(endpoint, message, key, done)))

    def _finish_late(self, endpoint: Endpoint, message: Message, key: str, future: Future) -> None:
        try:
            plugin, reply = future.result()
            sent = None
            if reply is not None:
                sent = self.outbox.push(endpoint, reply, message, plugin)
            metrics.late_reply(endpoint.section, "none" if reply is None else "pushed" if sent is not None else "failed")
        except Exception:
            metrics.late_reply(endpoint.section, "failed")
            log.exception("[%s] late reply for %s could not be delivered", endpoint.section, message.from_user)
        finally:
            self.jobs.finish(key)
