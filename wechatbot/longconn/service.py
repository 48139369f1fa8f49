"""A ``mode = websocket`` AI bot endpoint at run time: frames in, the same plugins, frames out.

Each callback frame becomes the same typed message as the HTTP callback of
an AI bot (:func:`wecom.aibot.message_from_json`), is claimed in the shared
dedup store by its msgid exactly as a callback is (so a repeated msgid, on
this connection or after a takeover, never runs the plugins twice), and is
answered by the endpoint's plugins in the host's bounded pool. Their reply
leaves as frames through the :class:`~.holder.Holder`. A plugin cannot tell
which mode delivered its message.

A streamed reply (a generator) sends its text as it grows (the placeholder
first if the first chunk is slow to come) (the send queue merges what a pending receipt holds back), and
finishes before the stream's window closes; text beyond 20480 bytes, or
written after the window, follows as markdown pushes. Each stream is kept in
the store while it runs: if its process dies, the next holder ends it with a
visible note instead of leaving the user a bubble that never finishes.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..dedup import Dedup, callback_key
from ..pool import BoundedPool
from ..report import kind_of
from ..store import PREFIXES
from ..streams import FAILED, INTERRUPTED, MORE_BELOW, NOTE_RESERVE, fit_stream, new_stream_id
from ..wecom.aibot import message_from_json
from ..wecom.bot_replies import STREAM_CONTENT_LIMIT, cut_utf8
from ..wecom.messages import Message, MessageParseError
from ..wecom.replies import ChunkedReply, Reply, ReplyFormError, TextReply
from . import protocol
from .connection import ConnectionSettings
from .holder import Holder
from .render import conversation, push_frames, reply_frames, stream_body

if TYPE_CHECKING:
    from ..config import Config
    from ..endpoint import Endpoint
    from ..store import Store

log = logging.getLogger("wechatbot.longconn")

# Least time between two intermediate frames a stream hands to the holder
# (the send queue merges further; this keeps a chatty generator off the store).
STREAM_FLUSH = 0.2
# A stream whose first chunk takes longer than this shows the placeholder meanwhile.
PLACEHOLDER_AFTER = 1.0


class LongConnEndpoint:
    """Serves one AI bot over its long connection, in every process of the host."""

    def __init__(self, endpoint: Endpoint, config: Config, store: Store, dedup: Dedup, pool: BoundedPool,
                 **holder_options: Any) -> None:
        self.endpoint = endpoint
        self.dedup = dedup
        self.pool = pool
        self.placeholder = config.stream_placeholder
        self.window = config.stream_window
        self.margin = min(20.0, config.stream_window / 10)
        cfg = endpoint.config
        self.store = store
        self.streams_key = PREFIXES["longconn_streams"] + cfg.bot_id
        holder_options.setdefault("retry_for", config.push_retry_for)
        self.holder = Holder(ConnectionSettings(cfg.ws_url, cfg.bot_id, cfg.secret), store, self.on_callback,
                             on_acquired=self.finish_orphans, on_failed=self.report_failed, **holder_options)

    def start(self) -> None:
        """Stand by for the bot's connection (the process that gets the lease connects)."""
        self.holder.start()
        log.info("[%s] AI bot %s on the long connection %s", self.endpoint.section, self.endpoint.config.bot_id,
                 self.endpoint.config.ws_url)

    def close(self) -> None:
        """Close the connection (if held here) and hand waiting frames to the next holder."""
        self.holder.close()

    # -- frames in ------------------------------------------------------------

    def on_callback(self, received: dict[str, Any]) -> None:
        """One ``aibot_msg_callback`` / ``aibot_event_callback`` (on the connection's reader thread)."""
        body = received.get("body")
        req_id = protocol.req_id(received)
        try:
            message = message_from_json(body)
        except MessageParseError as exc:
            log.warning("[%s] ignored a %s: %s", self.endpoint.section, received.get("cmd"), exc)
            return
        plaintext = json.dumps(body, ensure_ascii=False, sort_keys=True)
        key = callback_key(self.endpoint.name, message, plaintext)
        try:
            first = self.dedup.claim(key)
        except Exception as exc:  # a store that fails counts as a first arrival: answer it
            log.error("[%s] store unavailable, %s handled without repeat detection: %s", self.endpoint.section, key, exc)
            first = True
        if not first:
            metrics.callback_done(self.endpoint.section, kind_of(message), "retry")
            log.info("[%s] repeat of %s: plugins not run again", self.endpoint.section, key)
            return
        if self.pool.submit(self._answer, message, req_id) is None:
            metrics.pool_full(self.endpoint.section)
            log.error("[%s] plugin pool full: %s from %s not answered", self.endpoint.section, message.type,
                      message.from_user)

    # -- frames out -------------------------------------------------------------

    def _answer(self, message: Message, req_id: str) -> None:
        started = time.monotonic()
        plugin, reply = self.endpoint.answer(message)
        metrics.callback_done(self.endpoint.section, kind_of(message), "empty" if reply is None else "answered",
                              time.monotonic() - started)
        if reply is None:
            return
        try:
            if isinstance(reply, ChunkedReply) and not message.is_event:
                self._stream(reply, message, req_id, plugin)
                return
            frames = reply_frames(reply.joined() if isinstance(reply, ChunkedReply) else reply, message, req_id)
        except (ReplyFormError, ValueError, TypeError) as exc:
            log.error("[%s] the reply of %s to %s cannot be sent: %s", self.endpoint.section, plugin, message.type, exc)
            return
        for frame in frames:
            self.send(frame, message, plugin)

    def send(self, frame: dict[str, Any], message: Message, plugin: str | None = None) -> None:
        """Hand one frame to whichever process holds the connection (``plugin`` made it)."""
        protocol.check_reply(frame)
        self.holder.send(frame, conversation(message), {"plugin": plugin, "body": message.raw})

    def push(self, reply: Reply, message: Message, plugin: str | None = None) -> None:
        """Push ``reply`` to the conversation of ``message`` (``aibot_send_msg``)."""
        for frame in push_frames(reply, message):
            self.send(frame, message, plugin)

    def report_failed(self, meta: dict[str, Any], error: Exception) -> None:
        """A frame failed for good: tell the plugins' ``plugin_error`` (hook ``push``), off the connection's threads."""
        if self.pool.submit(self._report, meta, error) is None:
            log.error("[%s] plugin pool full: a failed push is not reported to plugin_error", self.endpoint.section)

    def _report(self, meta: dict[str, Any], error: Exception) -> None:
        try:
            message = message_from_json(meta.get("body"))
        except MessageParseError:
            message = None
        self.endpoint.notify("plugin_error", plugin_name=meta.get("plugin") or "wechatbot", hook_name="push",
                             exception=error, message=message)

    def finish_orphans(self) -> None:
        """After a takeover: end, with a visible note, the streams whose process died while writing them."""
        for key in self.store.pop(self.streams_key, 1000):
            raw = self.store.get(key)
            if raw is None:
                continue  # it finished
            record = json.loads(raw)
            if self.holder.is_alive(record["owner"]):
                self.store.push(self.streams_key, key, self.window + 60)
                continue
            visible = _Stream.visible(record["text"])
            content = visible + INTERRUPTED if visible else INTERRUPTED.lstrip("\n")
            message = message_from_json(record["body"])
            self.send(protocol.frame(protocol.RESPOND, record["req_id"], stream_body(record["stream_id"], content, True)),
                      message, record.get("plugin"))
            self.store.delete(key)
            log.warning("[%s] stream %s lost its process: ended with a note after %d characters",
                        self.endpoint.section, record["stream_id"], len(visible))
            self.endpoint.notify("plugin_error", plugin_name=record.get("plugin"), hook_name="handle_message",
                                 exception=RuntimeError("the process writing this stream died"), message=message)

    def _stream(self, reply: ChunkedReply, message: Message, req_id: str, plugin: str | None) -> None:
        stream = _Stream(self, message, req_id, time.monotonic() + self.window - self.margin, plugin)
        error: Exception | None = None
        try:
            for chunk in reply.pieces():
                stream.append(chunk)
        except Exception as exc:  # the plugin's iterator failed: end visibly, report it
            error = exc
            log.exception("[%s] the stream of plugin %s failed", self.endpoint.section, plugin)
            self.endpoint.notify("plugin_error", plugin_name=plugin, hook_name="handle_message", exception=exc,
                                 message=message)
        rest = stream.finish(error)
        if rest:
            self.push(TextReply(rest), message, plugin)


class _Stream:
    """One streamed answer: the text as it grows (the placeholder while the first chunk is slow), one finishing frame."""

    def __init__(self, service: LongConnEndpoint, message: Message, req_id: str, closes_at: float,
                 plugin: str | None) -> None:
        self.service = service
        self.plugin = plugin
        self.key = f"{PREFIXES['longconn_stream']}{service.endpoint.config.bot_id}:{req_id}"
        self.message = message
        self.req_id = req_id
        self.stream_id = new_stream_id()
        self.text = ""
        self.shown: int | None = None  # set once the finishing frame went: characters of text it shows
        self._last = 0.0
        self._lock = threading.Lock()
        self._sent_any = False
        self._timers = [threading.Timer(PLACEHOLDER_AFTER, self._placeholder),
                        threading.Timer(max(0.0, closes_at - time.monotonic()), self._window_closed)]
        for timer in self._timers:
            timer.daemon = True
            timer.start()

    def _send(self, content: str, finish: bool) -> None:
        self._record(finish)
        self._sent_any = True
        self.service.send(protocol.frame(protocol.RESPOND, self.req_id, stream_body(self.stream_id, content, finish)),
                          self.message, self.plugin)

    def _record(self, finish: bool) -> None:
        """Keep the stream in the store while it runs, so a new holder can end it if this process dies."""
        service = self.service
        try:
            if finish:
                service.store.delete(self.key)
                return
            service.store.set(self.key, json.dumps({
                "req_id": self.req_id, "stream_id": self.stream_id, "text": self.text, "plugin": self.plugin,
                "owner": service.holder.owner, "body": self.message.raw}, ensure_ascii=False), service.window + 60)
            if not self._sent_any:
                service.store.push(service.streams_key, self.key, service.window + 60)
        except Exception as exc:  # the stream still goes out; only its recovery after a crash is lost
            log.warning("[%s] cannot record stream %s: %s", service.endpoint.section, self.stream_id, exc)

    @staticmethod
    def visible(text: str) -> str:
        return cut_utf8(text, STREAM_CONTENT_LIMIT - NOTE_RESERVE)[0]

    def append(self, chunk: str) -> None:
        with self._lock:
            self.text += chunk
            now = time.monotonic()
            if self.shown is None and now - self._last >= STREAM_FLUSH:
                self._last = now
                self._send(self.visible(self.text) or self.service.placeholder, False)

    def _placeholder(self) -> None:
        """Nothing written yet: show the placeholder, so the user sees the answer coming."""
        with self._lock:
            if not self._sent_any:
                self._send(self.service.placeholder, False)

    def _window_closed(self) -> None:
        """The window is about to close with the plugin still writing: finish with what is there."""
        with self._lock:
            if self.shown is None:
                visible = self.visible(self.text)
                self.shown = len(visible)
                self._send(visible + MORE_BELOW if visible else MORE_BELOW.lstrip("\n"), True)

    def finish(self, error: Exception | None) -> str:
        """Send the finishing frame (unless the window did); return the text still to push."""
        for timer in self._timers:
            timer.cancel()
        with self._lock:
            if self.shown is not None:
                return self.text[self.shown:]
            if error is not None:
                visible = self.visible(self.text)
                self.shown = len(self.text)
                self._send(visible + FAILED if visible else FAILED.lstrip("\n"), True)
                return ""
            content, rest = fit_stream(self.text) if self.text else (self.service.placeholder, "")
            self.shown = len(self.text) - len(rest)
            self._send(content, True)
            return rest
