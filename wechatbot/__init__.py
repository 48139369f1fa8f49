"""wechatbot: a WeCom (企业微信) bot host.

The names a plugin author needs are importable from here. They are loaded on
first use, so ``from wechatbot import hookimpl`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_app": "ext",
    "WeComBot": "ext",
    "PluginContext": "context",
    "hookimpl": "hookspecs",
    "command": "commands",
    "WechatbotError": "errors",
    **{name: "wecom.messages" for name in (
        "Message", "Event", "TextMessage", "ImageMessage", "VoiceMessage", "VideoMessage",
        "FileMessage", "LocationMessage", "LinkMessage", "parse_message",
    )},
    **{name: "wecom.replies" for name in (
        "Reply", "ReplyError", "TextReply", "MarkdownReply", "ImageReply", "VoiceReply",
        "VideoReply", "NewsReply", "Article", "TemplateCardUpdateReply",
        "StreamReply", "TemplateCardReply", "StreamWithTemplateCardReply", "GroupTextReply", "ChunkedReply",
    )},
    **{name: "wecom.aibot" for name in (
        "AibotCallback", "EnterChatEvent", "FeedbackEvent", "AibotTemplateCardEvent",
    )},
    "GroupRobotCallback": "wecom.group_robot",
    **{name: "wecom.callbacks" for name in ("SuiteEvent", "UnknownCallback")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'wechatbot' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), name)
