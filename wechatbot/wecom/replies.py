"""Reply types that plugins return, and their two wire forms.

A plugin answers a message with a :class:`Reply` (or a plain ``str``, see
:func:`as_reply`). The host renders it either as the plaintext passive-reply
XML (``to_xml``), which it then encrypts into the HTTP answer, or — when the
answer comes too late or does not fit a passive reply — as the
msgtype-specific part of a ``message/send`` body (``to_send_body``), to which
the API client adds ``touser`` and ``agentid``.

Every piece of text goes into CDATA, with ``]]>`` split across two CDATA
sections, so no content can break out of its element. Rendering runs on every
callback, so it is plain string building, not a DOM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

from ..errors import WechatbotError
from .limits import NEWS_ARTICLE_LIMIT, TEXT_LIMIT, XML_ILLEGAL

__all__ = [
    "TEXT_PASSIVE_LIMIT",
    "NEWS_ARTICLE_LIMIT",
    "ReplyError",
    "ReplyFormError",
    "TooManyArticles",
    "Reply",
    "TextReply",
    "MarkdownReply",
    "ImageReply",
    "VoiceReply",
    "VideoReply",
    "Article",
    "NewsReply",
    "ButtonUpdateReply",
    "TemplateCardUpdateReply",
    "ChunkedReply",
    "as_reply",
    "split_text",
    # The bots' replies (bot_replies), re-exported here.
    "BotReplyError",
    "StreamReply",
    "StreamImage",
    "TemplateCardReply",
    "StreamWithTemplateCardReply",
    "GroupTextReply",
    "cut_utf8",
]

#: A passive text reply (and a message/send text) holds at most this many
#: UTF-8 bytes; WeCom cuts longer texts.
TEXT_PASSIVE_LIMIT = TEXT_LIMIT


class ReplyError(Exception):
    """Raised by a plugin to answer the user with a friendly text.

    ``raise ReplyError("That order number does not exist")`` ends the
    plugin's work and the host replies with exactly that text.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    @property
    def reply(self) -> TextReply:
        """The answer the host sends for this error."""
        return TextReply(self.text)


class ReplyFormError(WechatbotError, ValueError):
    """The reply has no form for the requested channel (passive XML or push)."""


class TooManyArticles(WechatbotError, ValueError):
    """A news reply was given more articles than WeCom shows."""


# ---------------------------------------------------------------------------
# XML building blocks

def _cdata(value: str) -> str:
    value = XML_ILLEGAL.sub("", value)
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _element(name: str, value: Any) -> str:
    """One element: text in CDATA; numbers and booleans bare (``true``/``false``)."""
    if isinstance(value, bool):
        return f"<{name}>{'true' if value else 'false'}</{name}>"
    if isinstance(value, (int, float)):
        return f"<{name}>{value}</{name}>"
    return f"<{name}>{_cdata(str(value))}</{name}>"


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------------------
# Replies


@dataclass
class Reply:
    """Base of every reply.

    ``msg_type`` is the passive reply's ``MsgType``. ``fits_passive`` tells
    the host whether ``to_xml`` can carry this reply; when it is False the
    host pushes it through ``push_api`` instead.
    """

    msg_type: ClassVar[str] = ""
    #: The API path a late or oversized reply goes through.
    push_api: ClassVar[str] = "message/send"

    @property
    def fits_passive(self) -> bool:
        """Whether the passive XML reply carries this reply unchanged."""
        return True

    def to_xml(self, to_user: str, from_user: str, create_time: int | None = None) -> str:
        """The full plaintext passive reply, ``<xml>…</xml>``.

        ``to_user`` is the member's UserID (the message's FromUserName),
        ``from_user`` the CorpID (the message's ToUserName); ``create_time``
        defaults to now.
        """
        if create_time is None:
            create_time = int(time.time())
        return (
            "<xml>"
            f"<ToUserName>{_cdata(to_user)}</ToUserName>"
            f"<FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{int(create_time)}</CreateTime>"
            f"<MsgType><![CDATA[{self.msg_type}]]></MsgType>"
            f"{self._xml_body()}"
            "</xml>"
        )

    def _xml_body(self) -> str:
        raise NotImplementedError

    def to_send_body(self) -> dict:
        """The msgtype-specific part of a ``message/send`` body."""
        raise NotImplementedError


@dataclass
class TextReply(Reply):
    """A plain text answer. ``\\n`` makes a line break; ``<a href>`` links work."""

    content: str
    msg_type: ClassVar[str] = "text"

    @property
    def fits_passive(self) -> bool:
        """False when the text is over 2048 UTF-8 bytes: WeCom would cut it."""
        return _utf8_len(self.content) <= TEXT_PASSIVE_LIMIT

    def _xml_body(self) -> str:
        return f"<Content>{_cdata(self.content)}</Content>"

    def to_send_body(self) -> dict:
        return {"msgtype": "text", "text": {"content": self.content}}


@dataclass
class MarkdownReply(Reply):
    """A markdown answer (WeCom client only). It has no passive form: the
    host always pushes it through ``message/send``."""

    content: str
    msg_type: ClassVar[str] = "markdown"

    @property
    def fits_passive(self) -> bool:
        return False

    def to_xml(self, to_user: str, from_user: str, create_time: int | None = None) -> str:
        raise ReplyFormError(
            "WeCom has no passive markdown reply; send MarkdownReply through "
            "message/send (to_send_body) instead"
        )

    def to_send_body(self) -> dict:
        return {"msgtype": "markdown", "markdown": {"content": self.content}}


@dataclass
class ImageReply(Reply):
    """An image, by a ``media_id`` from ``media/upload``."""

    media_id: str
    msg_type: ClassVar[str] = "image"

    def _xml_body(self) -> str:
        return f"<Image><MediaId>{_cdata(self.media_id)}</MediaId></Image>"

    def to_send_body(self) -> dict:
        return {"msgtype": "image", "image": {"media_id": self.media_id}}


@dataclass
class VoiceReply(Reply):
    """A voice clip (AMR), by a ``media_id`` from ``media/upload``."""

    media_id: str
    msg_type: ClassVar[str] = "voice"

    def _xml_body(self) -> str:
        return f"<Voice><MediaId>{_cdata(self.media_id)}</MediaId></Voice>"

    def to_send_body(self) -> dict:
        return {"msgtype": "voice", "voice": {"media_id": self.media_id}}


@dataclass
class VideoReply(Reply):
    """A video (MP4), by a ``media_id`` from ``media/upload``."""

    media_id: str
    title: str = ""
    description: str = ""
    msg_type: ClassVar[str] = "video"

    def _xml_body(self) -> str:
        return (
            "<Video>"
            f"<MediaId>{_cdata(self.media_id)}</MediaId>"
            f"<Title>{_cdata(self.title)}</Title>"
            f"<Description>{_cdata(self.description)}</Description>"
            "</Video>"
        )

    def to_send_body(self) -> dict:
        video = {"media_id": self.media_id}
        if self.title:
            video["title"] = self.title
        if self.description:
            video["description"] = self.description
        return {"msgtype": "video", "video": video}


@dataclass
class Article:
    """One item of a news reply; the first one gets the large picture.

    ``appid``/``pagepath`` open a mini program and exist only in the pushed
    form (message/send); the passive XML has no place for them.
    """

    title: str
    description: str = ""
    url: str = ""
    pic_url: str = ""
    appid: str = ""
    pagepath: str = ""

    def _xml(self) -> str:
        return (
            "<item>"
            f"<Title>{_cdata(self.title)}</Title>"
            f"<Description>{_cdata(self.description)}</Description>"
            f"<PicUrl>{_cdata(self.pic_url)}</PicUrl>"
            f"<Url>{_cdata(self.url)}</Url>"
            "</item>"
        )

    def _send(self) -> dict:
        article = {"title": self.title, "description": self.description, "url": self.url,
                   "picurl": self.pic_url}
        if self.appid:
            article["appid"] = self.appid
        if self.pagepath:
            article["pagepath"] = self.pagepath
        return article


@dataclass
class NewsReply(Reply):
    """A list of 1 to 8 linked articles shown as cards."""

    articles: list[Article] = field(default_factory=list)
    msg_type: ClassVar[str] = "news"

    def __post_init__(self) -> None:
        self.articles = list(self.articles)
        if not self.articles:
            raise ValueError("a news reply needs at least one article")
        if len(self.articles) > NEWS_ARTICLE_LIMIT:
            raise TooManyArticles(
                f"a news reply holds at most {NEWS_ARTICLE_LIMIT} articles, "
                f"got {len(self.articles)}; send the rest in another reply"
            )
        for article in self.articles:
            if not isinstance(article, Article):
                raise TypeError(
                    f"news articles must be Article, not {type(article).__name__}"
                )

    def _xml_body(self) -> str:
        items = "".join(article._xml() for article in self.articles)
        return f"<ArticleCount>{len(self.articles)}</ArticleCount><Articles>{items}</Articles>"

    def to_send_body(self) -> dict:
        return {"msgtype": "news", "news": {"articles": [a._send() for a in self.articles]}}


# ---------------------------------------------------------------------------
# Template card updates: only as the answer to the clicking user's
# template_card_event, or later through message/update_template_card with the
# event's response_code.


class _CardUpdate(Reply):
    push_api: ClassVar[str] = "message/update_template_card"

    def to_send_body(self) -> dict:
        raise ReplyFormError(
            f"{type(self).__name__} updates an existing card and cannot go "
            "through message/send; use to_update_body(response_code, agent_id) "
            "with message/update_template_card"
        )

    def _update_part(self) -> dict:
        raise NotImplementedError

    def to_update_body(
        self,
        response_code: str,
        agent_id: int,
        userids: list[str] | None = None,
        atall: bool = False,
    ) -> dict:
        """The ``message/update_template_card`` body for a late update.

        ``response_code`` comes from the template_card_event (one use, 72 h).
        The passive form changes only the clicking user's card; to do the same
        later pass ``userids=[event.from_user]``. ``atall=True`` changes every
        recipient's card instead. One of the two is required.
        """
        if not userids and not atall:
            raise ValueError("say whose card to update: userids=[...] or atall=True")
        body: dict[str, Any] = {"agentid": int(agent_id), "response_code": response_code}
        if atall:
            body["atall"] = 1
        else:
            body["userids"] = list(userids or ())
        body.update(self._update_part())
        return body


@dataclass
class ButtonUpdateReply(_CardUpdate):
    """Turn the clicked card's buttons into one greyed-out button reading
    ``replace_name`` (passive ``update_button``), for the clicking user."""

    replace_name: str
    msg_type: ClassVar[str] = "update_button"

    def _xml_body(self) -> str:
        return f"<Button><ReplaceName>{_cdata(self.replace_name)}</ReplaceName></Button>"

    def _update_part(self) -> dict:
        return {"button": {"replace_name": self.replace_name}}


# JSON keys of template_card whose XML name is not the plain CamelCase form.
_CARD_XML_NAMES = {
    "keyname": "KeyName",
    "appid": "AppId",
    "pagepath": "PagePath",
    "userid": "UserId",
    "checkbox": "CheckBox",
    "id": "Id",
}


def _xml_name(key: str) -> str:
    name = _CARD_XML_NAMES.get(key)
    if name is None:
        name = "".join(part[:1].upper() + part[1:] for part in key.split("_"))
    return name


def _card_xml(data: dict) -> str:
    """Render a template_card dict (message/send JSON shape) as its XML form:
    snake_case keys become CamelCase elements, a list becomes the element
    repeated once per item."""
    out = []
    for key, value in data.items():
        if value is None:
            continue
        name = _xml_name(key)
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, dict):
                out.append(f"<{name}>{_card_xml(item)}</{name}>")
            else:
                out.append(_element(name, item))
    return "".join(out)


@dataclass
class TemplateCardUpdateReply(_CardUpdate):
    """Replace the clicked template card as a whole (passive
    ``update_template_card``).

    ``template_card`` has the same shape as in ``message/send``:
    ``{"card_type": "button_interaction", "main_title": {...},
    "button_list": [...], "replace_text": "Done", ...}``.
    """

    template_card: dict
    #: AI bot only: whose card to replace (default: the user who clicked).
    userids: list[str] | None = None
    msg_type: ClassVar[str] = "update_template_card"

    def __post_init__(self) -> None:
        if not isinstance(self.template_card, dict) or not self.template_card.get("card_type"):
            raise ValueError("template_card must be a dict with a card_type")

    def _xml_body(self) -> str:
        return f"<TemplateCard>{_card_xml(self.template_card)}</TemplateCard>"

    def to_aibot_json(self, task_id: str) -> dict:
        """The AI bot's answer to a template_card_event whose task is ``task_id``.

        WeCom replaces the card only when the card's ``task_id`` is the
        event's: a card without one gets it, a different one is refused.
        """
        card = dict(self.template_card)
        if card.setdefault("task_id", task_id) != task_id:
            raise ValueError(
                f"the updated card's task_id {card['task_id']!r} is not the clicked card's {task_id!r}"
            )
        body: dict[str, Any] = {"response_type": "update_template_card", "template_card": card}
        if self.userids:
            body["userids"] = list(self.userids)
        return body

    def _update_part(self) -> dict:
        return {"template_card": self.template_card}


# ---------------------------------------------------------------------------
# Helpers for the host


class ChunkedReply(Reply):
    """A reply a plugin writes as it goes: an iterator of ``str`` chunks.

    ``handle_message`` returns a generator (or any iterator, or an async
    iterator) and each chunk is appended to the text. The AI bot streams it;
    every other channel takes :meth:`joined`, the whole text at once.
    """

    msg_type: ClassVar[str] = "stream"

    def __init__(self, chunks: Any) -> None:
        self.chunks: Iterator[Any] = _sync_iterator(chunks)

    def __repr__(self) -> str:
        return f"ChunkedReply({self.chunks!r})"

    @property
    def fits_passive(self) -> bool:
        return False

    def pieces(self) -> Iterator[str]:
        """The chunks as the plugin writes them (``None`` skipped; anything but ``str`` is a TypeError)."""
        for chunk in self.chunks:
            if chunk is None:
                continue
            if not isinstance(chunk, str):
                raise TypeError(f"a streamed reply yields str chunks, not {type(chunk).__name__}")
            yield chunk

    def text(self) -> str:
        """Run the iterator to its end and return the whole text (``None`` chunks skipped)."""
        return "".join(self.pieces())

    def joined(self) -> TextReply | None:
        """The whole text as one :class:`TextReply` (``None`` when it is empty)."""
        text = self.text()
        return TextReply(text) if text else None

    def to_xml(self, to_user: str, from_user: str, create_time: int | None = None) -> str:
        raise ReplyFormError("a streamed reply has no passive XML; join it first (ChunkedReply.joined)")

    def to_send_body(self) -> dict:
        raise ReplyFormError("a streamed reply cannot go through message/send; join it first (ChunkedReply.joined)")


def _sync_iterator(chunks: Any) -> Iterator[Any]:
    """An iterator over ``chunks``: itself, or an async iterator driven by an event loop of its own."""
    if hasattr(chunks, "__anext__"):
        return _drive_async(chunks)
    return iter(chunks)


def _drive_async(chunks: Any) -> Iterator[Any]:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(chunks.__anext__())
            except StopAsyncIteration:
                return
    finally:
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            loop.run_until_complete(closing())
        loop.close()


def _is_iterator(value: object) -> bool:
    return hasattr(value, "__anext__") or (hasattr(value, "__next__") and hasattr(value, "__iter__"))


def as_reply(value: object) -> Reply | None:
    """Normalise what a plugin returned.

    None or an empty string → None (no answer: WeCom rejects empty text);
    any other ``str`` → :class:`TextReply`; a :class:`Reply` → itself; an
    iterator or async iterator (a generator of ``str`` chunks) →
    :class:`ChunkedReply`. Anything else raises ``TypeError`` naming the type.
    """
    if value is None:
        return None
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return TextReply(value) if value else None
    if _is_iterator(value):
        return ChunkedReply(value)
    raise TypeError(
        f"a plugin must return a Reply, a str, an iterator of str or None, not {type(value).__name__}"
    )


_SOFT_BREAKS = (" ", "\t", "。", "！", "？", "；", "，")


def split_text(content: str, limit: int = TEXT_PASSIVE_LIMIT) -> list[str]:
    """Cut ``content`` into parts of at most ``limit`` UTF-8 bytes each.

    Parts never split a character and ``"".join(parts) == content``. A part
    ends after the last line break that leaves it at least half full, else
    after the last space or CJK punctuation mark, else at the byte limit.
    An empty text gives no parts.
    """
    if limit < 4:
        raise ValueError("limit must be at least 4 bytes, the size of one character")
    parts: list[str] = []
    rest = content
    while _utf8_len(rest) > limit:
        # rest[:limit + 1] has more than `limit` bytes. Step back from the byte
        # limit over continuation bytes (0b10xxxxxx) to a character start.
        head = rest[: limit + 1].encode("utf-8", "surrogatepass")
        end = limit
        while head[end] & 0xC0 == 0x80:
            end -= 1
        cut = len(head[:end].decode("utf-8", "surrogatepass"))
        floor = cut // 2
        brk = rest.rfind("\n", floor, cut)
        if brk < 0:
            brk = max(rest.rfind(mark, floor, cut) for mark in _SOFT_BREAKS)
        if brk >= 0:
            cut = brk + 1
        parts.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        parts.append(rest)
    return parts



# The AI bot's and the group robot's replies live in their own module
# (bot_replies, which builds on the classes above) and are offered here too.
_BOT_REPLIES = frozenset({
    "BotReplyError", "GroupTextReply", "StreamImage", "StreamReply",
    "StreamWithTemplateCardReply", "TemplateCardReply", "cut_utf8",
})


def __getattr__(name: str) -> Any:
    if name in _BOT_REPLIES:
        from . import bot_replies

        return getattr(bot_replies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
