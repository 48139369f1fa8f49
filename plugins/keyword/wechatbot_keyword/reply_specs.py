"""What a rule answers: a reply description from the config, checked and
turned into a ready-to-fill :class:`ReplyTemplate` when the rules load.

A description is a text (a text reply) or a mapping with a ``type``:
``text``/``markdown`` (``content``), ``image``/``voice`` (``media_id``),
``video`` (``media_id``, ``title``, ``description``) or ``news``
(``articles``: 1 to 8 of ``title``, ``description``, ``url``, ``pic_url``,
``appid``, ``pagepath``). Every text except media ids and ``appid`` may hold
placeholders.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping

from wechatbot import Article, ImageReply, MarkdownReply, NewsReply, Reply, TextReply, VideoReply, VoiceReply
from wechatbot.wecom.replies import NEWS_ARTICLE_LIMIT

from .problems import BadRule
from .template import Template, compile_template


@dataclass(frozen=True)
class _Shape:
    """One reply type: its class, required and optional fields, which of them are templates."""

    build: Callable[..., Reply]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    templated: frozenset[str] = frozenset()


_SHAPES: dict[str, _Shape] = {
    "text": _Shape(TextReply, ("content",), templated=frozenset({"content"})),
    "markdown": _Shape(MarkdownReply, ("content",), templated=frozenset({"content"})),
    "image": _Shape(ImageReply, ("media_id",)),
    "voice": _Shape(VoiceReply, ("media_id",)),
    "video": _Shape(VideoReply, ("media_id",), ("title", "description"), frozenset({"title", "description"})),
    "news": _Shape(NewsReply, ("articles",)),
}
_ARTICLE = _Shape(Article, ("title",), ("description", "url", "pic_url", "appid", "pagepath"),
                  frozenset({"title", "description", "url", "pic_url", "pagepath"}))

Fields = Mapping[str, "Template | str"]


@dataclass(frozen=True)
class ReplyTemplate:
    """A reply whose texts are filled from a message when a rule matches."""

    shape: _Shape
    fields: Fields
    articles: tuple[Fields, ...] = ()

    def render(self, values: Mapping[str, str]) -> Reply:
        """The reply for one message, placeholders filled from ``values``."""
        kwargs: dict[str, Any] = _fill(self.fields, values)
        if self.shape.build is NewsReply:
            kwargs["articles"] = [Article(**_fill(article, values)) for article in self.articles]
        return self.shape.build(**kwargs)


def _fill(fields: Fields, values: Mapping[str, str]) -> dict[str, str]:
    return {name: v.render(values) if isinstance(v, Template) else v for name, v in fields.items()}


def text_value(value: object, what: str) -> str:
    """``value`` as text: YAML and JSON give numbers for ids like ``1001``, which are meant as text."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRule(f"{what} must be text, got {type(value).__name__} {value!r}")
    return str(value)


def _fields(shape: _Shape, spec: Mapping[str, Any], what: str, known: Collection[str]) -> dict[str, Template | str]:
    allowed = set(shape.required) | set(shape.optional)
    for name in spec:
        if name not in allowed:
            raise BadRule(f"unknown field {name!r} in {what} (known: {', '.join(shape.required + shape.optional)})")
    fields: dict[str, Template | str] = {}
    for name in shape.required + shape.optional:
        if name not in spec:
            if name in shape.required:
                raise BadRule(f"{what} needs {name!r}")
            continue
        if name == "articles":
            continue
        value = text_value(spec[name], f"{name!r} of {what}")
        if name in shape.required and not value.strip():
            raise BadRule(f"{name!r} of {what} is empty")
        fields[name] = compile_template(value, known) if name in shape.templated else value
    return fields


def reply_template(spec: object, known: Collection[str]) -> ReplyTemplate:
    """Check a reply description and compile its templates; raises :class:`BadRule`.

    ``known`` are the placeholder names the rule's messages can fill.
    """
    if isinstance(spec, str):
        spec = {"type": "text", "content": spec}
    if not isinstance(spec, Mapping):
        raise BadRule(f"reply must be a text or a mapping with a type, got {type(spec).__name__}")
    kind = spec.get("type", "text")
    shape = _SHAPES.get(kind) if isinstance(kind, str) else None
    if shape is None:
        raise BadRule(f"unknown reply type {kind!r} (known: {', '.join(_SHAPES)})")
    body = {name: value for name, value in spec.items() if name != "type"}
    fields = _fields(shape, body, f"the {kind} reply", known)
    articles: tuple[Fields, ...] = ()
    if kind == "news":
        items = body["articles"]
        if not isinstance(items, list) or not items:
            raise BadRule("'articles' of the news reply must be a list of 1 to 8 articles")
        if len(items) > NEWS_ARTICLE_LIMIT:
            raise BadRule(f"a news reply holds at most {NEWS_ARTICLE_LIMIT} articles, got {len(items)}")
        for number, item in enumerate(items, 1):
            if not isinstance(item, Mapping):
                raise BadRule(f"article {number} of the news reply must be a mapping with a title")
        articles = tuple(_fields(_ARTICLE, item, f"article {n} of the news reply", known) for n, item in enumerate(items, 1))
    return ReplyTemplate(shape, fields, articles)
