"""A wechatpy callback view: ``wechatpy.enterprise.crypto.WeChatCrypto`` in a Flask route.

Written as wechatpy's documentation shows for WeCom (企业微信) apps and run as
its users run it (``gunicorn -w 2 wechatpy_app:app``: sync workers, no access
log). Per request: ``decrypt_message`` parses the envelope with xmltodict,
checks the SHA-1 signature and AES-CBC-decrypts (cryptography);
``parse_message`` reads the message, ``create_reply`` renders a text reply
echoing the content, ``encrypt_message`` encrypts and signs it.

Reads ``BENCH_TOKEN``, ``BENCH_ENCODING_AES_KEY`` and ``BENCH_CORP_ID``.
"""
import os

from flask import Flask, Response, abort, request
from wechatpy.enterprise import create_reply, parse_message
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

crypto = WeChatCrypto(os.environ["BENCH_TOKEN"], os.environ["BENCH_ENCODING_AES_KEY"], os.environ["BENCH_CORP_ID"])
app = Flask("wechatpy")


@app.post("/callback")
def callback() -> Response:
    """Decrypt the callback, echo a text message's content back, encrypted."""
    timestamp, nonce = request.args.get("timestamp"), request.args.get("nonce")
    try:
        xml = crypto.decrypt_message(request.data, request.args.get("msg_signature"), timestamp, nonce)
    except (InvalidSignatureException, InvalidCorpIdException):
        abort(403)
    message = parse_message(xml)
    reply = create_reply(message.content, message).render()
    return Response(crypto.encrypt_message(reply, nonce, timestamp), mimetype="application/xml")
