"""Benchmark inputs: a throw-away config and a pool of distinct, signed, encrypted callbacks.

Every callback is a text message with its own MsgId and content, encrypted and
signed by :class:`wechatbot.simulator.SimulatedWeCom` exactly as WeCom would,
so each one the host receives goes through verify, decrypt, dedup (a fresh
insert), dispatch to echo and encrypt. ``replay_window = 0`` keeps the
pre-signed timestamps valid however long the run takes.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from wechatbot.wecom.crypto import generate_aes_key, generate_token
from wechatbot.testing.simulator import SimulatedWeCom, message_xml

CORP_ID = "ww_bench_corp"
PATH = "/callback"


@dataclass(frozen=True)
class Credentials:
    """The Token and EncodingAESKey of the benchmarked app."""

    token: str
    encoding_aes_key: str

    @classmethod
    def generate(cls) -> "Credentials":
        return cls(generate_token(), generate_aes_key())


def write_config(path: Path, creds: Credentials, db_path: Path) -> Path:
    """Write the INI config the host under test reads (SQLite store, echo only)."""
    path.write_text(
        "[wecom]\n"
        f"corp_id = {CORP_ID}\n"
        f"token = {creds.token}\n"
        f"encoding_aes_key = {creds.encoding_aes_key}\n"
        "agent_id = 1000002\n\n"
        "[wechatbot]\n"
        f"store = sqlite:///{db_path}\n"
        "plugins = echo\n"
        "replay_window = 0\n",
        encoding="utf-8",
    )
    return path


def simulator(creds: Credentials, transport) -> SimulatedWeCom:
    """A simulated WeCom for the benchmarked app over ``transport``."""
    return SimulatedWeCom(transport, creds.token, creds.encoding_aes_key, CORP_ID, PATH)


def build_requests(creds: Credentials, count: int) -> list[tuple[str, bytes]]:
    """``count`` distinct callbacks as ``(path_and_query, body)``, none sent yet.

    MsgIds start at a random base so two pools never share one.
    """
    captured: list[tuple[str, bytes]] = []

    def record(method: str, path: str, body: bytes | None) -> tuple[int, str]:
        captured.append((path, body or b""))
        return 200, ""  # an empty answer: the simulator has nothing to decrypt

    wecom = simulator(creds, record)
    base = secrets.randbelow(2**62)
    for i in range(count):
        wecom.post_xml(message_xml("text", to_user=CORP_ID, msg_id=str(base + i), content=f"bench message {i}"))
    return captured


def pool_lines(requests: list[tuple[str, bytes]]) -> bytes:
    """Requests as lines of a pool file for ``requests.lua``: ``path<TAB>body``.

    Neither part can hold a tab or newline: the query is URL-encoded and the
    envelope is single-line XML around base64.
    """
    lines = []
    for target, body in requests:
        if b"\t" in body or b"\n" in body:
            raise ValueError("a callback body holds a tab or newline and cannot go into a pool file")
        lines.append(target.encode("ascii") + b"\t" + body + b"\n")
    return b"".join(lines)
