"""``[plugin:media]`` read into typed settings, every bad value named by its key.

Parsing touches no disk, so it is cheap enough to repeat in every call (a
deferred job may run in another process than the one that started up);
:func:`check_folder` is the start-up check that the folder can be written.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # what WeCom itself accepts for a file upload

#: What a user reads, by message type.
KINDS = {"image": "图片", "voice": "语音", "video": "视频", "file": "文件"}

#: Template key -> (default text, placeholders it may use). Empty text: say nothing.
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "receiving": ("正在接收{kind}…", ("kind",)),
    "saved": ("已保存{kind}（{size} 字节）", ("kind", "size", "name", "filename")),
    "too_large": ("{kind}超过 {max_bytes} 字节，未保存", ("kind", "max_bytes")),
    "failed": ("{kind}未能保存，请稍后再发一次", ("kind",)),
}
_SAMPLES = {"kind": "图片", "size": 1, "name": "u-1.jpg", "filename": "a.jpg", "max_bytes": 1}
_AFTER = re.compile(r"keep|delete|delete_after_days\s*:\s*(\d+)", re.IGNORECASE)


class MediaConfigError(ValueError):
    """A ``[plugin:media]`` value is wrong; the message names the key and what is expected."""


@dataclass(frozen=True)
class Settings:
    """The media plugin's settings for one host.

    ``after`` is ``"keep"`` or ``"delete"``; ``delete_after_days`` is set
    (and ``after`` is ``"keep"``) for ``after = delete_after_days:N``.
    """

    folder: Path
    max_bytes: int
    after: str
    delete_after_days: int | None
    templates: dict[str, str]

    def text(self, key: str, /, **values: object) -> str | None:
        """The user-facing text ``key`` (``saved`` …) filled in; ``None`` when configured empty."""
        template = self.templates[key]
        return template.format(**values) if template else None


def configured(config: Mapping[str, str]) -> bool:
    """Whether the host has a ``[plugin:media]`` section at all (else the plugin stays idle)."""
    return bool(config)


def parse(config: Mapping[str, str], base: Path | None = None) -> Settings:
    """Read ``[plugin:media]``; raise :class:`MediaConfigError` naming a bad key.

    A relative ``dir`` is taken from ``base`` (default: the current directory).
    """
    raw_dir = config.get("dir", "").strip()
    if not raw_dir:
        raise MediaConfigError("[plugin:media] dir is required: the folder media is saved in (e.g. dir = /var/lib/wechatbot/media)")
    folder = Path(os.path.expanduser(raw_dir))
    if not folder.is_absolute():
        folder = (base or Path.cwd()) / folder
    return Settings(
        folder=folder,
        max_bytes=_max_bytes(config.get("max_bytes", "").strip()),
        **_after(config.get("after", "keep").strip()),
        templates={key: _template(key, config.get(key, default), names) for key, (default, names) in TEMPLATES.items()},
    )


def _max_bytes(raw: str) -> int:
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise MediaConfigError(f"[plugin:media] max_bytes = {raw!r} is not a positive whole number of bytes (e.g. max_bytes = {DEFAULT_MAX_BYTES})")
    return value


def _after(raw: str) -> dict:
    match = _AFTER.fullmatch(raw or "keep")
    if not match or (match.group(1) is not None and int(match.group(1)) < 1):
        raise MediaConfigError(f"[plugin:media] after = {raw!r}: use keep, delete or delete_after_days:N with N at least 1")
    if match.group(1) is not None:
        return {"after": "keep", "delete_after_days": int(match.group(1))}
    return {"after": match.group(0).lower(), "delete_after_days": None}


def _template(key: str, text: str, names: tuple[str, ...]) -> str:
    try:
        text.format(**{name: _SAMPLES[name] for name in names})
    except KeyError as exc:
        raise MediaConfigError(f"[plugin:media] {key} uses {{{exc.args[0]}}}; it may use {', '.join('{' + n + '}' for n in names)}") from None
    except (ValueError, IndexError, AttributeError) as exc:
        raise MediaConfigError(f"[plugin:media] {key} = {text!r} is not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    return text


def check_folder(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".wechatbot-media-check-"):
            pass
    except OSError as exc:
        raise MediaConfigError(f"[plugin:media] dir = {str(folder)!r} cannot be created or written: {exc.strerror or exc}") from None
