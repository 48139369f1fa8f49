"""Where a media file goes on disk, how it gets there, and when it goes away.

Every path is generated: ``<dir>/<app or default>/<YYYYMMDD>/<user>-<msgid><ext>``.
The sender's file name never decides any part of it (WeCom passes it through
``Content-Disposition``, and a sender can choose ``../../etc/passwd``); the
extension comes from an allow-list keyed by content type, else by message type.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import time
import uuid
from pathlib import Path

from wechatbot.api import MediaFile, WeComAPI
from wechatbot.wecom.messages import MediaMessage

#: Content types whose extension is kept; anything else falls back to KIND_EXTENSIONS.
EXTENSIONS = {
    "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/png": ".png", "image/gif": ".gif",
    "image/webp": ".webp", "image/bmp": ".bmp",
    "audio/amr": ".amr", "voice/amr": ".amr", "audio/mpeg": ".mp3", "audio/mp3": ".mp3",
    "audio/wav": ".wav", "audio/x-wav": ".wav",
    "video/mp4": ".mp4", "video/quicktime": ".mov",
    "application/pdf": ".pdf", "application/zip": ".zip", "text/plain": ".txt",
    "application/msword": ".doc", "application/vnd.ms-excel": ".xls", "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
}
#: What WeCom sends for each message type (image: jpg, voice: amr, video: mp4).
KIND_EXTENSIONS = {"image": ".jpg", "voice": ".amr", "video": ".mp4", "file": ".bin"}
DEFAULT_APP_FOLDER = "default"
_DAY = re.compile(r"\d{8}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _part(text: str | None, fallback: str, limit: int = 64) -> str:
    """``text`` as a harmless name part: ASCII letters, digits, ``_`` and ``-`` only."""
    cleaned = _UNSAFE.sub("_", text or "").strip("_")[:limit]
    return cleaned or fallback


def extension_for(kind: str, content_type: str) -> str:
    """The file extension for a download of message type ``kind`` with ``content_type``."""
    return EXTENSIONS.get(content_type.split(";")[0].strip().lower(), KIND_EXTENSIONS.get(kind, ".bin"))


def day_folder(root: Path, app_name: str, when: float | None = None) -> Path:
    """``<root>/<app or default>/<YYYYMMDD>`` for the local date ``when`` (default now)."""
    return root / _part(app_name, DEFAULT_APP_FOLDER) / time.strftime("%Y%m%d", time.localtime(when))


def file_stem(message: MediaMessage) -> str:
    """``<sender>-<msgid>``: one name per message, so a rerun job rewrites the same file."""
    return f"{_part(message.from_user, 'user')}-{_part(message.msg_id, '') or uuid.uuid4().hex}"


def save(api: WeComAPI, message: MediaMessage, folder: Path, max_bytes: int) -> tuple[Path, MediaFile]:
    """Stream ``message``'s media into ``folder``; return the final path and what WeCom sent.

    The download goes to a hidden temporary file first and takes its final
    name only when complete; on any failure (``MediaLimitError`` above
    ``max_bytes`` included) nothing is left in ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            got = api.get_media(message.media_id, fh, max_bytes=max_bytes)
        final = folder / (file_stem(message) + extension_for(message.type, got.content_type))
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return final, got


def sweep(root: Path, days: int, now: float | None = None) -> int:
    """Delete saved files older than ``days`` days; return how many went.

    Only the plugin's own day folders (``<root>/<app>/<YYYYMMDD>``) are looked
    at, never anything else under ``root``, and only those old enough to hold
    such files; a past day's folder left empty is removed (nothing writes to
    it any more: saves go to today's). Races with another process sweeping
    the same folder are harmless.
    """
    cutoff = (time.time() if now is None else now) - days * 86400
    newest_old_day = time.strftime("%Y%m%d", time.localtime(cutoff))
    removed = 0
    for app_folder in _subfolders(root):
        for day in _subfolders(app_folder):
            if not _DAY.fullmatch(day.name) or day.name > newest_old_day:
                continue  # every file in it is newer than the cutoff
            removed += _sweep_day(day, cutoff)
    return removed


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _sweep_day(day: Path, cutoff: float) -> int:
    removed = 0
    try:
        entries = list(os.scandir(day))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    try:
        day.rmdir()  # a past day's folder, removed once empty
    except OSError:
        pass
    return removed
