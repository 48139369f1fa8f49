"""The WeCom callback crypto scheme: sign, verify, encrypt, decrypt, envelopes.

WeCom signs every callback with SHA-1 over the sorted strings (Token,
timestamp, nonce, ciphertext) and encrypts the payload with AES-256-CBC:

    plain  = 16 random bytes || uint32_be(len(msg in UTF-8)) || msg || receive_id
    padded = plain || n * byte(n), n in 1..32    (PKCS#7 with a 32-byte block)
    cipher = AES-256-CBC(key, iv=key[:16], padded), sent as standard base64

where ``key = base64decode(EncodingAESKey + "=")``. The same scheme seals the
passive reply, which goes back inside an XML or JSON envelope.

Every failure raises a :class:`WeComCryptoError` subclass carrying the code the
official libraries use (-40001 ... -40011) and a message that says what to
check. Messages never contain the Token or the EncodingAESKey, nor anything
derived from them such as the expected signature.

Which codes a request can trigger:

* -40001, -40002, -40005, -40007, -40008, -40010 come from what a caller sends.
* -40004 comes from configuration (a malformed EncodingAESKey).
* -40003 only from values that are not ``str`` or hold lone surrogates; a WSGI
  server always hands over proper text, so a request cannot cause it.
* -40006 only from a reply plaintext that is not ``str``, holds lone
  surrogates, or exceeds 4 GiB.
* -40011 only from an unknown envelope format or a nonce/timestamp that cannot
  be written into XML (``]]>``, control characters).
* -40009 is never raised: base64-encoding bytes cannot fail. The class exists
  so that every official code has a name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import string
import struct
import threading
import time
from xml.parsers import expat
from xml.sax.saxutils import escape as _xml_escape

from ..errors import WechatbotError
from ..process import current_pid
from .aes import open_cbc
from .limits import (
    MAX_NONCE_LENGTH, MAX_SIGNATURE_LENGTH, MAX_TIMESTAMP_LENGTH, XML_ILLEGAL, StructureGuard, TooComplex,
    count_markup,
)

__all__ = [
    "AESKeyError",
    "BuildReplyError",
    "ComputeSignatureError",
    "DecodeBase64Error",
    "DecryptError",
    "EncodeBase64Error",
    "EncryptError",
    "InvalidBufferError",
    "ParseError",
    "QueryError",
    "ReceiveIdError",
    "SignatureError",
    "WeComCrypto",
    "WeComCryptoError",
    "check_query",
    "envelope_format",
    "generate_aes_key",
    "generate_token",
    "parse_envelope",
    "signature",
]

_BLOCK = 32  # WeCom pads to 32 bytes, not the AES block size of 16
_PREFIX = 16
_LEN = struct.Struct(">I")
_ALNUM = string.ascii_letters + string.digits
_AES_KEY_RE = re.compile(r"[A-Za-z0-9]{43}")
_WHITESPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"
# A receive id as WeCom writes it (corp id, suite id): safe to quote in an error.
_ID_LIKE = re.compile(rb"[A-Za-z0-9_.\-]{1,64}")
_DECL_RE = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DECL_RE_BYTES = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# The envelope exactly as WeCom sends it: <xml>, simple ASCII siblings such as
# ToUserName and AgentID, one Encrypt of base64, </xml>. Such a body is read
# by this pattern alone; any other body goes through expat.
_XML_SPACE = rb"[ \t\r\n]*"
_SIMPLE_TEXT = rb"(?:<!\[CDATA\[[^\x00-\x1f\x7f-\xff<>&\]]*\]\]>|[^\x00-\x1f\x7f-\xff<>&\]]*)"
# A sibling is never Encrypt: the pattern then cannot take a second Encrypt
# (expat reports that), nor try the ciphertext as a sibling's text first.
_SIMPLE_SIBLING = rb"<(?!Encrypt>)([A-Za-z]+)>" + _SIMPLE_TEXT + rb"</\1>" + _XML_SPACE
_SIMPLE_SIBLING_AFTER = rb"<(?!Encrypt>)([A-Za-z]+)>" + _SIMPLE_TEXT + rb"</\4>" + _XML_SPACE
_SIMPLE_XML_ENVELOPE = re.compile(
    rb"<xml>" + _XML_SPACE + rb"(?:" + _SIMPLE_SIBLING + rb")*"
    rb"<Encrypt>(?:<!\[CDATA\[([A-Za-z0-9+/=]+)\]\]>|([A-Za-z0-9+/=]+))</Encrypt>" + _XML_SPACE
    + rb"(?:" + _SIMPLE_SIBLING_AFTER + rb")*</xml>" + _XML_SPACE
)


class WeComCryptoError(WechatbotError):
    """A callback could not be verified, decrypted or sealed.

    ``code`` is the official library return code; ``str(e)`` says what to
    check and never contains a secret.
    """

    code: int = 0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SignatureError(WeComCryptoError):
    """msg_signature does not match (or is missing)."""

    code = -40001


class ParseError(WeComCryptoError):
    """The XML/JSON envelope is malformed, refused, or has no Encrypt."""

    code = -40002


class ComputeSignatureError(WeComCryptoError):
    """The signature could not be computed from the given values."""

    code = -40003


class AESKeyError(WeComCryptoError, ValueError):
    """The EncodingAESKey is not 43 characters from [A-Za-z0-9]."""

    code = -40004


class ReceiveIdError(WeComCryptoError):
    """The message was encrypted for another receive id."""

    code = -40005


class EncryptError(WeComCryptoError):
    """The plaintext could not be encrypted."""

    code = -40006


class DecryptError(WeComCryptoError):
    """The ciphertext cannot be AES-decrypted (wrong length)."""

    code = -40007


class InvalidBufferError(WeComCryptoError):
    """The decrypted buffer is malformed: padding, length field or UTF-8."""

    code = -40008


class EncodeBase64Error(WeComCryptoError):
    """Base64 encoding failed; never raised, kept for the complete code table."""

    code = -40009


class DecodeBase64Error(WeComCryptoError):
    """The ciphertext is not standard base64."""

    code = -40010


class BuildReplyError(WeComCryptoError):
    """The reply envelope could not be built."""

    code = -40011


class QueryError(WeComCryptoError):
    """A signed query value is absurd: far too long, or a nonce the reply could not carry."""

    code = -40002


def check_query(msg_signature: str, timestamp: str, nonce: str, xml_reply: bool = False) -> None:
    """Refuse query values WeCom never sends, before anything else looks at them.

    WeCom's signature is 40 hex digits, its timestamp a number of seconds and
    its nonce a few characters; each is bounded here. With ``xml_reply`` (the
    answer goes back in an XML envelope, which repeats them) a nonce or
    timestamp holding ``]]>`` or a character XML cannot carry is refused too.
    Raises :class:`QueryError` naming the parameter.
    """
    for name, value, limit in (("msg_signature", msg_signature, MAX_SIGNATURE_LENGTH),
                               ("timestamp", timestamp, MAX_TIMESTAMP_LENGTH),
                               ("nonce", nonce, MAX_NONCE_LENGTH)):
        if isinstance(value, str) and len(value) > limit:
            raise QueryError(f"the {name} query parameter is {len(value)} characters long "
                             f"(WeCom's are at most {limit}); is this request from WeCom?")
    if not xml_reply:
        return
    for name, value in (("timestamp", timestamp), ("nonce", nonce)):
        if isinstance(value, str) and ("]]>" in value or XML_ILLEGAL.search(value)):
            raise QueryError(f"the {name} query parameter holds ']]>' or a control character, "
                             "which an XML reply cannot carry; is this request from WeCom?")


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """Return the WeCom signature: SHA-1 hex over the four strings, sorted.

    Raises :class:`ComputeSignatureError` when a value is not ``str`` or cannot
    be encoded as UTF-8; the message names the value, never its content.
    """
    values = (token, timestamp, nonce, encrypted)
    try:
        # Sorting and joining fail on anything but four str; the checks that
        # name the culprit run only then, off the path of every callback.
        data = "".join(sorted(values)).encode("utf-8")
    except TypeError:
        for name, value in zip(("token", "timestamp", "nonce", "encrypted"), values):
            if not isinstance(value, str):
                raise ComputeSignatureError(
                    f"cannot compute the signature: {name} must be a str, not {type(value).__name__}"
                ) from None
        raise
    except UnicodeEncodeError:
        raise ComputeSignatureError(
            "cannot compute the signature: a value holds characters that are not valid "
            "Unicode text (lone surrogates)"
        ) from None
    return hashlib.sha1(data).hexdigest()


def generate_token() -> str:
    """Return a random Token: 32 characters from [A-Za-z0-9]."""
    return "".join(secrets.choice(_ALNUM) for _ in range(32))


def generate_aes_key() -> str:
    """Return a random EncodingAESKey: 43 characters from [A-Za-z0-9]."""
    return "".join(secrets.choice(_ALNUM) for _ in range(43))


def _normalize(body: object) -> bytes | str:
    """Return the body without leading whitespace or UTF-8 byte-order mark."""
    if isinstance(body, str):
        return body.lstrip(" \t\r\n\ufeff")
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body).lstrip(_WHITESPACE)
        if data.startswith(_UTF8_BOM):
            data = data[len(_UTF8_BOM):].lstrip(_WHITESPACE)
        return data
    raise ParseError(f"the callback body must be bytes or str, not {type(body).__name__}")


def _format_of(data: bytes | str) -> str:
    first = data[:1]
    if first in ("<", b"<"):
        return "xml"
    if first in ("{", b"{"):
        return "json"
    if not first:
        raise ParseError("the callback body is empty; WeCom always sends an envelope with Encrypt")
    raise ParseError(
        "the callback body is neither XML nor JSON (it must start with '<' or '{'); "
        "is this request from WeCom?"
    )


def envelope_format(body: bytes | str) -> str:
    """Return ``"xml"`` or ``"json"``, judged by the first non-space character.

    Raises :class:`ParseError` when the body is empty or starts with anything
    other than ``<`` or ``{``.
    """
    return _format_of(_normalize(body))


def parse_envelope(body: bytes | str) -> str:
    """Return the ciphertext from an XML or JSON callback envelope.

    XML: the text of the ``Encrypt`` element directly under the root. JSON: an
    object's ``encrypt`` (or ``Encrypt``) string. A DOCTYPE or entity
    declaration is refused before and during parsing, so nothing is expanded
    or fetched. Raises :class:`ParseError` on anything malformed.
    """
    return _ciphertext(_normalize(body))[0]


def _ciphertext(data: bytes | str) -> tuple[str, str]:
    """``(ciphertext, "xml" or "json")`` from a normalized envelope."""
    if _format_of(data) == "json":
        return _parse_json_envelope(data), "json"
    if isinstance(data, bytes):
        simple = _SIMPLE_XML_ENVELOPE.fullmatch(data)
        if simple:
            return (simple.group(2) or simple.group(3)).decode("ascii"), "xml"
    return _parse_xml_envelope(data), "xml"


def _parse_json_envelope(data: bytes | str) -> str:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # json's messages give a position, never the content.
        raise ParseError(f"the callback body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ParseError("the JSON callback body must be an object with an 'encrypt' field")
    value = obj.get("encrypt", obj.get("Encrypt"))
    if not isinstance(value, str) or not value.strip():
        raise ParseError(
            "the JSON callback body has no 'encrypt' string; check that the callback "
            "is a WeCom callback in encrypted mode"
        )
    return value.strip()


class _RefusedDeclaration(Exception):
    pass


def _refuse(*_args: object) -> None:
    raise _RefusedDeclaration


def _parse_xml_envelope(data: bytes | str) -> str:
    declared = _DECL_RE if isinstance(data, str) else _DECL_RE_BYTES
    if declared.search(data):
        raise ParseError(_DOCTYPE_MESSAGE)
    try:
        count_markup(data)
    except TooComplex as exc:
        raise ParseError(f"the XML callback body is refused: {exc}") from None

    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    # The text check above misses other encodings (UTF-16); these handlers
    # stop expat at the first declaration whatever the encoding.
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.buffer_text = True

    guard = StructureGuard()
    in_encrypt = False
    found: list[str] = []
    parts: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal in_encrypt
        guard.enter(name, attrs)
        if guard.depth == 2 and name == "Encrypt":
            in_encrypt = True
            parts.clear()

    def end(name: str) -> None:
        nonlocal in_encrypt
        if guard.depth == 2 and in_encrypt:
            found.append("".join(parts))
            in_encrypt = False
        guard.leave()

    def text(chunk: str) -> None:
        if in_encrypt:
            parts.append(chunk)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except _RefusedDeclaration:
        raise ParseError(_DOCTYPE_MESSAGE) from None
    except TooComplex as exc:
        raise ParseError(f"the XML callback body is refused: {exc}") from None
    except expat.ExpatError as exc:
        # expat's messages give a line and column, never the content.
        raise ParseError(f"the callback body is not well-formed XML: {exc}") from None

    if len(found) > 1:
        raise ParseError("the XML callback body has more than one <Encrypt> element")
    if not found or not found[0].strip():
        raise ParseError(
            "the XML callback body has no <Encrypt> element under its root; check that the "
            "app's callback is in encrypted mode and that the request comes from WeCom"
        )
    return found[0].strip()


_DOCTYPE_MESSAGE = (
    "the XML callback body declares a DOCTYPE or entity, which WeCom never sends; "
    "refused before any entity is expanded or fetched"
)


def _shown_id(raw: bytes) -> str:
    """The receive id found in a message, for an error line: shown only when it looks like an id.

    Anything else may be decrypted message content, which never goes into a log line.
    """
    if _ID_LIKE.fullmatch(raw):
        return repr(raw.decode("ascii"))
    return f"({len(raw)} bytes that are not an id)" if raw else "'' (empty)"


class WeComCrypto:
    """The crypto of one WeCom app: its Token, EncodingAESKey and receive id.

    ``receive_id`` is the id sealed into every message: the corp id for a
    self-built app, the suite id for third-party suite callbacks, and the
    empty string for the AI bot and group robots.
    """

    __slots__ = ("_token", "_key", "_open_contexts", "receive_id", "_receive_id_bytes")

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, not {type(token).__name__}")
        if not isinstance(receive_id, str):
            raise TypeError(f"receive_id must be a str, not {type(receive_id).__name__}")
        self._token = token
        self._key = _decode_aes_key(encoding_aes_key)
        # WeCom's IV is the key's first 16 bytes, so each thread keeps one
        # context per direction open for every message (see _cbc).
        self._open_contexts = threading.local()
        self.receive_id = receive_id
        self._receive_id_bytes = receive_id.encode("utf-8")

    def __repr__(self) -> str:
        return f"WeComCrypto(receive_id={self.receive_id!r})"

    def verify_signature(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """Raise :class:`SignatureError` unless ``msg_signature`` signs these values.

        The comparison takes constant time. A missing (``None``) parameter is a
        signature failure too: the request was not signed by WeCom.
        """
        for name, value in (("msg_signature", msg_signature), ("timestamp", timestamp), ("nonce", nonce)):
            if value is None:
                raise SignatureError(
                    f"the request has no {name} query parameter; WeCom always sends "
                    "msg_signature, timestamp and nonce (was it sent by WeCom?)"
                )
        check_query(msg_signature, timestamp, nonce)
        expected = signature(self._token, timestamp, nonce, encrypted)
        given = msg_signature.encode("utf-8", "replace") if isinstance(msg_signature, str) else b""
        if not hmac.compare_digest(expected.encode("ascii"), given):
            raise SignatureError(
                "msg_signature does not match: the Token in the config differs from the one "
                "on the app's admin page (or the request was not sent by WeCom)"
            )

    def encrypt(self, plaintext: str) -> str:
        """Encrypt ``plaintext`` for this app's receive id; return base64 text.

        Each call draws a fresh 16-byte random prefix, so equal plaintexts give
        different ciphertexts.
        """
        if not isinstance(plaintext, str):
            raise EncryptError(f"the plaintext must be a str, not {type(plaintext).__name__}")
        try:
            msg = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            raise EncryptError(
                "the plaintext holds characters that are not valid Unicode text (lone surrogates)"
            ) from None
        if len(msg) > 0xFFFFFFFF:
            raise EncryptError("the plaintext is longer than the 4 GiB the length field can hold")
        plain = b"".join((_random_prefix(), _LEN.pack(len(msg)), msg, self._receive_id_bytes))
        n = _BLOCK - len(plain) % _BLOCK
        plain += bytes((n,)) * n
        return base64.b64encode(self._cbc("encryptor", plain)).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        """Decrypt WeCom ciphertext and return the message text.

        Strict: standard base64; a non-zero multiple of 32 bytes; PKCS#7
        padding of 1..32 identical bytes; a length field that fits the buffer;
        UTF-8 text; and a receive id equal to this app's. Call it only after
        the signature check (as :meth:`verify_url` and :meth:`decrypt_message`
        do), which keeps unauthenticated input away from the padding check.
        """
        if isinstance(encrypted, (bytes, bytearray)):
            encrypted = bytes(encrypted).decode("latin-1")
        if not isinstance(encrypted, str):
            raise DecodeBase64Error(f"the ciphertext must be a str, not {type(encrypted).__name__}")
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise DecodeBase64Error(
                "the ciphertext is not standard base64; check that the query string was "
                "URL-decoded exactly once ('+' must not become a space)"
            ) from None
        if not raw or len(raw) % _BLOCK:
            raise DecryptError(
                f"the ciphertext is {len(raw)} bytes; WeCom ciphertext is a non-zero multiple "
                "of 32 bytes (truncated, or not from WeCom?)"
            )
        plain = self._cbc("decryptor", raw)

        n = plain[-1]
        if not 1 <= n <= _BLOCK or plain[-n:] != bytes((n,)) * n:
            raise InvalidBufferError(
                "the decrypted message has invalid padding: the EncodingAESKey in the config "
                "differs from the one on the app's admin page, or the ciphertext was altered"
            )
        body = plain[_PREFIX:-n]
        if len(body) < _LEN.size:
            raise InvalidBufferError(
                "the decrypted message is too short to hold its length field; "
                "check the EncodingAESKey"
            )
        (size,) = _LEN.unpack_from(body)
        if size > len(body) - _LEN.size:
            raise InvalidBufferError(
                f"the decrypted length field says {size} bytes but only "
                f"{len(body) - _LEN.size} follow; check the EncodingAESKey"
            )
        msg = body[_LEN.size:_LEN.size + size]
        got_id = body[_LEN.size + size:]
        if not hmac.compare_digest(got_id, self._receive_id_bytes):
            raise ReceiveIdError(
                f"the message was encrypted for receive id {_shown_id(got_id)}, but this app "
                f"expects {self.receive_id!r}; check corp_id / receive_id "
                "(AI bot and group robots use an empty receive_id)"
            )
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidBufferError("the decrypted message is not UTF-8 text") from None

    def _cbc(self, direction: str, data: bytes) -> bytes:
        """AES-CBC with WeCom's IV over ``data`` (whole blocks), on this thread's open context.

        Opening an OpenSSL context costs more than a message's worth of AES,
        so each thread keeps one encryptor and one decryptor open for good.
        An open context chains a message's first block onto the previous
        message's last ciphertext block instead of the IV, which changes only
        that first block after decryption: the 16 random bytes every WeCom
        message starts with, which both sides throw away. From the second
        block on, a message chains within itself and comes out exact.
        """
        update = getattr(self._open_contexts, direction, None)
        if update is None:
            update = open_cbc(self._key, self._key[:16], encrypt=direction == "encryptor")
            setattr(self._open_contexts, direction, update)
        return update(data)

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Answer WeCom's URL verification: check the signature, return the plain echostr."""
        self.verify_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_message(self, body: bytes | str, msg_signature: str, timestamp: str, nonce: str) -> str:
        """Parse a callback envelope, check its signature, return the plaintext.

        The envelope may be XML or JSON (judged by its first character); the
        plaintext is whatever WeCom sealed: XML for apps, JSON for the AI bot.
        """
        return self.open_callback(body, msg_signature, timestamp, nonce)[0]

    def open_callback(self, body: bytes | str, msg_signature: str, timestamp: str, nonce: str) -> tuple[str, str]:
        """Like :meth:`decrypt_message`, also telling the envelope's format.

        Returns ``(plaintext, "xml" or "json")``: the reply must go back in
        the format the callback came in.
        """
        encrypted, fmt = _ciphertext(_normalize(body))
        self.verify_signature(msg_signature, timestamp, nonce, encrypted)
        # Refused before anything is decrypted or any plugin runs: the reply
        # could not be built for such a callback.
        check_query(msg_signature, timestamp, nonce, xml_reply=fmt == "xml")
        return self.decrypt(encrypted), fmt

    def encrypt_reply(
        self, plaintext: str, nonce: str, timestamp: str | None = None, fmt: str = "xml"
    ) -> str:
        """Seal ``plaintext`` as a passive reply envelope, signed with ``nonce``/``timestamp``.

        ``fmt="xml"`` gives ``<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>``;
        ``fmt="json"`` gives ``{"encrypt","msgsignature","timestamp","nonce"}``
        (the AI bot wants JSON and the request's own nonce). ``timestamp``
        defaults to the current time in seconds.
        """
        if fmt not in ("xml", "json"):
            raise BuildReplyError(f"the reply format must be 'xml' or 'json', not {fmt!r}")
        if timestamp is None:
            timestamp = str(int(time.time()))
        elif isinstance(timestamp, int) and not isinstance(timestamp, bool):
            timestamp = str(timestamp)
        encrypted = self.encrypt(plaintext)
        sig = signature(self._token, timestamp, nonce, encrypted)
        if fmt == "json":
            return json.dumps(
                {"encrypt": encrypted, "msgsignature": sig, "timestamp": timestamp, "nonce": nonce},
                ensure_ascii=False,
            )
        for name, value in (("nonce", nonce), ("timestamp", timestamp)):
            if XML_ILLEGAL.search(value):
                raise BuildReplyError(f"the {name} holds characters that XML cannot carry")
        if "]]>" in nonce:
            raise BuildReplyError("the nonce contains ']]>' and cannot go into a CDATA section")
        return (
            "<xml>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>"
            f"<TimeStamp>{_xml_escape(timestamp)}</TimeStamp>"
            f"<Nonce><![CDATA[{nonce}]]></Nonce>"
            "</xml>"
        )


_random = threading.local()


def _random_prefix() -> bytes:
    """16 bytes from ``secrets``, drawn 4 KiB at a time per thread.

    Asking the OS for 16 bytes per reply is a system call that also gives up
    the GIL; under load getting it back costs more than the bytes.
    """
    pool = getattr(_random, "pool", b"")
    at = getattr(_random, "at", 0)
    # A forked child must not reuse the bytes its parent has not used yet.
    if at + _PREFIX > len(pool) or getattr(_random, "pid", None) != current_pid():
        pool, at = secrets.token_bytes(4096), 0
        _random.pool, _random.pid = pool, current_pid()
    _random.at = at + _PREFIX
    return pool[at:at + _PREFIX]


def _decode_aes_key(encoding_aes_key: object) -> bytes:
    if not isinstance(encoding_aes_key, str):
        raise AESKeyError(
            f"encoding_aes_key must be a str of 43 characters from [A-Za-z0-9], "
            f"not {type(encoding_aes_key).__name__}"
        )
    if len(encoding_aes_key) != 43:
        raise AESKeyError(
            f"encoding_aes_key must be exactly 43 characters from [A-Za-z0-9], but it has "
            f"{len(encoding_aes_key)}; copy the EncodingAESKey from the app's admin page again"
        )
    if not _AES_KEY_RE.fullmatch(encoding_aes_key):
        raise AESKeyError(
            "encoding_aes_key must be 43 characters from [A-Za-z0-9], but it holds other "
            "characters (spaces, quotes or symbols copied along with it?)"
        )
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:  # cannot happen for 43 alphanumerics; kept as a guard
        raise AESKeyError("encoding_aes_key does not decode to a 32-byte AES key")
    return key
