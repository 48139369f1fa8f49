"""The seeds' hand-written callback view: Tencent's sample ``WXBizMsgCrypt3`` in a Flask route.

Written as the sample's users write it and run as they run it
(``gunicorn -w 2 seed_app:app``: sync workers, no access log). The sample is
the one published on PyPI as ``weworkapi-cfomp`` (module
``wework_callback.WXBizMsgCrypt3``: ``DecryptMsg`` checks the SHA-1 signature
and AES-CBC-decrypts with pycryptodome, ``EncryptMsg`` encrypts and signs the
reply). Its code runs unchanged; only its ``import xml.etree.cElementTree``,
a module Python 3.9 removed, is pointed at ``xml.etree.ElementTree`` first,
the fix its users apply on a current Python.

Per request: verify and decrypt, parse the message with ElementTree, build a
text reply echoing the content, encrypt and sign it.

Reads ``BENCH_TOKEN``, ``BENCH_ENCODING_AES_KEY`` and ``BENCH_CORP_ID``.
"""
import os
import sys
import time
import xml.etree.ElementTree as ET

sys.modules.setdefault("xml.etree.cElementTree", ET)

from flask import Flask, Response, abort, request  # noqa: E402
from wework_callback.WXBizMsgCrypt3 import WXBizMsgCrypt  # noqa: E402

REPLY = (
    "<xml><ToUserName><![CDATA[{to_user}]]></ToUserName><FromUserName><![CDATA[{from_user}]]></FromUserName>"
    "<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[{content}]]></Content></xml>"
)

wxcpt = WXBizMsgCrypt(os.environ["BENCH_TOKEN"], os.environ["BENCH_ENCODING_AES_KEY"], os.environ["BENCH_CORP_ID"])
app = Flask("seed")


@app.post("/callback")
def callback() -> Response:
    """Decrypt the callback, echo a text message's content back, encrypted."""
    nonce = request.args.get("nonce")
    ret, xml = wxcpt.DecryptMsg(request.data, request.args.get("msg_signature"), request.args.get("timestamp"), nonce)
    if ret != 0:
        abort(403)
    message = ET.fromstring(xml)
    reply = REPLY.format(to_user=message.findtext("FromUserName"), from_user=message.findtext("ToUserName"),
                         create_time=int(time.time()), content=message.findtext("Content"))
    ret, encrypted = wxcpt.EncryptMsg(reply, nonce)
    if ret != 0:
        abort(500)
    return Response(encrypted, mimetype="application/xml")
