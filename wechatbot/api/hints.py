"""WeCom's error codes: which ones are retried, what to check for each, and the errors raised.

Every error raised by the API client is a :class:`WeComError`; an answer with
a nonzero ``errcode`` is a :class:`WeComAPIError` whose message carries the
hint for the mistakes people make when setting an app up.
"""
from __future__ import annotations

from ..errors import WechatbotError

__all__ = [
    "HINTS",
    "RANGE_ERRCODE",
    "RETRY_ERRCODES",
    "TOKEN_ERRCODES",
    "MediaLimitError",
    "WeComAPIError",
    "WeComError",
    "WeComNetworkError",
    "hint_for",
    "is_transient",
]

#: The access token was rejected or expired: fetch a new one and retry once.
TOKEN_ERRCODES = frozenset({40014, 42001, 42007, 42009})
#: WeCom is busy (-1) or a frequency limit was hit: retry with backoff.
RETRY_ERRCODES = frozenset({-1, 45009, 45033})
#: media/get: the file is too large, fetch it in ranges.
RANGE_ERRCODE = 830002

HINTS = {
    -1: "WeCom is busy; it stayed busy through the retries, try again later",
    40001: "the app secret is wrong, was reset, or the app is disabled: copy the Secret from the "
           "app's page in the WeCom admin console into secret",
    40013: "the corp id is wrong: corp_id must be the 企业ID shown under 我的企业 → 企业信息",
    40091: "the secret is not valid: copy the app's Secret again into secret",
    40014: "the access token was rejected even after fetching a new one; check that no other "
           "program resets this app's secret",
    42001: "the access token expired even after fetching a new one; check the server's clock",
    41001: "the request carried no access token (a bug in the caller)",
    40056: "agent_id is not the AgentId of the app whose secret is configured",
    301002: "agent_id does not belong to the app whose secret is configured",
    60020: "the server's IP is not in the app's trusted IPs (企业可信IP): add the 'from ip' above in "
           "the app's settings in the admin console; it takes about a minute to apply",
    48002: "this API is not permitted for the app: grant the permission in the admin console "
           "(some APIs are not open to every app type)",
    81013: "every recipient is invalid or outside the app's visible range (可见范围): check "
           "touser/toparty/totag and the app's visible range",
    40003: "a user id is invalid: touser must be the member's 账号 (UserID) from the contacts, exactly",
    82001: "every member, department or tag given is invalid",
    40007: "the media_id is wrong or expired (media ids last 3 days)",
    41006: "the media_id is missing",
    40004: "the media type is not accepted (image: jpg/png, voice: amr, video: mp4)",
    40005: "the media type parameter must be image, voice, video or file",
    40006: "the file size is not accepted (more than 5 bytes; image/video ≤ 10 MB, voice ≤ 2 MB, file ≤ 20 MB)",
    40009: "the image is too large (≤ 10 MB)",
    40011: "the video is too large (≤ 10 MB)",
    40033: "the request contains \\uXXXX escapes; send UTF-8 JSON",
    44004: "the text content is empty",
    45002: "the content is too long (a text message holds 2048 bytes)",
    45008: "a news message holds 1 to 8 articles",
    45009: "the API frequency limit was hit; WeCom blocks the caller for the rest of the minute or hour",
    45033: "too many concurrent calls (for example on one media_id); lower the concurrency",
    830002: "the file is too large for one download; fetch it with Range requests",
    93000: "the webhook key is wrong, or the robot was removed from its group",
}

def hint_for(errcode: int) -> str | None:
    """What to check for ``errcode``, for the errors people meet when setting an app up."""
    return HINTS.get(errcode)


class WeComError(WechatbotError):
    """Any failure talking to WeCom."""


class WeComAPIError(WeComError):
    """WeCom answered a call with a nonzero ``errcode``.

    ``str()`` reads ``errcode 60020: <errmsg> (hint: …)``; ``path`` is the API
    that answered (``message/send``).
    """

    def __init__(self, errcode: int, errmsg: str, path: str = "", hint: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        self.hint = hint if hint is not None else hint_for(errcode)
        super().__init__(errcode, errmsg)

    def __str__(self) -> str:
        text = f"errcode {self.errcode}: {self.errmsg}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class WeComNetworkError(WeComError):
    """WeCom could not be reached, or answered something that is not the API's JSON."""


class MediaLimitError(WeComError, ValueError):
    """A file breaks a size or type limit (checked before uploading, or while downloading)."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed later: network trouble, HTTP 5xx, WeCom busy or rate limits.

    Anything else (81013 recipients outside the app's range, 40003 an invalid
    user id, 60020 an untrusted IP …) fails again the same way until someone
    changes the setup.
    """
    if isinstance(exc, WeComAPIError):
        return exc.errcode in RETRY_ERRCODES
    return isinstance(exc, WeComNetworkError)
