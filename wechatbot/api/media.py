"""Media: ``media/get`` streamed to a file (resumed, ranged, bounded) and ``media/upload`` within WeCom's limits."""
from __future__ import annotations

import errno
import io
import json
import logging
import mimetypes
import os
import re
import tempfile
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests

from .calls import APIClient, Attempts, errcode_of
from .hints import RANGE_ERRCODE, MediaLimitError, WeComAPIError, WeComError, WeComNetworkError

__all__ = [
    "UPLOAD_LIMITS",
    "MediaFile",
    "MediaMixin",
    "filename_from_disposition",
    "safe_filename",
]

log = logging.getLogger(__name__)

MIN_UPLOAD_BYTES = 6  # WeCom wants every uploaded file larger than 5 bytes
# media/upload type -> (largest size in bytes, accepted file name extensions or None for any)
UPLOAD_LIMITS: dict[str, tuple[int, frozenset[str] | None]] = {
    "image": (10 * 1024 * 1024, frozenset({".jpg", ".jpeg", ".png"})),
    "voice": (2 * 1024 * 1024, frozenset({".amr"})),
    "video": (10 * 1024 * 1024, frozenset({".mp4"})),
    "file": (20 * 1024 * 1024, None),
}
DOWNLOAD_CHUNK = 64 * 1024
RANGE_CHUNK = 20 * 1024 * 1024  # WeCom's advice for ranged downloads of large files
MAX_FILENAME_BYTES = 200


@dataclass(frozen=True)
class MediaFile:
    """A downloaded media file.

    ``path`` is where it was written (None when written to a file object),
    ``filename`` the sender's file name made safe, ``size`` its length in
    bytes and ``content_type`` what WeCom said it is.
    """

    path: Path | None
    filename: str
    size: int
    content_type: str


def _param_value(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def filename_from_disposition(header: str | None) -> str | None:
    """The file name in a ``Content-Disposition`` header, not yet made safe.

    ``filename*=UTF-8''…`` (RFC 6266/5987) wins over ``filename=``; a plain
    ``filename`` that arrived as raw UTF-8 bytes is decoded as UTF-8.
    """
    if not header:
        return None
    params: dict[str, str] = {}
    for name, value in re.findall(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', header):
        params.setdefault(name.lower(), _param_value(value))
    extended = params.get("filename*")
    if extended:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        if encoded:
            try:
                return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="replace")
            except LookupError:
                return urllib.parse.unquote(encoded, errors="replace")
    plain = params.get("filename")
    if plain is None:
        return None
    try:  # http.client decodes header bytes as Latin-1
        return plain.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return plain


def _truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def safe_filename(name: str | None, fallback: str = "media", max_bytes: int = MAX_FILENAME_BYTES) -> str:
    """``name`` reduced to a harmless file name: never a path, never hidden, bounded.

    Keeps only the last path component (``/`` and ``\\`` both separate),
    drops control and invisible formatting characters, replaces characters
    Windows forbids, strips leading and trailing dots and spaces, and cuts the
    name to ``max_bytes`` of UTF-8 keeping its extension. An empty result,
    ``.`` or ``..`` gives ``fallback`` (itself made safe).
    """
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(
        "_" if ch in '<>:"|?*' else ch
        for ch in text
        if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
    )
    text = text.strip(" .")
    if not text:
        return "media" if name == fallback else safe_filename(fallback, "media", max_bytes)
    if len(text.encode("utf-8")) > max_bytes:
        stem, ext = os.path.splitext(text)
        if len(ext.encode("utf-8")) > 16:
            stem, ext = text, ""
        text = _truncate_utf8(stem, max_bytes - len(ext.encode("utf-8"))).rstrip(" .") + ext
    return text


def _seekable(fh: Any) -> bool:
    seekable = getattr(fh, "seekable", None)
    return bool(seekable and seekable())


def _is_json_answer(resp: requests.Response) -> bool:
    """Whether media/get answered an error as JSON instead of sending the file."""
    content_type = resp.headers.get("Content-Type", "").lower()
    if "json" in content_type:
        return True
    if "Content-Disposition" in resp.headers:
        return False
    return not content_type or content_type.startswith(("text/plain", "text/html"))


def _read_limited(resp: requests.Response, limit: int = 1024 * 1024) -> bytes:
    data = bytearray()
    for chunk in resp.iter_content(DOWNLOAD_CHUNK):
        data += chunk
        if len(data) > limit:
            break
    return bytes(data)


def _content_range(header: str | None) -> tuple[int, int | None] | None:
    """(first byte, total size or None) from ``bytes a-b/total``."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", header or "")
    if not match:
        return None
    return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))


def _place_in_directory(tmp: str, directory: Path, filename: str) -> Path:
    """Move the finished download into ``directory`` without replacing an existing file."""
    stem, ext = os.path.splitext(filename)
    for n in range(1000):
        candidate = directory / (filename if n == 0 else f"{stem}-{n}{ext}")
        try:
            os.link(tmp, candidate)  # fails if the name is taken, atomically
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if candidate.exists():
                continue
            os.replace(tmp, candidate)  # a file system without hard links
            return candidate
        os.unlink(tmp)
        return candidate
    raise WeComError(f"too many files named like {filename!r} in {directory}")


class MediaMixin(APIClient):
    """The media APIs of :class:`~wechatbot.api.WeComAPI`."""

    #: Bytes asked for per request once WeCom says a file is too large for one.
    range_chunk = RANGE_CHUNK

    def get_media(self, media_id: str, dest: str | os.PathLike[str] | BinaryIO,
                  max_bytes: int | None = None) -> MediaFile:
        """Download media ``media_id`` to ``dest``, streamed, never whole in memory.

        ``dest`` is a file path (replaced when the download is complete), a
        directory (the file gets the sender's name from ``Content-Disposition``
        made safe, never replacing an existing file) or a binary file object.
        A download that breaks resumes with ``Range``; WeCom's "too large"
        answer switches to ranged fetching. A JSON error instead of the file
        raises :class:`WeComAPIError`; more than ``max_bytes`` raises
        :class:`MediaLimitError`. On failure no partial file is left behind.
        """
        if hasattr(dest, "write"):
            fh = dest  # type: ignore[assignment]
            start = fh.tell() if _seekable(fh) else None  # type: ignore[union-attr,arg-type]
            try:
                return self._download(media_id, fh, max_bytes)  # type: ignore[arg-type]
            except MediaLimitError:
                if start is not None:
                    fh.seek(start)  # type: ignore[union-attr]
                    fh.truncate()  # type: ignore[union-attr]
                raise
        target = Path(os.fspath(dest))  # type: ignore[arg-type]
        into_directory = target.is_dir()
        directory = target if into_directory else target.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".wechatbot-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                got = self._download(media_id, fh, max_bytes)
            if into_directory:
                final = _place_in_directory(tmp, directory, got.filename)
            else:
                os.replace(tmp, target)
                final = target
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return MediaFile(final, got.filename, got.size, got.content_type)

    def _open_media(self, media_id: str, headers: dict[str, str], attempts: Attempts) -> requests.Response:
        """A streaming media/get response that carries the file (errors raised)."""
        while True:
            token = self.access_token()
            resp = self._http("GET", "media/get", params={"access_token": token, "media_id": media_id},
                              headers=headers, stream=True)
            if resp.status_code in (200, 206) and not _is_json_answer(resp):
                return resp
            try:
                if resp.status_code not in (200, 206):
                    raise WeComNetworkError(f"media/get: WeCom answered HTTP {resp.status_code}")
                try:
                    answer = json.loads(_read_limited(resp))
                except (ValueError, requests.RequestException):
                    raise WeComNetworkError("media/get: WeCom sent neither a file nor a JSON answer") from None
            finally:
                resp.close()
            errcode = errcode_of(answer) if isinstance(answer, dict) else -1
            if errcode == 0:
                raise WeComNetworkError("media/get: WeCom answered JSON without an error instead of the file")
            self._recover(errcode, str(answer.get("errmsg", "")), "media/get", token, attempts)

    def _download(self, media_id: str, fh: BinaryIO, max_bytes: int | None) -> MediaFile:
        """Write the media to ``fh``; the returned MediaFile has no path."""
        start = fh.tell() if _seekable(fh) else None
        attempts = Attempts()
        written = 0
        total: int | None = None
        ranged = False
        broken = 0
        filename = content_type = None
        while True:
            before = written
            headers = {"Accept-Encoding": "identity"}  # offsets count bytes on the wire
            if ranged:
                headers["Range"] = f"bytes={written}-{written + self.range_chunk - 1}"
            elif written:
                headers["Range"] = f"bytes={written}-"
            try:
                resp = self._open_media(media_id, headers, attempts)
            except WeComAPIError as exc:
                if exc.errcode != RANGE_ERRCODE or ranged:
                    raise
                log.info("media/get %s: too large for one request; fetching it in ranges", media_id)
                ranged = True
                continue
            try:
                if resp.status_code == 206:
                    span = _content_range(resp.headers.get("Content-Range"))
                    if span is None or span[0] != written:
                        raise WeComNetworkError(f"media/get: the answer to a Range request starts elsewhere "
                                                f"({resp.headers.get('Content-Range')!r}, wanted byte {written})")
                    total = span[1] if span[1] is not None else total
                else:
                    if written:  # the server ignored Range: start over
                        if start is None:
                            raise WeComNetworkError("media/get: cannot resume (no Range support) into an unseekable file")
                        fh.seek(start)
                        fh.truncate()
                        written = 0
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                if filename is None:
                    content_type = resp.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()
                    ext = mimetypes.guess_extension(content_type) or ""
                    filename = safe_filename(filename_from_disposition(resp.headers.get("Content-Disposition")),
                                             fallback=safe_filename(media_id) + ext)
                if max_bytes is not None and total is not None and total > max_bytes:
                    raise MediaLimitError(f"media {media_id} is {total} bytes, more than max_bytes={max_bytes}")
                try:
                    for chunk in resp.iter_content(DOWNLOAD_CHUNK):
                        if max_bytes is not None and written + len(chunk) > max_bytes:
                            raise MediaLimitError(f"media {media_id} is larger than max_bytes={max_bytes}")
                        fh.write(chunk)
                        written += len(chunk)
                except requests.RequestException as exc:
                    reason = self._redact(str(exc))
                else:
                    reason = None
            finally:
                resp.close()
            if reason is None and (total is None or written >= total):
                break
            if reason is None and ranged and resp.status_code == 206 and written > before:
                continue  # the next range
            broken += 1
            if broken > self.resume_attempts:
                raise WeComNetworkError(f"media/get {media_id}: download kept breaking "
                                        f"({written} of {total or '?'} bytes after {broken} attempts): {reason or 'short answer'}")
            log.warning("media/get %s: download broke after %d of %s bytes; resuming with Range",
                        media_id, written, total or "?")
        return MediaFile(None, filename or safe_filename(media_id), written, content_type or "application/octet-stream")

    def upload_media(self, media_type: str, file: str | os.PathLike[str] | BinaryIO,
                     filename: str | None = None) -> dict:
        """``media/upload``: upload a temporary media file; returns WeCom's answer (``media_id``).

        ``file`` is a path or a binary file object; ``filename`` (default: the
        file's own name) is what recipients see. WeCom's documented limits are
        checked first, with a :class:`MediaLimitError` naming the broken one:
        more than 5 bytes; image ≤ 10 MB jpg/png; voice ≤ 2 MB amr; video
        ≤ 10 MB mp4; file ≤ 20 MB.
        """
        if media_type not in UPLOAD_LIMITS:
            raise MediaLimitError(f"media type must be one of {', '.join(UPLOAD_LIMITS)}, not {media_type!r}")
        limit, extensions = UPLOAD_LIMITS[media_type]
        if hasattr(file, "read"):
            return self._upload_stream(media_type, file, filename, limit, extensions)  # type: ignore[arg-type]
        path = Path(os.fspath(file))  # type: ignore[arg-type]
        self._check_upload(media_type, filename or path.name, path.stat().st_size, limit, extensions)
        with open(path, "rb") as fh:
            return self._upload_stream(media_type, fh, filename or path.name, limit, extensions)

    def _upload_stream(self, media_type: str, fh: BinaryIO, filename: str | None, limit: int,
                       extensions: frozenset[str] | None) -> dict:
        name = filename or os.path.basename(str(getattr(fh, "name", "") or "")) or "media"
        if _seekable(fh):
            start = fh.tell()
            size = fh.seek(0, io.SEEK_END) - start
            fh.seek(start)
        else:  # read at most one byte more than allowed, to know the size
            data = fh.read(limit + 1)
            fh, start, size = io.BytesIO(data), 0, len(data)
        self._check_upload(media_type, name, size, limit, extensions)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"

        def files() -> dict:
            fh.seek(start)
            return {"media": (name, fh, content_type)}

        return self._call("POST", "media/upload", params={"type": media_type}, files=files)

    @staticmethod
    def _check_upload(media_type: str, name: str, size: int, limit: int, extensions: frozenset[str] | None) -> None:
        if size < MIN_UPLOAD_BYTES:
            raise MediaLimitError(f"{name!r} is {size} bytes; WeCom only accepts files larger than 5 bytes")
        if size > limit:
            raise MediaLimitError(f"{name!r} is {size} bytes; {media_type} uploads may be at most "
                                  f"{limit // (1024 * 1024)} MB ({limit} bytes)")
        ext = os.path.splitext(name)[1].lower()
        if extensions is not None and ext not in extensions:
            accepted = ", ".join(sorted(extensions))
            raise MediaLimitError(f"{name!r} cannot be uploaded as {media_type}: only {accepted} files are "
                                  f"accepted (judged by the file name)")
