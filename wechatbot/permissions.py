"""Who may use a plugin or one of its commands, and how often.

Rules live in the plugin's own section; the host takes these keys and the
plugin never sees them::

    [plugin:weather]
    allow = zhangsan, department:2, tag:5       # nobody else (default: everyone)
    deny = wangwu                               # never these
    admins = lisi                               # always, and no rate limit
    rate_limit = 5/minute                       # per user
    chat_rate_limit = 30/hour                   # per chat (a group; the user in a 1:1 chat)
    refused_reply = 天气查询仅限销售部使用
    forecast.allow = tag:7                      # one command: COMMAND.allow/deny/rate_limit/chat_rate_limit

``[wechatbot] admins`` are admins of every plugin. Department and tag
membership is looked up through the endpoint's WeCom API (``user/get``,
``tag/get``) and cached in the store for ``[wechatbot] membership_ttl``
seconds; a lookup that fails refuses (a permission never opens by accident).
A user refused gets the refused reply; a user over a limit the limited reply.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .config import (COMMAND_RULE_KEYS, DEFAULT_LIMITED_REPLY, DEFAULT_MEMBERSHIP_TTL, DEFAULT_REFUSED_REPLY,
                     ConfigError, split_list)
from .store import PREFIXES

if TYPE_CHECKING:
    from .api import WeComAPI
    from .store import Store

log = logging.getLogger("wechatbot.permissions")

_UNITS = {"second": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}


@dataclass(frozen=True)
class Rate:
    """At most ``count`` uses per ``seconds`` (a fixed window)."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str, where: str) -> Rate:
        """``5/minute``, ``100/day``, ``3/10s``; a ConfigError naming ``where`` otherwise."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*", text.lower())
        unit = match and (_UNITS.get(match.group(3)) or _UNITS.get(match.group(3).rstrip("s")))
        if not match or not unit or int(match.group(1)) < 1:
            raise ConfigError(f"{where} = {text!r}: write COUNT/PERIOD, e.g. 5/minute, 100/day or 3/10s")
        return cls(int(match.group(1)), float(match.group(2) or 1) * unit)


@dataclass(frozen=True)
class Who:
    """A list of people: user ids, ``department:ID``, ``tag:ID`` or ``*`` (everyone)."""

    users: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    everyone: bool = False

    @classmethod
    def parse(cls, text: str, where: str) -> Who:
        users, departments, tags, everyone = set(), set(), set(), False
        for entry in split_list(text):
            kind, colon, value = entry.partition(":")
            if entry == "*":
                everyone = True
            elif not colon:
                users.add(entry)
            elif kind in ("user", "department", "dept", "tag") and value:
                {"user": users, "department": departments, "dept": departments, "tag": tags}[kind].add(value)
            else:
                raise ConfigError(f"{where}: {entry!r} is not a user id, department:ID, tag:ID or *")
        return cls(frozenset(users), frozenset(departments), frozenset(tags), everyone)

    def __bool__(self) -> bool:
        return bool(self.users or self.departments or self.tags or self.everyone)

    def has(self, user: str, directory: Directory | None) -> bool:
        """Whether ``user`` is on the list (departments and tags through ``directory``)."""
        if self.everyone or user in self.users:
            return True
        if not (self.departments or self.tags):
            return False
        if directory is None:
            raise LookupError("department and tag rules need the WeCom API (secret) on this endpoint")
        departments = directory.departments(user)
        if self.departments & departments:
            return True
        for tag in self.tags:
            users, parties = directory.tag(tag)
            if user in users or departments & parties:
                return True
        return False


@dataclass(frozen=True)
class Policy:
    """The rules of one plugin or one command."""

    allow: Who = field(default_factory=Who)
    deny: Who = field(default_factory=Who)
    rate: Rate | None = None
    chat_rate: Rate | None = None

    @classmethod
    def parse(cls, section: Mapping[str, str], where: str, prefix: str = "") -> Policy:
        def get(key: str) -> str:
            return section.get(prefix + key, "")

        return cls(
            Who.parse(get("allow"), f"{where} {prefix}allow"),
            Who.parse(get("deny"), f"{where} {prefix}deny"),
            Rate.parse(get("rate_limit"), f"{where} {prefix}rate_limit") if get("rate_limit").strip() else None,
            Rate.parse(get("chat_rate_limit"), f"{where} {prefix}chat_rate_limit") if get("chat_rate_limit").strip() else None,
        )


class Directory:
    """Department and tag membership from the WeCom API, cached in the store."""

    def __init__(self, api: Callable[[], WeComAPI], store: Store, corp_id: str, ttl: float = DEFAULT_MEMBERSHIP_TTL) -> None:
        self.api = api
        self.store = store
        self.ttl = ttl
        self.prefix = f"{PREFIXES['member']}{corp_id}:"

    def _cached(self, key: str, fetch: Callable[[], Any]) -> Any:
        raw = self.store.get(self.prefix + key)
        if raw is not None:
            return json.loads(raw)
        value = fetch()
        self.store.set(self.prefix + key, json.dumps(value), self.ttl)
        return value

    def departments(self, user: str) -> set[str]:
        """The ids of the departments ``user`` belongs to (``user/get``)."""
        found = self._cached(f"user:{user}", lambda: [str(d) for d in self.api().get("user/get", userid=user).get("department", [])])
        return set(found)

    def tag(self, tag: str) -> tuple[set[str], set[str]]:
        """The user ids and department ids a tag holds (``tag/get``)."""
        def fetch() -> dict:
            answer = self.api().get("tag/get", tagid=tag)
            return {"users": [u.get("userid") for u in answer.get("userlist", [])],
                    "parties": [str(p) for p in answer.get("partylist", [])]}

        found = self._cached(f"tag:{tag}", fetch)
        return set(found["users"]), set(found["parties"])


@dataclass(frozen=True)
class Verdict:
    """Why a use was refused: ``reply`` is what the user is told."""

    reason: str
    reply: str


class Permissions:
    """The rules of every plugin on one endpoint, checked before a plugin or command runs."""

    def __init__(self, sections: Mapping[str, Mapping[str, str]], store: Store, endpoint: str, *,
                 admins: Iterable[str] = (), directory: Directory | None = None,
                 refused_reply: str = DEFAULT_REFUSED_REPLY, limited_reply: str = DEFAULT_LIMITED_REPLY,
                 commands: Mapping[str, Iterable[str]] | None = None) -> None:
        self.store = store
        self.endpoint = endpoint
        self.directory = directory
        self.admins = Who.parse(", ".join(admins), "[wechatbot] admins")
        self.plugin_admins: dict[str, Who] = {}
        self.policies: dict[tuple[str, str], Policy] = {}
        self.replies: dict[str, tuple[str, str]] = {}
        for plugin, section in sections.items():
            where = f"[plugin:{plugin}]"
            self.plugin_admins[plugin] = Who.parse(section.get("admins", ""), f"{where} admins")
            self.policies[(plugin, "")] = Policy.parse(section, where)
            self.replies[plugin] = (section.get("refused_reply", "").strip() or refused_reply,
                                    section.get("limited_reply", "").strip() or limited_reply)
            declared = set((commands or {}).get(plugin, ()))
            for key in section:
                name, dot, rule = key.rpartition(".")
                if dot and name and rule in COMMAND_RULE_KEYS:
                    if commands is not None and name not in declared:
                        raise ConfigError(f"{where} {key}: plugin {plugin!r} has no command {name!r}")
                    self.policies[(plugin, name)] = Policy.parse(section, where, f"{name}.")
        self.default_replies = (refused_reply, limited_reply)

    def governs(self, plugin: str) -> bool:
        """Whether any rule applies to ``plugin`` (else checking it costs nothing)."""
        return any(key[0] == plugin and (p.allow or p.deny or p.rate or p.chat_rate) for key, p in self.policies.items())

    def _is_admin(self, plugin: str, user: str) -> bool:
        return self.admins.has(user, None) or self.plugin_admins.get(plugin, Who()).has(user, None)

    def check(self, plugin: str, message: Any, command: str = "", count: bool = True) -> Verdict | None:
        """None when ``message``'s sender may use ``plugin`` (and ``command``) now; else why not.

        With ``count``, an allowed use counts against the rate limits (and
        one over them is refused); without, only the lists are checked.
        """
        user = message.from_user
        if self._is_admin(plugin, user):
            return None
        refused, limited = self.replies.get(plugin, self.default_replies)
        policies = [(scope, self.policies[(plugin, scope)]) for scope in dict.fromkeys(("", command))
                    if (plugin, scope) in self.policies]
        for scope, policy in policies:
            try:
                if policy.deny and policy.deny.has(user, self.directory):
                    return Verdict(f"{user} is denied {plugin} {scope}".strip(), refused)
                if policy.allow and not policy.allow.has(user, self.directory):
                    return Verdict(f"{user} is not allowed {plugin} {scope}".strip(), refused)
            except Exception as exc:
                log.warning("[%s] cannot check %s for plugin %s (refused): %s", self.endpoint, user, plugin, exc)
                return Verdict(f"membership lookup failed: {exc}", refused)
        for scope, policy in policies if count else ():
            chat = getattr(message, "chat_id", None) or f"@{user}"
            for rate, who in ((policy.rate, f"user:{user}"), (policy.chat_rate, f"chat:{chat}")):
                if rate is not None and not self._within(rate, f"{plugin}.{scope}:{who}"):
                    return Verdict(f"{who} over {rate.count} per {rate.seconds:g} s for {plugin} {scope}".strip(), limited)
        return None

    def _within(self, rate: Rate, scope: str) -> bool:
        window = math.floor(time.time() / rate.seconds)
        key = f"{PREFIXES['rate']}{self.endpoint}:{scope}:{window}"
        return self.store.incr(key, 1, rate.seconds + 1) <= rate.count
