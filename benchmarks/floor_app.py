"""The floor: the targets' path written as directly as it can be, to show what any host must spend.

Not a framework and not for use: one Flask route doing exactly the steps the
performance targets name, with the fastest libraries there are and nothing
else (no logging, metrics, retries of a busy database, deadlines, answer
records or plugins):

1. the query's ``msg_signature``, ``timestamp`` and ``nonce``, the envelope's
   ``Encrypt`` (one regex), its SHA-1 signature checked;
2. AES-256-CBC decrypted with cryptography (OpenSSL), the PKCS#7 padding and
   the 16-byte random prefix stripped, the receive id checked;
3. ``FromUserName``, ``ToUserName``, ``MsgId`` and ``Content`` read with one
   regex each;
4. the dedup claim: ``INSERT OR IGNORE`` of the MsgId into a table of a SQLite
   file that both workers share (WAL, ``synchronous=OFF``, as wechatbot's
   default store), one connection per thread; a repeated MsgId answers empty;
5. the echo reply as an f-string, encrypted and signed the same way.

Whatever a real host does beyond this (the log line, metrics, retries
answered with the first reply, the deadline, the outbox) comes on top, so
the gap between this side and the bare route is the least the targets' path
costs under the same server. Run under gthread with 4 threads and under sync
workers (``floor-gthread``, ``floor-sync``).

Reads ``BENCH_TOKEN``, ``BENCH_ENCODING_AES_KEY``, ``BENCH_CORP_ID`` and
``BENCH_FLOOR_DB`` (the SQLite file, created if missing).
"""
import base64
import hashlib
import hmac
import os
import re
import sqlite3
import struct
import threading
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from flask import Flask, Response, abort, request

TOKEN = os.environ["BENCH_TOKEN"]
KEY = base64.b64decode(os.environ["BENCH_ENCODING_AES_KEY"] + "=")
CORP_ID = os.environ["BENCH_CORP_ID"].encode()
DB = os.environ["BENCH_FLOOR_DB"]
CIPHER = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16]))

ENCRYPT = re.compile(rb"<Encrypt>(?:<!\[CDATA\[)?([A-Za-z0-9+/=]*)(?:\]\]>)?</Encrypt>")
FIELDS = {name: re.compile(rf"<{name}>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</{name}>".encode(), re.S)
          for name in ("FromUserName", "ToUserName", "MsgId", "Content")}
ENVELOPE = ("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            "<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>")
REPLY = ("<xml><ToUserName><![CDATA[{to_user}]]></ToUserName><FromUserName><![CDATA[{from_user}]]></FromUserName>"
         "<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
         "<Content><![CDATA[{content}]]></Content></xml>")

_setup = sqlite3.connect(DB, timeout=10)
_setup.execute("PRAGMA journal_mode=WAL")
_setup.execute("CREATE TABLE IF NOT EXISTS claims (msg_id TEXT PRIMARY KEY) WITHOUT ROWID")
_setup.close()
_local = threading.local()

app = Flask("floor")


def _db() -> sqlite3.Connection:
    """This thread's connection (opened after the fork: gunicorn loads the app in each worker)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(DB, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=OFF")
    return conn


def _signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _field(name: str, xml: bytes) -> str:
    found = FIELDS[name].search(xml)
    return found.group(1).decode() if found else ""


@app.post("/callback")
def callback() -> Response:
    """Verify, decrypt, claim, echo, encrypt."""
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    found = ENCRYPT.search(request.get_data())
    if found is None:
        abort(400)
    encrypt = found.group(1).decode()
    if not hmac.compare_digest(_signature(TOKEN, timestamp, nonce, encrypt), args.get("msg_signature", "")):
        abort(403)
    decryptor = CIPHER.decryptor()
    plain = decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()
    plain = plain[16:-plain[-1]]
    (length,) = struct.unpack(">I", plain[:4])
    xml, receive_id = plain[4:4 + length], plain[4 + length:]
    if receive_id != CORP_ID:
        abort(403)
    if _db().execute("INSERT OR IGNORE INTO claims (msg_id) VALUES (?)", (_field("MsgId", xml),)).rowcount != 1:
        return Response("", mimetype="text/plain")  # a retry: answered once already
    reply = REPLY.format(to_user=_field("FromUserName", xml), from_user=_field("ToUserName", xml),
                         create_time=int(time.time()), content=_field("Content", xml)).encode()
    body = os.urandom(16) + struct.pack(">I", len(reply)) + reply + CORP_ID
    pad = 32 - len(body) % 32
    encryptor = CIPHER.encryptor()
    sealed = base64.b64encode(encryptor.update(body + bytes([pad]) * pad) + encryptor.finalize()).decode()
    reply_timestamp = str(int(time.time()))
    return Response(ENVELOPE.format(encrypt=sealed, signature=_signature(TOKEN, reply_timestamp, nonce, sealed),
                                    timestamp=reply_timestamp, nonce=nonce), mimetype="application/xml")
