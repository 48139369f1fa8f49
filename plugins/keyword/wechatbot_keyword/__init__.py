"""Answer keywords, patterns and events (menu clicks, entering the app) with configured replies.

Rules live in ``[plugin:keyword]``, one per line, ``KEY = REPLY TEXT``::

    [plugin:keyword]
    ignore_case = true
    hello = 你好
    contains 发票 = 开发票请找财务部 {from_user}
    prefix 天气 = 天气查询在菜单「工具」里
    regex ^订单(?P<no>\\d+)$ = 订单 {no} 已收到
    event click MENU_HELP = 发送「帮助」查看全部指令
    event enter_agent = 欢迎回来，{from_user}
    rules_file = keyword-rules.yaml

- A key is a text to match exactly, or a kind and a pattern separated by a
  space: ``exact``, ``contains``, ``prefix``, ``regex`` (searched, so anchor
  it with ``^…$``) or ``event NAME [EVENTKEY]``. Kinds are lower case;
  ``exact contains x`` matches the text "contains x". INI ends a key at the
  first ``:`` or ``=``: patterns holding either go in the rules file.
- The message text is compared without surrounding whitespace;
  ``ignore_case = true`` compares texts case-insensitively (event keys are
  always compared exactly). The first matching rule wins, in file order.
- The reply text may span indented lines and holds placeholders:
  ``{from_user}``, ``{to_user}``, ``{content}``, ``{event_key}``,
  ``{agent_id}`` and a regex's named groups; ``{{`` and ``}}`` are literal
  braces.
- ``rules_file`` (YAML, or JSON when it ends in ``.json``; a relative path is
  taken from the working directory) holds a list of rules that stand where
  the ``rules_file`` line is, and may answer with any reply type::

      - name: menu-help
        event: {name: click, key: MENU_HELP}
        reply: {type: news, articles: [{title: 帮助, url: "https://example.com/help"}]}
      - name: logo
        match: {kind: contains, pattern: logo}
        ignore_case: true
        reply: {type: image, media_id: MEDIA_ID}

  Reply types: a plain text, or ``type`` ``text``/``markdown`` (content),
  ``image``/``voice`` (media_id), ``video`` (media_id, title, description),
  ``news`` (articles of title, description, url, pic_url).

Every rule is checked and compiled in ``startup``: a bad regular expression,
an unknown reply type or placeholder, or a missing rules file stops the host
with an error naming the rule. A message no rule matches goes on to the next
plugin. ``README.md`` has the full reference.
"""
from __future__ import annotations

from pathlib import Path

from wechatbot import Event, Message, PluginContext, Reply, TextMessage, hookimpl

from .loading import load_rulebook
from .problems import KeywordConfigError
from .rules import Rule, Rulebook

# Matching rules (or queueing a download) never blocks: run on the request thread.
wechatbot_inline = True

__all__ = ["KeywordConfigError", "startup", "handle_message", "handle_event"]

# One compiled rulebook per app: a PluginContext is the same object for the
# life of the host and hashable, so it keys the cache. The rules are compiled
# patterns (not data for the shared store), read again by every worker's startup.
_rulebooks: dict[PluginContext, Rulebook] = {}


def _rulebook(context: PluginContext) -> Rulebook:
    try:
        return _rulebooks[context]
    except KeyError:
        raise RuntimeError(f"keyword rules for app {context.app_name!r} were never loaded: startup did not run") from None


@hookimpl
def startup(context: PluginContext) -> None:
    """Read, check and compile this app's rules; any broken rule stops start-up."""
    rulebook = load_rulebook(context.config, Path.cwd())
    _rulebooks[context] = rulebook
    context.log.info("%d keyword rules (%d for events)", len(rulebook), len(rulebook.event_rules))


def _answer(found: tuple[Rule, Reply] | None, message: Message, context: PluginContext) -> Reply | None:
    if found is None:
        return None
    rule, reply = found
    context.log.debug("rule %r answers %s", rule.name, message.from_user)
    return reply


@hookimpl
def handle_message(message: Message, context: PluginContext) -> Reply | None:
    """Answer a text message with the first text rule that matches it."""
    if not isinstance(message, TextMessage):
        return None
    return _answer(_rulebook(context).find_text(message), message, context)


@hookimpl
def handle_event(event: Event, context: PluginContext) -> Reply | None:
    """Answer an event with the first event rule that matches it."""
    return _answer(_rulebook(context).find_event(event), event, context)
