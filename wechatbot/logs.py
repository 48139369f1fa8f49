"""Log lines people and log shippers can read, each callback's lines tied by an id.

:func:`setup` puts one handler on the root logger, so wechatbot's lines and
the plugins' (``context.log`` or any logger of their own) come out alike: time,
level, pid, logger, the callback's id when there is one, then the message —
as text, or as one JSON object per line (``[wechatbot] log_format = json``).
Under gunicorn (``gunicorn.conf.py``'s ``post_fork``) the handler writes to
gunicorn's error log; ``wechatbot serve`` writes to stderr.

Every callback gets an id (:func:`begin_request`): the reverse proxy's
``X-Request-Id`` when it sends a sensible one, else a new one. It lives in a
context variable while the callback is handled, so every line logged on its
behalf carries it without being passed around; :func:`carry` takes it along
to another thread.
"""
from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import secrets
import sys
import time
from typing import IO, Any, Callable, Mapping, TypeVar

from .config import DEFAULT_LOG_FORMAT, LOG_FORMATS
from .redact import message_of

T = TypeVar("T")

REQUEST_ID_HEADER = "X-Request-Id"
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("wechatbot_request_id", default="")
# What a proxy's id may look like to be taken as it is: short, no spaces, nothing to escape.
_SENSIBLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def current_request_id() -> str:
    """The id of the callback being handled in this context (``""`` outside one)."""
    return _request_id.get()


def begin_request(offered: str | None = None) -> str:
    """Give the request handled in this context an id, ``offered`` if it is sensible.

    Returns the id. The caller answers it in ``X-Request-Id`` so that the
    access log (and the client) can show it.
    """
    request_id = offered if offered and _SENSIBLE_ID.fullmatch(offered) else _new_id()
    _request_id.set(request_id)
    return request_id


_id_source: tuple[int, str, itertools.count] = (0, "", itertools.count())


def _new_id() -> str:
    """16 hex digits: 8 random per process, then a counter (cheaper than a random id each)."""
    global _id_source
    pid, prefix, counter = _id_source
    if pid != os.getpid():  # first use, or a forked child: a prefix of its own
        _id_source = pid, prefix, counter = os.getpid(), secrets.token_hex(4), itertools.count()
    return f"{prefix}{next(counter) & 0xFFFFFFFF:08x}"


def end_request() -> None:
    """Forget the current request's id (the thread goes on to another request)."""
    _request_id.set("")


def carry(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` bound to this context, for running in another thread with the same request id."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(fn, *args, **kwargs)


_last_second: tuple[int, str] = (-1, "")


def _iso_time(created: float) -> str:
    """``2026-12-01T10:00:00.123Z`` (UTC); the seconds part is made once per second."""
    global _last_second
    seconds = int(created)
    if _last_second[0] != seconds:
        _last_second = seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{_last_second[1]}.{int((created - seconds) * 1000):03d}Z"


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    # exc_text, when set, is the traceback with its secrets already hidden (wechatbot.redact).
    return record.exc_text or formatter.formatException(record.exc_info)  # type: ignore[arg-type]


class TextFormatter(logging.Formatter):
    """``2026-12-01T10:00:00.123Z INFO [pid] logger [request id]: message``, one line (line breaks
    in the message are written as ``\\n``); a traceback follows on lines of its own."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = _request_id.get()
        message = message_of(record)
        if "\n" in message or "\r" in message:  # a user id or msgtype with a line break must not forge lines
            message = message.replace("\r", "\\r").replace("\n", "\\n")
        line = (f"{_iso_time(record.created)} {record.levelname} [{record.process}] {record.name}"
                f"{' [' + request_id + ']' if request_id else ''}: {message}")
        if record.exc_info:
            line += "\n" + _traceback(self, record)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, pid, logger, request_id, message, and
    the ``fields`` a line was logged with (``log.info(..., extra={"fields": {...}})``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record.created), "level": record.levelname, "pid": record.process,
            "logger": record.name, "message": message_of(record),
        }
        request_id = _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update((k, v) for k, v in fields.items() if k not in entry)
        if record.exc_info:
            entry["exception"] = _traceback(self, record)
        return json.dumps(entry, ensure_ascii=False, default=str)


FORMATTERS: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JSONFormatter}
assert set(FORMATTERS) == set(LOG_FORMATS)


class LineHandler(logging.StreamHandler):
    """Writes each line with one ``write`` to the stream's file descriptor, holding no lock.

    A ``StreamHandler`` holds its lock across the write system call, which
    lets go of the GIL: under gunicorn's threads every other thread logging
    meanwhile queues on that lock and the threads hand the GIL around several
    times per line. One ``os.write`` of a whole line needs no lock, since the
    kernel keeps each write whole and in order. A stream without a file
    descriptor (a test's buffer) is written as ``StreamHandler`` does.
    ``follow`` is another handler whose stream this one uses, whatever it is
    now (gunicorn reopens its log on USR1).
    """

    def __init__(self, stream: IO[str] | None = None, follow: logging.StreamHandler | None = None) -> None:
        super().__init__(stream)
        self._follow = follow

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return self._follow.stream if self._follow is not None else self._stream

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        self._stream = value

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        if not self.filter(record):
            return False
        self.emit(record)
        return record

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            stream = self.stream
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):
                with self.lock:  # type: ignore[union-attr]
                    stream.write(line)
                    stream.flush()
                return
            stream.flush()  # anything written to the stream the usual way goes first
            data = line.encode(getattr(stream, "encoding", None) or "utf-8", "backslashreplace")
            while data:
                data = data[os.write(fd, data):]
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


_HANDLER_NAME = "wechatbot"


def setup(level: str | int = "info", fmt: str = DEFAULT_LOG_FORMAT, handler: logging.Handler | None = None) -> logging.Handler:
    """Send every logger's lines at ``level`` and above through one handler in ``fmt``.

    ``handler`` defaults to stderr. Calling it again replaces the handler it
    installed before, so a host that reconfigures never doubles its lines.
    """
    if fmt not in FORMATTERS:
        raise ValueError(f"log format must be one of {', '.join(FORMATTERS)}, got {fmt!r}")
    handler = handler or LineHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(FORMATTERS[fmt]())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error, critical)")
    root.setLevel(numeric)
    # No format here shows the multiprocessing name: do not look it up for every record.
    logging.logMultiprocessing = False
    # huey announces every task it runs at INFO: the host logs its own line per job.
    logging.getLogger("huey").setLevel(max(numeric, logging.WARNING))
    return handler


def configured_format(environ: Mapping[str, str] | None = None) -> str:
    """``[wechatbot] log_format`` of the config file named by ``$WECHATBOT_CONFIG`` (or its default).

    Read on its own, before the app is built, so that the app's start-up
    lines already come out in that format. A config that cannot be read
    falls back to text: the app's own start-up then reports what is wrong.
    """
    from .config import ConfigError, env_overrides, read_ini

    environ = os.environ if environ is None else environ
    value = env_overrides(environ).get(("wechatbot", "log_format"))
    if value is None and environ.get("WECHATBOT_CONFIG"):
        try:
            value = read_ini(environ["WECHATBOT_CONFIG"]).get("wechatbot", "log_format", fallback=None)
        except ConfigError:
            value = None
    value = (value or "").strip().lower()
    return value if value in FORMATTERS else DEFAULT_LOG_FORMAT


def setup_gunicorn_worker(worker: Any) -> None:
    """Log a gunicorn worker's lines to gunicorn's error log, at gunicorn's level."""
    error_log = worker.log.error_log
    streams = [h for h in error_log.handlers if isinstance(h, logging.StreamHandler)]
    handler = LineHandler(follow=streams[0]) if streams else None
    setup(error_log.level or logging.INFO, configured_format(), handler)
