"""wechatbot: a WeCom (企业微信) bot host.

The names a plugin author needs are importable from here.
"""
from __future__ import annotations

from .app import create_app
from .context import PluginContext
from .hookspecs import hookimpl
from .messages import (
    Event,
    FileMessage,
    ImageMessage,
    LinkMessage,
    LocationMessage,
    Message,
    TextMessage,
    VideoMessage,
    VoiceMessage,
)
from .replies import (
    Article,
    ImageReply,
    MarkdownReply,
    NewsReply,
    Reply,
    ReplyError,
    TextReply,
    VideoReply,
    VoiceReply,
)

__version__ = "0.1.0"

__all__ = [
    "Article", "Event", "FileMessage", "ImageMessage", "ImageReply", "LinkMessage", "LocationMessage",
    "MarkdownReply", "Message", "NewsReply", "PluginContext", "Reply", "ReplyError", "TextMessage",
    "TextReply", "VideoMessage", "VideoReply", "VoiceMessage", "VoiceReply", "create_app", "hookimpl",
]
