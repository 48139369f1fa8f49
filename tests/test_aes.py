"""AES-256-CBC on the process's libcrypto and on cryptography: the same bytes, checked against pycryptodome."""
from __future__ import annotations

import os

import pytest
from Crypto.Cipher import AES

from wechatbot.wecom import aes

BACKENDS = sorted(aes._BACKENDS)


def test_linux_uses_the_libcrypto_python_loaded() -> None:
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("no /proc here: cryptography is used")
    assert aes.BACKEND == "libcrypto"


@pytest.mark.parametrize("backend", BACKENDS)
def test_successive_calls_chain_like_one_cbc_stream(backend: str) -> None:
    key, iv = os.urandom(32), os.urandom(16)
    messages = [os.urandom(32 * n) for n in (1, 3, 10, 2)]
    encrypt = aes.open_cbc(key, iv, encrypt=True, backend=backend)
    decrypt = aes.open_cbc(key, iv, encrypt=False, backend=backend)
    reference = AES.new(key, AES.MODE_CBC, iv)
    for message in messages:
        sealed = encrypt(message)
        assert sealed == reference.encrypt(message)
        assert decrypt(sealed) == message


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fresh_context_starts_from_the_iv(backend: str) -> None:
    key, iv, data = os.urandom(32), os.urandom(16), os.urandom(64)
    assert aes.open_cbc(key, iv, True, backend)(data) == AES.new(key, AES.MODE_CBC, iv).encrypt(data)
    assert aes.open_cbc(key, iv, False, backend)(data) == AES.new(key, AES.MODE_CBC, iv).decrypt(data)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_blocks_and_bad_keys_are_refused(backend: str) -> None:
    update = aes.open_cbc(os.urandom(32), os.urandom(16), True, backend)
    with pytest.raises(ValueError):
        update(b"x" * 17)
    with pytest.raises(ValueError, match="32-byte key"):
        aes.open_cbc(os.urandom(16), os.urandom(16), True, backend)


def test_an_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="no AES backend 'rot13'"):
        aes.open_cbc(os.urandom(32), os.urandom(16), True, "rot13")
