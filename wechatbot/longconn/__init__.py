"""The AI bot's long connection (长连接): one outgoing WebSocket per bot, no public URL needed.

- :mod:`.protocol`: the frames (D:101463);
- :mod:`.sendqueue`: one frame in flight per req_id, streams merged, the per-conversation budget;
- :mod:`.connection`: one connection, subscribe, heartbeat, receipts;
- :mod:`.lease` and :mod:`.holder`: exactly one connection per bot across processes and hosts.
"""
