"""Channels: one per endpoint ``type``, found by :func:`channel_for`.

``base.Channel`` is the interface; each other module is one channel. A new
channel is a subclass of :class:`Channel` in its own module, listed in
:data:`CHANNELS`.
"""
from __future__ import annotations

from ..config import ConfigError, EndpointConfig
from .aibot import AibotChannel
from .aibot_ws import AibotWebSocketChannel
from .app import AppChannel
from .base import Channel
from .group_robot import GroupRobotChannel

#: Every channel class by the ``[wecom] type`` it serves.
CHANNELS: dict[str, type[Channel]] = {cls.type: cls for cls in (AppChannel, AibotChannel, GroupRobotChannel)}

__all__ = ["CHANNELS", "AibotChannel", "AibotWebSocketChannel", "AppChannel", "Channel", "GroupRobotChannel", "channel_for"]


def channel_for(config: EndpointConfig) -> Channel:
    """The channel serving ``config``'s ``type``, or a ConfigError naming the key."""
    if config.is_websocket:  # an AI bot on its long connection
        return AibotWebSocketChannel(config)
    try:
        cls = CHANNELS[config.type]
    except KeyError:
        known = ", ".join(sorted(CHANNELS))
        raise ConfigError(f"[{config.section}] type = {config.type!r} is not a known endpoint type (known: {known})") from None
    return cls(config)
