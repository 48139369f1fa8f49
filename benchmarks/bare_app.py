"""The baseline: a bare Flask app whose one POST route returns a constant body.

It answers at the callback path with a body the size of an encrypted echo
reply, so both sides of the benchmark move the same bytes and differ only in
the work wechatbot does per request.
"""
from flask import Flask, Response

# About as long as the encrypted passive reply to a short text message.
BODY = "<xml><Encrypt><![CDATA[" + "A" * 384 + "]]></Encrypt><MsgSignature><![CDATA[" + "0" * 40 + \
    "]]></MsgSignature><TimeStamp>1700000000</TimeStamp><Nonce><![CDATA[0123456789abcdef]]></Nonce></xml>"

app = Flask("bare")


@app.post("/callback")
def callback() -> Response:
    """Return the constant body, ignoring the request."""
    return Response(BODY, mimetype="application/xml")
