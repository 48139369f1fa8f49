"""WeCom's message crypto as the official sample (``WXBizMsgCrypt``) does it,
written independently of :mod:`wechatbot.wecom.crypto` on pycryptodome.

Tests use it to check that what the host sends opens the way WeCom opens it,
and the other way round. It needs ``pycryptodome`` (the ``test`` extra).
"""
from __future__ import annotations

import base64
import hashlib
import struct

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad

__all__ = ["ref_decrypt", "ref_encrypt", "ref_frame", "ref_key", "ref_open", "ref_seal", "ref_signature"]


def ref_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key inside an EncodingAESKey."""
    return base64.b64decode(encoding_aes_key + "=")


def ref_seal(encoding_aes_key: str, padded: bytes) -> str:
    """AES-256-CBC over already padded bytes, IV = key[:16], base64 out."""
    key = ref_key(encoding_aes_key)
    return base64.b64encode(AES.new(key, AES.MODE_CBC, iv=key[:16]).encrypt(padded)).decode()


def ref_open(encoding_aes_key: str, ciphertext: str) -> bytes:
    """The padded plaintext bytes of a base64 ciphertext."""
    key = ref_key(encoding_aes_key)
    return AES.new(key, AES.MODE_CBC, iv=key[:16]).decrypt(base64.b64decode(ciphertext))


def ref_frame(msg: bytes, receive_id: bytes, prefix: bytes = b"0123456789abcdef") -> bytes:
    """random(16) + big-endian length(4) + message + receive id, before padding."""
    return prefix + struct.pack(">I", len(msg)) + msg + receive_id


def ref_encrypt(encoding_aes_key: str, msg: str, receive_id: str, prefix: bytes = b"0123456789abcdef") -> str:
    """Encrypt ``msg`` for ``receive_id`` as WeCom does (PKCS#7 padding to 32 bytes)."""
    framed = ref_frame(msg.encode(), receive_id.encode(), prefix)
    return ref_seal(encoding_aes_key, pad(framed, 32))


def ref_decrypt(encoding_aes_key: str, ciphertext: str) -> tuple[bytes, str, str]:
    """``(random prefix, message, receive id)`` of a ciphertext."""
    plain = unpad(ref_open(encoding_aes_key, ciphertext), 32)
    (size,) = struct.unpack(">I", plain[16:20])
    return plain[:16], plain[20:20 + size].decode(), plain[20 + size:].decode()


def ref_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """msg_signature: SHA-1 over the four values sorted and joined."""
    return hashlib.sha1("".join(sorted((token, timestamp, nonce, encrypted))).encode()).hexdigest()
