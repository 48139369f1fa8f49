"""AES-256-CBC contexts that stay open, on the OpenSSL that Python has loaded already.

WeCom encrypts every callback and reply with AES-256-CBC. The ``cryptography``
package does that well, but loading it puts its own copy of OpenSSL in every
gunicorn worker: about 8 MiB of the worker's memory. On Linux, CPython's
``hashlib`` and ``ssl`` have already loaded the system's ``libcrypto``, so
this module calls the same few EVP functions of that library (through
``ctypes.PyDLL``, which keeps the GIL: a call of a microsecond or two is not
worth a thread switch). Where no ``libcrypto`` is found in the process
(another system, a static build), ``cryptography`` is used instead; both give
the same bytes.

:func:`open_cbc` returns an ``update`` function over a context that stays
open: like ``cryptography``'s ``encryptor().update``, successive calls chain
onto each other (each call's first block is chained onto the previous call's
last ciphertext block, not onto the IV).
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable

__all__ = ["BACKEND", "open_cbc"]

Update = Callable[[bytes], bytes]

_INT_MAX = 2**31 - 1


def _loaded_libcrypto() -> ctypes.PyDLL | None:
    """The ``libcrypto`` this process has mapped (through ``_hashlib``), with its EVP functions typed."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import _hashlib  # noqa: F401  # maps libcrypto where hashlib is built on OpenSSL

        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "libcrypto.so" in line}
        path = next((p for p in sorted(paths) if os.path.basename(p).startswith("libcrypto.so")), None)
        if path is None:
            return None
        lib = ctypes.PyDLL(path)
        lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        lib.EVP_CIPHER_CTX_new.argtypes = []
        lib.EVP_CIPHER_CTX_free.restype = None
        lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        lib.EVP_aes_256_cbc.restype = ctypes.c_void_p
        lib.EVP_aes_256_cbc.argtypes = []
        lib.EVP_CipherInit_ex.restype = ctypes.c_int
        lib.EVP_CipherInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                          ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        lib.EVP_CIPHER_CTX_set_padding.restype = ctypes.c_int
        lib.EVP_CIPHER_CTX_set_padding.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.EVP_CipherUpdate.restype = ctypes.c_int
        lib.EVP_CipherUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                         ctypes.c_char_p, ctypes.c_int]
    except (ImportError, OSError, AttributeError, StopIteration):
        return None
    return lib


class _LibcryptoCBC:
    """One open EVP_CIPHER_CTX (no padding: WeCom pads to 32 bytes itself)."""

    __slots__ = ("_lib", "_ctx", "_written")

    def __init__(self, lib: ctypes.PyDLL, key: bytes, iv: bytes, encrypt: bool) -> None:
        self._lib = lib
        self._ctx = lib.EVP_CIPHER_CTX_new()
        if not self._ctx:
            raise MemoryError("libcrypto could not allocate a cipher context")
        if lib.EVP_CipherInit_ex(self._ctx, lib.EVP_aes_256_cbc(), None, key, iv, 1 if encrypt else 0) != 1 \
                or lib.EVP_CIPHER_CTX_set_padding(self._ctx, 0) != 1:
            lib.EVP_CIPHER_CTX_free(self._ctx)
            self._ctx = None
            raise ValueError("libcrypto refused the AES-256-CBC key or IV")
        self._written = ctypes.c_int()

    def update(self, data: bytes) -> bytes:
        """Encrypt or decrypt ``data`` (whole 16-byte blocks), chained onto the previous call."""
        size = len(data)
        _check_blocks(size)
        out = ctypes.create_string_buffer(size)
        if self._lib.EVP_CipherUpdate(self._ctx, out, ctypes.byref(self._written), data, size) != 1:
            raise ValueError("libcrypto failed to process the AES-CBC data")
        return out.raw[:self._written.value]

    def __del__(self) -> None:
        if getattr(self, "_ctx", None):
            self._lib.EVP_CIPHER_CTX_free(self._ctx)
            self._ctx = None


def _libcrypto_cbc(key: bytes, iv: bytes, encrypt: bool) -> Update:
    return _LibcryptoCBC(_LIB, key, iv, encrypt).update  # type: ignore[arg-type]


def _cryptography_cbc(key: bytes, iv: bytes, encrypt: bool) -> Update:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    context = cipher.encryptor() if encrypt else cipher.decryptor()

    def update(data: bytes) -> bytes:
        _check_blocks(len(data))
        return context.update(data)

    return update


def _check_blocks(size: int) -> None:
    if size % 16 or size > _INT_MAX:
        raise ValueError(f"AES-CBC without padding needs whole 16-byte blocks under 2 GiB, not {size} bytes")


_LIB = _loaded_libcrypto()
#: Which implementation :func:`open_cbc` uses here: ``"libcrypto"`` or ``"cryptography"``.
BACKEND = "libcrypto" if _LIB is not None else "cryptography"
_BACKENDS: dict[str, Callable[[bytes, bytes, bool], Update]] = {"cryptography": _cryptography_cbc}
if _LIB is not None:
    _BACKENDS["libcrypto"] = _libcrypto_cbc


def open_cbc(key: bytes, iv: bytes, encrypt: bool, backend: str | None = None) -> Update:
    """An open AES-256-CBC context for ``key`` (32 bytes) and ``iv`` (16): its ``update`` function.

    ``backend`` picks ``"libcrypto"`` or ``"cryptography"`` (default: :data:`BACKEND`).
    """
    if len(key) != 32 or len(iv) != 16:
        raise ValueError(f"AES-256-CBC takes a 32-byte key and a 16-byte IV, not {len(key)} and {len(iv)} bytes")
    try:
        opener = _BACKENDS[backend or BACKEND]
    except KeyError:
        raise ValueError(f"no AES backend {backend!r} here (available: {', '.join(_BACKENDS)})") from None
    return opener(key, iv, encrypt)
