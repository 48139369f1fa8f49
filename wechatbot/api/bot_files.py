"""Downloading an AI bot's encrypted file (valid 5 minutes) into a decrypted local file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import requests

from ..wecom.bot_files import FileDecryptor
from .bot_push import shown_url
from .hints import WeComNetworkError

__all__ = ["download_bot_file"]

_CHUNK = 256 * 1024


def download_bot_file(url: str, key: str | bytes, dest: str | os.PathLike[str] | None = None, *,
                      timeout: float = 30.0, session: requests.Session | None = None) -> Path:
    """Fetch ``url`` and write the decrypted file to ``dest`` (default: a new temporary file).

    The file streams through in chunks; a broken download or a wrong key
    leaves no partial file behind. Returns the path written.
    """
    decryptor = FileDecryptor(key)
    made = dest is None
    if dest is None:
        fd, name = tempfile.mkstemp(prefix="wechatbot-bot-file-")
        os.close(fd)
        dest = name
    target = Path(dest)
    partial = target.with_name(target.name + ".part")
    try:
        with (session or requests).get(url, stream=True, timeout=timeout) as resp:
            if resp.status_code != 200:
                raise WeComNetworkError(f"GET {shown_url(url)}: HTTP {resp.status_code} (the URL is valid for 5 minutes)")
            with open(partial, "wb") as out:
                for chunk in resp.iter_content(_CHUNK):
                    out.write(decryptor.update(chunk))
                out.write(decryptor.finish())
        os.replace(partial, target)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if made:
            target.unlink(missing_ok=True)
        if isinstance(exc, requests.RequestException):
            raise WeComNetworkError(f"GET {shown_url(url)} failed: {type(exc).__name__}") from None
        raise
    return target
