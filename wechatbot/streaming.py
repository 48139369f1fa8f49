"""An iterator reply on the AI bot, run as a stream: the first frame, the feeding, the polls.

The pipeline hands over two things. A plugin's :class:`~.wecom.replies.ChunkedReply`
to a user's message (:meth:`Streaming.start`): the stream is opened in the
shared store, its first frame goes back in the HTTP answer, and the iterator
runs on in the plugin pool, each chunk appended. And each refresh poll
(:meth:`Streaming.refresh`): answered from the store at once, whichever worker
or host it reaches. What a stream could not show goes once through the
outbox (``response_url``); a plugin that failed, or whose worker died, is
reported to ``plugin_error``.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .errors import WechatbotError
from .streams import Streams, StreamWriter
from .wecom.bot_replies import StreamReply
from .wecom.messages import Message
from .wecom.replies import ChunkedReply, MarkdownReply

if TYPE_CHECKING:
    from .endpoint import Endpoint
    from .outbox import Outbox
    from .pool import BoundedPool

log = logging.getLogger("wechatbot.streaming")

__all__ = ["StreamOrphaned", "Streaming"]


class StreamOrphaned(WechatbotError):
    """The worker running a plugin's stream died (SIGKILL, a deploy); the stream was ended with a note."""


class Streaming:
    """Streams of every AI bot endpoint of one host."""

    def __init__(self, streams: Streams, pool: BoundedPool, outbox: Outbox) -> None:
        self.streams = streams
        self.pool = pool
        self.outbox = outbox

    def start(self, endpoint: Endpoint, message: Message, plugin: str | None, reply: ChunkedReply,
              started: float) -> StreamReply:
        """Open a stream for ``reply`` and start feeding it; returns the first frame to answer with.

        ``started`` is when the callback arrived (wall clock): the window counts from it.
        """
        meta = {"plugin": plugin, "message": endpoint.channel.dump(message)}
        writer = self.streams.open(endpoint.name, started=started, meta=meta)
        if self.pool.submit(self._feed, endpoint, message, plugin, reply, writer) is None:
            # The pool is full; a stream must still run to its end.
            threading.Thread(target=self._feed, args=(endpoint, message, plugin, reply, writer),
                             name="wechatbot-stream", daemon=True).start()
        return StreamReply(writer.first_frame, finish=False, stream_id=writer.stream_id)

    def _feed(self, endpoint: Endpoint, message: Message, plugin: str | None, reply: ChunkedReply,
              writer: StreamWriter) -> None:
        try:
            ending, rest, error = writer.run(reply.chunks)
        except Exception:
            log.exception("[%s] stream %s for %s could not be kept in the store", endpoint.section, writer.stream_id,
                          message.from_user)
            return
        if error is not None:
            log.error("[%s] plugin %s failed while streaming to %s: %s: %s", endpoint.section, plugin,
                      message.from_user, type(error).__name__, error, exc_info=error)
            endpoint.notify("plugin_error", plugin_name=plugin, hook_name="handle_message", exception=error, message=message)
        if rest.strip():
            log.info("[%s] stream %s ended (%s): %d more characters go through response_url",
                     endpoint.section, writer.stream_id, ending.reason, len(rest))
            try:
                self.outbox.push(endpoint, MarkdownReply(rest), message, plugin)
            except Exception:
                log.exception("[%s] the rest of stream %s could not be sent to %s", endpoint.section,
                              writer.stream_id, message.from_user)

    def refresh(self, endpoint: Endpoint, stream_id: str) -> StreamReply:
        """The answer to one refresh poll: the stream's whole text so far, from the store."""
        frame = self.streams.poll(endpoint.name, stream_id)
        if frame.orphaned:
            self._report_orphan(endpoint, stream_id, frame.meta)
        return StreamReply(frame.content, finish=frame.finish, stream_id=stream_id)

    @staticmethod
    def _report_orphan(endpoint: Endpoint, stream_id: str, meta: dict) -> None:
        try:
            message = endpoint.channel.parse(meta.get("message") or "{}")
            error = StreamOrphaned(f"the worker streaming {stream_id} to {message.from_user} stopped; "
                                   "the stream was ended with a note")
            endpoint.notify("plugin_error", plugin_name=meta.get("plugin") or "", hook_name="handle_message",
                            exception=error, message=message)
        except Exception:
            log.exception("[%s] could not report orphaned stream %s", endpoint.section, stream_id)
