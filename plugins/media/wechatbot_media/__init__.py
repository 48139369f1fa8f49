"""Save the images, voice messages, videos and files users send to the app.

A media message is answered at once with a short "receiving" text while the
download runs as a deferred job (``context.defer``): a large file takes longer
than WeCom waits for an answer. The job streams the file into ``dir`` under a
generated name (see ``storage``) and offers it to every plugin's
``media_saved`` hook (if any answers ``"delete"`` the file is removed); the
host then pushes the "saved" text to the sender through ``message/send``.

``[plugin:media]`` (without the section the plugin stays idle)::

    # Required; created if missing. Files go to <dir>/<app or default>/<YYYYMMDD>/.
    dir = /var/lib/wechatbot/media
    # Larger downloads are dropped and the user is told (default 20 MB).
    max_bytes = 20971520
    # keep (default) | delete (once every plugin's media_saved has seen it)
    # | delete_after_days:N (swept at start-up and after each save)
    after = delete_after_days:30
    # What the user reads; an empty value says nothing.
    receiving = 正在接收{kind}…
    # Also {name} (the saved file's name) and {filename} (the sender's, made safe).
    saved = 已保存{kind}（{size} 字节）
    too_large = {kind}超过 {max_bytes} 字节，未保存
    failed = {kind}未能保存，请稍后再发一次
"""
from __future__ import annotations

from pathlib import Path

from wechatbot import PluginContext, hookimpl
from wechatbot.api import MediaLimitError, WeComError
from wechatbot.wecom.messages import MediaMessage, Message

from . import storage
from .settings import KINDS, Settings, check_folder, configured, parse

# Matching rules (or queueing a download) never blocks: run on the request thread.
wechatbot_inline = True

__all__ = ["fetch", "handle_message", "media_saved", "startup"]


def _settings(context: PluginContext) -> Settings | None:
    return parse(context.config) if configured(context.config) else None


@hookimpl
def startup(context: PluginContext) -> None:
    """Check ``[plugin:media]``, the folder and the app's API access; sweep old files."""
    if not configured(context.config):
        context.log.warning("no [plugin:media] section: media messages are not saved")
        return
    settings = parse(context.config)
    check_folder(settings.folder)
    context.api  # noqa: B018 - raises NoAPIError, naming the app's section, when it has no secret
    if settings.delete_after_days:
        removed = storage.sweep(settings.folder, settings.delete_after_days)
        if removed:
            context.log.info("removed %d saved files older than %d days", removed, settings.delete_after_days)
    context.log.info("saving media into %s (at most %d bytes each)", settings.folder, settings.max_bytes)


@hookimpl
def handle_message(message: Message, context: PluginContext) -> str | None:
    """Start saving an image, voice, video or file; answer with the "receiving" text."""
    if not isinstance(message, MediaMessage) or not message.media_id:
        return None
    settings = _settings(context)
    if settings is None:
        return None
    context.defer(fetch, message)
    return settings.text("receiving", kind=_kind(message))


def fetch(message: MediaMessage, context: PluginContext) -> str | None:
    """Download ``message``'s media (a deferred job); return the text pushed to the sender."""
    settings = _settings(context)
    if settings is None:
        return None
    kind = _kind(message)
    folder = storage.day_folder(settings.folder, context.app_name)
    try:
        path, got = storage.save(context.api, message, folder, settings.max_bytes)
    except MediaLimitError:
        context.log.info("%s from %s is over max_bytes=%d: not saved", message.type, message.from_user, settings.max_bytes)
        return settings.text("too_large", kind=kind, max_bytes=settings.max_bytes)
    except (WeComError, OSError):
        context.log.exception("could not save %s %s from %s", message.type, message.media_id, message.from_user)
        return settings.text("failed", kind=kind)
    context.log.info("saved %s from %s: %s (%d bytes)", message.type, message.from_user, path, got.size)
    text = settings.text("saved", kind=kind, size=got.size, name=path.name, filename=got.filename)
    _hand_on(path, message, context)
    return text


def _hand_on(path: Path, message: MediaMessage, context: PluginContext) -> None:
    """Offer the saved file to every plugin's ``media_saved``; remove it if one says "delete"."""
    results = context.notify("media_saved", path=str(path), message=message)
    deleting = [name for name, result in results if result == "delete"]
    if deleting:
        path.unlink(missing_ok=True)
        context.log.info("removed %s: %s asked for it", path, ", ".join(deleting))


@hookimpl
def media_saved(path: str, context: PluginContext) -> str | None:
    """This plugin's own say on a saved file: the ``after`` policy."""
    settings = _settings(context)
    if settings is None or not _inside(Path(path), settings.folder):
        return None
    if settings.delete_after_days:
        storage.sweep(settings.folder, settings.delete_after_days)
    return "delete" if settings.after == "delete" else None


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _kind(message: Message) -> str:
    return KINDS.get(message.type, message.type)
