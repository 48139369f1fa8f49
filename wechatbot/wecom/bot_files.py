"""The AI bot's encrypted files: images, files and videos users send it (D:100719).

The ``url`` of an AI bot image, file or video message serves the file
encrypted with AES-256-CBC: the key is the bot's EncodingAESKey (base64 of the
32-byte key), the IV the key's first 16 bytes, and the data padded with
PKCS#7 to a multiple of 32 bytes. The long connection sends a per-message
``aeskey`` instead (any base64 key of 32 bytes works here too).

:class:`FileDecryptor` decrypts chunk by chunk, so a file of 100 MB never has
to be in memory at once.
"""
from __future__ import annotations

import base64
import binascii
from typing import Iterable, Iterator

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .crypto import DecryptError, _decode_aes_key

__all__ = ["FileDecryptor", "bot_file_key", "decrypt_bot_file", "encrypt_bot_file"]

# WeCom pads to a multiple of 32 bytes (its PKCS#7 block), not AES's 16.
_PAD_BLOCK = 32


def bot_file_key(key: str | bytes) -> bytes:
    """The 32-byte AES key: from a bot's 43-character EncodingAESKey, a base64
    ``aeskey`` of the long connection, or the raw 32 bytes."""
    if isinstance(key, bytes):
        raw = key
    elif len(key) == 43:
        raw = _decode_aes_key(key)
    else:
        try:
            raw = base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise DecryptError("the file's aeskey is not base64") from None
    if len(raw) != 32:
        raise DecryptError(f"an AI bot file key must be 32 bytes, not {len(raw)}")
    return raw


class FileDecryptor:
    """Decrypts one file fed in chunks of any size; :meth:`finish` checks and strips the padding."""

    def __init__(self, key: str | bytes) -> None:
        raw = bot_file_key(key)
        self._cipher = Cipher(algorithms.AES(raw), modes.CBC(raw[:16])).decryptor()
        self._held = b""
        self.size = 0

    def update(self, chunk: bytes) -> bytes:
        """The plaintext that is certain so far (the last 32 bytes wait for the padding check)."""
        self.size += len(chunk)
        data = self._held + self._cipher.update(chunk)
        self._held, out = data[-_PAD_BLOCK:], data[:-_PAD_BLOCK]
        return out

    def finish(self) -> bytes:
        """The last plaintext bytes; raises DecryptError for a truncated file or a wrong key."""
        tail = self._held + self._cipher.finalize() if self.size % 16 == 0 else None
        if tail is None or not tail:
            raise DecryptError(f"the encrypted file is {self.size} bytes, not a whole number of AES blocks")
        pad = tail[-1]
        if not 1 <= pad <= _PAD_BLOCK or tail[-pad:] != bytes([pad]) * pad:
            raise DecryptError("the file did not decrypt: wrong key, or not an AI bot file")
        return tail[:-pad]


def decrypt_bot_file(chunks: Iterable[bytes], key: str | bytes) -> Iterator[bytes]:
    """Decrypt an AI bot file given as chunks; yields the plaintext in chunks."""
    decryptor = FileDecryptor(key)
    for chunk in chunks:
        out = decryptor.update(chunk)
        if out:
            yield out
    yield decryptor.finish()


def encrypt_bot_file(data: bytes, key: str | bytes) -> bytes:
    """Encrypt ``data`` as WeCom serves AI bot files (for the fake API and tests)."""
    raw = bot_file_key(key)
    pad = _PAD_BLOCK - len(data) % _PAD_BLOCK
    encryptor = Cipher(algorithms.AES(raw), modes.CBC(raw[:16])).encryptor()
    return encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()
