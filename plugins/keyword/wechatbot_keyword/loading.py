"""Reading the rules: the ``[plugin:keyword]`` section and the rules file it points at.

Every problem becomes a :class:`KeywordConfigError` naming the rule (its INI
key, or its ``name`` in the rules file), raised at start-up.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from .matchers import TEXT_KINDS, event_matcher, text_matcher
from .problems import BadRule, KeywordConfigError
from .reply_specs import reply_template, text_value
from .rules import Rule, Rulebook
from .template import MESSAGE_FIELDS

#: Keys of ``[plugin:keyword]`` that are settings, not rules.
OPTIONS = ("ignore_case", "rules_file")
#: Words that start a rule key (``contains 发票``); a key without one is an exact rule.
KINDS = TEXT_KINDS + ("event",)

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_RULE_FIELDS = ("name", "match", "event", "reply", "ignore_case")
_INI_CUT = ("an INI key ends at the first ':' or '=', so a pattern holding either "
            "belongs in the rules file")


def load_rulebook(section: Mapping[str, str], base_dir: Path) -> Rulebook:
    """All rules of the section in order; the rules file's rules stand where ``rules_file`` is.

    ``base_dir`` is where a relative ``rules_file`` path is looked up.
    """
    ignore_case = _flag(section.get("ignore_case", "false"))
    rules: list[Rule] = []
    for key, value in section.items():
        if key == "ignore_case":
            continue
        if key == "rules_file":
            rules.extend(read_rules_file(value, base_dir, ignore_case))
            continue
        try:
            rules.append(ini_rule(key, value, ignore_case))
        except BadRule as exc:
            raise KeywordConfigError.for_rule(key, exc) from None
    return Rulebook(rules)


def _flag(value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise KeywordConfigError.for_option("ignore_case", f"must be true or false, got {value!r}")


def _rule(name: str, matcher: Any, reply: object) -> Rule:
    known = MESSAGE_FIELDS + tuple(sorted(matcher.placeholders))
    return Rule(name, matcher, reply_template(reply, known))


def ini_rule(key: str, value: str, ignore_case: bool) -> Rule:
    """One rule from an INI line ``KEY = TEXT``; raises :class:`BadRule`.

    ``hello`` is an exact rule; ``contains 发票``, ``prefix 天气``, ``regex …``,
    ``exact …`` and ``event NAME [KEY]`` name their kind in the first word.
    """
    words = key.split(None, 1)
    if words[0] in KINDS and len(words) == 1:
        example = "event click MENU_HELP" if key == "event" else f"{key} 发票"
        raise BadRule(f"{key!r} needs a pattern after a space, as in '{example} = …'; {_INI_CUT}")
    kind, pattern = words if words[0] in KINDS else ("exact", key)
    if kind == "event":
        name, *event_key = pattern.split(None, 1)
        matcher: Any = event_matcher(name, event_key[0] if event_key else None)
    else:
        try:
            matcher = text_matcher(kind, pattern, ignore_case)
        except BadRule as exc:
            raise BadRule(f"{exc} ({_INI_CUT})" if kind == "regex" else exc) from None
    text = value.strip()
    if not text:
        raise BadRule("the reply text is empty")
    return _rule(key, matcher, text)


def read_rules_file(value: str, base_dir: Path, ignore_case: bool) -> list[Rule]:
    """The rules of a YAML or JSON rules file (``.json`` is read as JSON, anything else as YAML)."""
    if not value.strip():
        raise KeywordConfigError.for_option("rules_file", "is empty: give the path of a YAML or JSON file")
    path = Path(value.strip()).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeywordConfigError.for_option("rules_file", f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeywordConfigError.for_option("rules_file", f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise KeywordConfigError.for_option("rules_file", f"{path} is not valid {kind}: {exc}") from None
    if data is None:
        data = []
    if not isinstance(data, list):
        raise KeywordConfigError.for_option("rules_file", f"{path} must hold a list of rules, not a {type(data).__name__}")
    rules = []
    for number, item in enumerate(data, 1):
        name = f"{path.name} #{number}"
        try:
            if not isinstance(item, Mapping):
                raise BadRule(f"a rule must be a mapping with match or event, and reply; got {item!r}")
            if "name" in item:
                name = text_value(item["name"], "name")
            rules.append(file_rule(name, item, ignore_case))
        except BadRule as exc:
            raise KeywordConfigError.for_rule(name, exc) from None
    return rules


def file_rule(name: str, item: Mapping[str, Any], ignore_case: bool) -> Rule:
    """One rule from the rules file; raises :class:`BadRule`."""
    for field in item:
        if field not in _RULE_FIELDS:
            raise BadRule(f"unknown field {field!r} (known: {', '.join(_RULE_FIELDS)})")
    if ("match" in item) == ("event" in item):
        raise BadRule("give either match (a text rule) or event (an event rule)")
    if "reply" not in item:
        raise BadRule("no reply")
    if "ignore_case" in item:
        ignore_case = item["ignore_case"]
        if not isinstance(ignore_case, bool):
            raise BadRule(f"ignore_case must be true or false, got {ignore_case!r}")
    matcher = _file_event(item["event"]) if "event" in item else _file_match(item["match"], ignore_case)
    return _rule(name, matcher, item["reply"])


def _file_match(spec: object, ignore_case: bool) -> Any:
    if not isinstance(spec, Mapping):
        raise BadRule(f"match must be a mapping {{kind: …, pattern: …}}, got {spec!r}")
    for field in spec:
        if field not in ("kind", "pattern"):
            raise BadRule(f"unknown field {field!r} in match (known: kind, pattern)")
    if "pattern" not in spec:
        raise BadRule("match needs a pattern")
    kind = spec.get("kind", "exact")
    if kind not in TEXT_KINDS:
        raise BadRule(f"unknown match kind {kind!r} (known: {', '.join(TEXT_KINDS)})")
    return text_matcher(kind, text_value(spec["pattern"], "pattern"), ignore_case)


def _file_event(spec: object) -> Any:
    if isinstance(spec, str):
        return event_matcher(spec)
    if not isinstance(spec, Mapping):
        raise BadRule(f"event must be an event name or a mapping {{name: …, key: …}}, got {spec!r}")
    for field in spec:
        if field not in ("name", "key"):
            raise BadRule(f"unknown field {field!r} in event (known: name, key)")
    if "name" not in spec:
        raise BadRule("event needs a name")
    key = text_value(spec["key"], "event key") if "key" in spec else None
    return event_matcher(text_value(spec["name"], "event name"), key)
