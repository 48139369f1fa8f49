"""The WeCom protocol and nothing else: crypto and envelopes, inbound messages and events, replies."""
