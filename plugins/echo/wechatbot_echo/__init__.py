"""Answer a text message with the same text: the fallback that tells a user the bot is alive.

Marked ``trylast`` so every other plugin gets a chance first, wherever ``echo``
sits in ``[wechatbot] plugins``. ``[plugin:echo] prefix`` is put before the text.
"""
from __future__ import annotations

from wechatbot import PluginContext, TextMessage, hookimpl

# Echoing never blocks: the host may call it on the request thread.
wechatbot_inline = True


@hookimpl(trylast=True)
def handle_message(message: object, context: PluginContext) -> str | None:
    """Echo text messages; leave everything else to other plugins."""
    if isinstance(message, TextMessage):
        return context.config.get("prefix", "") + message.content
    return None
