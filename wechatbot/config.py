"""The configuration: one INI file plus environment overrides, validated up front.

Every mistake a user can make in the file (a missing key, a number that is not
a number, a key we do not know) becomes a :class:`ConfigError` that names the
section and key, at start-up, instead of a failure on the first callback.
"""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import WechatbotError
from .redact import remember_secret

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
DEFAULT_STORE = "sqlite:///var/wechatbot.db"
DEFAULT_CONFIG_FILE = "config.ini"
#: ``[wechatbot] log_format``: lines for people, or one JSON object per line for log shippers.
LOG_FORMATS = ("text", "json")
DEFAULT_LOG_FORMAT = "text"

ENDPOINT_KEYS = {
    "type", "corp_id", "token", "encoding_aes_key", "agent_id", "secret", "api_base",
    "receive_id", "plugins", "mode", "bot_id", "ws_url",
}
HOST_KEYS = {
    "callback_path", "plugins", "disabled", "plugins_dir", "store", "max_body",
    "reply_deadline", "replay_window", "queue", "deferred_workers", "deferred_queue", "job_lease", "push_retry_for",
    "stream_placeholder", "stream_window", "log_format",
    "stream_placeholder", "stream_window",
    "command_prefix", "ask_timeout", "cancel_words", "cancel_reply", "admins", "refused_reply", "limited_reply",
    "membership_ttl",
}
# Commands, conversations and permissions (docs/commands.md, conversations.md, permissions.md).
DEFAULT_ASK_TIMEOUT = 300.0
DEFAULT_CANCEL_WORDS = ("cancel", "取消")
DEFAULT_CANCEL_REPLY = "Cancelled."
DEFAULT_REFUSED_REPLY = "Sorry, you are not allowed to use this."
DEFAULT_LIMITED_REPLY = "Too many requests; please try again later."
DEFAULT_MEMBERSHIP_TTL = 600.0
#: The host's keys in a ``[plugin:NAME]`` section (``wechatbot.permissions``); the plugin never sees them.
RULE_KEYS = ("allow", "deny", "admins", "rate_limit", "chat_rate_limit", "refused_reply", "limited_reply")
COMMAND_RULE_KEYS = ("allow", "deny", "rate_limit", "chat_rate_limit")

REQUIRED_APP_KEYS = ("corp_id", "token", "encoding_aes_key")
#: What a ``[wecom]`` section can be: a self-built app, an AI bot (智能机器人) or a group robot (群机器人).
ENDPOINT_TYPES = ("app", "aibot", "group_robot")
#: The bots need only these: their receive id is empty and they have no corp id or secret.
REQUIRED_BOT_KEYS = ("token", "encoding_aes_key")
#: WeCom polls a stream for at most 6 minutes from the user's message (D:100719).
DEFAULT_STREAM_WINDOW = 360.0
DEFAULT_STREAM_PLACEHOLDER = "…"
#: How an AI bot reaches the host: WeCom's HTTPS callbacks, or one outgoing WebSocket (长连接, D:101463).
MODES = ("callback", "websocket")
DEFAULT_WS_URL = "wss://openws.work.weixin.qq.com"
#: A ``mode = websocket`` AI bot needs only these: no callback URL, no token, no EncodingAESKey.
REQUIRED_WEBSOCKET_KEYS = ("bot_id", "secret")


class ConfigError(WechatbotError, ValueError):
    """A configuration problem, with a message that names the key to fix."""


@dataclass(frozen=True)
class EndpointConfig:
    """One WeCom endpoint (``[wecom]`` or ``[wecom:NAME]``) served by this host.

    ``type`` names its channel: ``app`` for a self-built app (自建应用).
    """

    name: str
    corp_id: str
    token: str
    encoding_aes_key: str
    agent_id: str = ""
    secret: str = ""
    api_base: str = DEFAULT_API_BASE
    receive_id: str = ""
    plugins: list[str] | None = None
    path: str = "/callback"
    type: str = "app"
    #: ``callback`` (WeCom POSTs to the host) or ``websocket`` (the host connects to ``ws_url``; AI bots only).
    mode: str = "callback"
    bot_id: str = ""
    ws_url: str = DEFAULT_WS_URL

    @property
    def is_websocket(self) -> bool:
        """Whether WeCom's frames arrive over the AI bot's long connection instead of callbacks."""
        return self.mode == "websocket"

    @property
    def is_bot(self) -> bool:
        """Whether this is an AI bot or a group robot (no corp id, no secret, empty receive id)."""
        return self.type != "app"

    @property
    def section(self) -> str:
        """The INI section this endpoint came from, for error messages."""
        return f"wecom:{self.name}" if self.name else "wecom"

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return (f"EndpointConfig(name={self.name!r}, type={self.type!r}, corp_id={self.corp_id!r}, "
                f"agent_id={self.agent_id!r}, path={self.path!r}, mode={self.mode!r}, bot_id={self.bot_id!r})")


# The name the API client and older plugins know it by.
AppConfig = EndpointConfig


@dataclass(frozen=True)
class Config:
    """The whole host configuration."""

    endpoints: dict[str, EndpointConfig]
    callback_path: str = "/callback"
    plugins: list[str] = field(default_factory=lambda: ["*"])
    plugins_from_env: bool = False
    disabled: list[str] = field(default_factory=list)
    plugins_dir: str | None = None
    store: str = DEFAULT_STORE
    max_body: int = 1024 * 1024
    reply_deadline: float = 4.0
    replay_window: float = 300.0
    queue: str | None = None
    deferred_workers: int = 16
    deferred_queue: int = 1000
    job_lease: float = 10.0
    push_retry_for: float = 600.0
    stream_placeholder: str = DEFAULT_STREAM_PLACEHOLDER
    stream_window: float = DEFAULT_STREAM_WINDOW
    log_format: str = DEFAULT_LOG_FORMAT
    command_prefix: str = ""
    ask_timeout: float = DEFAULT_ASK_TIMEOUT
    cancel_words: tuple[str, ...] = DEFAULT_CANCEL_WORDS
    cancel_reply: str = DEFAULT_CANCEL_REPLY
    admins: tuple[str, ...] = ()
    refused_reply: str = DEFAULT_REFUSED_REPLY
    limited_reply: str = DEFAULT_LIMITED_REPLY
    membership_ttl: float = DEFAULT_MEMBERSHIP_TTL
    plugin_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    schedule_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str | None = None

    def endpoint(self, name: str = "") -> EndpointConfig:
        """The endpoint called ``name`` (``""`` is ``[wecom]``), or a ConfigError."""
        try:
            return self.endpoints[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self.endpoints) or "none"
            raise ConfigError(f"no endpoint [wecom:{name}] in the config (endpoints: {known})") from None

    def plugin_config(self, name: str) -> dict[str, str]:
        """The ``[plugin:NAME]`` section as plain data (empty when absent), without the host's rule keys.

        ``allow``, ``deny``, ``admins``, ``rate_limit`` … are the host's
        (``wechatbot.permissions``); the plugin gets everything else.
        """
        return plugin_settings(self.plugin_settings.get(name, {}))


def is_rule_key(key: str) -> bool:
    """Whether a ``[plugin:NAME]`` key is the host's (a rule) rather than the plugin's own setting."""
    if key in RULE_KEYS:
        return True
    command, dot, rule = key.rpartition(".")
    return bool(dot and command) and rule in COMMAND_RULE_KEYS


def plugin_settings(section: Mapping[str, str]) -> dict[str, str]:
    """A plugin's section without the host's rule keys: what the plugin gets as ``context.config``."""
    return {key: value for key, value in section.items() if not is_rule_key(key)}


def split_list(value: str) -> list[str]:
    """Split a comma- or newline-separated list, dropping blanks."""
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


def read_ini(path: str | os.PathLike[str]) -> configparser.ConfigParser:
    """Read an INI file keeping keys' case and taking ``%`` literally."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except configparser.Error as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from None
    return parser


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """Map ``WECHATBOT_<SECTION>__<KEY>`` variables to (section, key).

    ``WECHATBOT_WECOM__TOKEN`` is ``[wecom] token``; ``WECHATBOT_WECOM_HR__SECRET``
    is ``[wecom:hr] secret``; ``WECHATBOT_WECHATBOT__STORE`` is ``[wechatbot] store``.
    """
    overrides = {}
    for name, value in environ.items():
        if not name.startswith("WECHATBOT_") or "__" not in name:
            continue
        section, key = name[len("WECHATBOT_"):].split("__", 1)
        section = section.lower()
        if section.startswith("wecom_"):
            section = "wecom:" + section[len("wecom_"):]
        elif section.startswith("plugin_"):
            section = "plugin:" + section[len("plugin_"):]
        overrides[(section, key.lower())] = value
    return overrides


def parse_number(label: str, raw: str, kind: type) -> float | int:
    """``raw`` as a ``kind`` of at least 0; else a ``ConfigError`` naming ``label`` (``[section] key``, ``$NAME``)."""
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{label} must be a {kind.__name__}, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{label} must not be negative, got {raw!r}")
    return value


def _number(section: str, key: str, raw: str, kind: type) -> float | int:
    return parse_number(f"[{section}] {key}", raw, kind)


def _command_prefix(raw: str) -> str:
    prefix = raw.strip()
    if len(prefix) > 3:
        raise ConfigError(f"[wechatbot] command_prefix = {raw!r}: use nothing (plain words) or a short mark such as /")
    return prefix


def _check_keys(section: str, values: Mapping[str, str], allowed: set[str]) -> None:
    for key in values:
        if key not in allowed:
            raise ConfigError(f"unknown key [{section}] {key} (known: {', '.join(sorted(allowed))})")


def _endpoint(name: str, values: Mapping[str, str], callback_path: str, own_plugins: bool) -> EndpointConfig:
    section = f"wecom:{name}" if name else "wecom"
    _check_keys(section, values, ENDPOINT_KEYS)
    kind = values.get("type", "").strip() or "app"
    if kind not in ENDPOINT_TYPES:
        raise ConfigError(f"[{section}] type must be one of {', '.join(ENDPOINT_TYPES)}, got {kind!r}")
    mode = values.get("mode", "").strip() or "callback"
    if mode not in MODES:
        raise ConfigError(f"[{section}] mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "websocket":
        return _websocket_endpoint(name, section, kind, values, callback_path, own_plugins)
    _required(section, values, REQUIRED_APP_KEYS if kind == "app" else REQUIRED_BOT_KEYS)
    key = values["encoding_aes_key"].strip()
    wrong = next((i for i, ch in enumerate(key) if not (ch.isascii() and ch.isalnum())), None)
    if len(key) != 43 or wrong is not None:
        what = (f"character {wrong + 1} is {key[wrong]!r}, which is not a letter or digit" if wrong is not None
                else f"got {len(key)} characters")
        raise ConfigError(
            f"[{section}] encoding_aes_key must be the 43 letters and digits shown on the app's "
            f"admin page ({what}): copy it again from 接收消息 → EncodingAESKey"
        )
    for secret_key in ("token", "encoding_aes_key", "secret"):
        remember_secret(values.get(secret_key, "").strip())
    plugins = split_list(values["plugins"]) if own_plugins and "plugins" in values else None
    corp_id = values.get("corp_id", "").strip()
    # The bots seal their callbacks with an empty receive id (D:101033, D:99399).
    default_receive_id = corp_id if kind == "app" else ""
    return EndpointConfig(
        name=name,
        corp_id=corp_id,
        token=values["token"].strip(),
        encoding_aes_key=key,
        agent_id=values.get("agent_id", "").strip(),
        secret=values.get("secret", "").strip(),
        api_base=values.get("api_base", "").strip().rstrip("/") or DEFAULT_API_BASE,
        receive_id=values["receive_id"].strip() if "receive_id" in values else default_receive_id,
        plugins=plugins,
        path=callback_path + (f"/{name}" if name else ""),
        type=kind,
    )


def _required(section: str, values: Mapping[str, str], keys: tuple[str, ...]) -> None:
    for key in keys:
        if not values.get(key, "").strip():
            env = "WECHATBOT_" + section.upper().replace(":", "_") + "__" + key.upper()
            raise ConfigError(f"[{section}] {key} is missing (set it in the config file or in {env})")


def _websocket_endpoint(name: str, section: str, kind: str, values: Mapping[str, str], callback_path: str,
                        own_plugins: bool) -> EndpointConfig:
    """An AI bot on the long connection: ``bot_id`` and ``secret`` (made under 长连接), nothing else."""
    if kind != "aibot":
        raise ConfigError(f"[{section}] mode = websocket is for type = aibot only (this section is type = {kind})")
    _required(section, values, REQUIRED_WEBSOCKET_KEYS)
    ws_url = values.get("ws_url", "").strip() or DEFAULT_WS_URL
    if not ws_url.startswith(("wss://", "ws://")):
        raise ConfigError(f"[{section}] ws_url must be a wss:// (or ws://) URL, got {ws_url!r}")
    remember_secret(values["secret"].strip())
    return EndpointConfig(
        name=name, corp_id=values.get("corp_id", "").strip(), token="", encoding_aes_key="",
        secret=values["secret"].strip(),
        api_base=values.get("api_base", "").strip().rstrip("/") or DEFAULT_API_BASE,
        plugins=split_list(values["plugins"]) if own_plugins and "plugins" in values else None,
        path=callback_path + (f"/{name}" if name else ""), type=kind,
        mode="websocket", bot_id=values["bot_id"].strip(), ws_url=ws_url,
    )


def _placeholder(host: Mapping[str, str]) -> str:
    value = host.get("stream_placeholder", DEFAULT_STREAM_PLACEHOLDER).strip()
    if not value:
        # WeCom ignores invisible text, and an empty first frame leaves the user a bare bubble.
        raise ConfigError("[wechatbot] stream_placeholder must be visible text (default '…')")
    return value


def _log_format(host: Mapping[str, str]) -> str:
    value = host.get("log_format", DEFAULT_LOG_FORMAT).strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"[wechatbot] log_format must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return value


def _stream_window(host: Mapping[str, str]) -> float:
    value = float(_number("wechatbot", "stream_window", host.get("stream_window", str(DEFAULT_STREAM_WINDOW)), float))
    if not 0 < value <= DEFAULT_STREAM_WINDOW:
        raise ConfigError(
            f"[wechatbot] stream_window must be more than 0 and at most {DEFAULT_STREAM_WINDOW:g} seconds "
            f"(WeCom stops polling a stream 6 minutes after the user's message), got {value:g}"
        )
    return value


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration from ``path``, else ``$WECHATBOT_CONFIG``, else ``./config.ini``, plus the environment."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("WECHATBOT_CONFIG") or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else None)
    if not path:
        raise ConfigError(
            f"no config file: pass --config PATH, set WECHATBOT_CONFIG or write ./{DEFAULT_CONFIG_FILE} (see config.example.ini)"
        )
    parser = read_ini(path)
    return config_from_sections({s: dict(parser[s]) for s in parser.sections()}, environ, source=str(path))


def config_from_sections(
    sections: Mapping[str, Mapping[str, str]],
    environ: Mapping[str, str] | None = None,
    source: str | None = None,
) -> Config:
    """Build a validated :class:`Config` from INI-like sections (tests use this directly)."""
    merged: dict[str, dict[str, str]] = {name: dict(values) for name, values in sections.items()}
    for (section, key), value in env_overrides(environ or {}).items():
        merged.setdefault(section, {})[key] = value

    for section in merged:
        if section not in ("wecom", "wechatbot") and not section.startswith(("wecom:", "plugin:", "schedule:")):
            raise ConfigError(f"unknown section [{section}] (expected [wecom], [wecom:NAME], [wechatbot], [plugin:NAME], [schedule:NAME])")

    host = merged.get("wechatbot", {})
    _check_keys("wechatbot", host, HOST_KEYS)
    callback_path = "/" + host.get("callback_path", "/callback").strip().strip("/")
    plugins_from_env = environ is not None and "WECHATBOT_PLUGINS" in environ
    if plugins_from_env:
        plugins = split_list(environ["WECHATBOT_PLUGINS"])  # type: ignore[index]
    else:
        plugins = split_list(host["plugins"]) if "plugins" in host else ["*"]

    app_sections = [s for s in merged if s == "wecom" or s.startswith("wecom:")]
    if not app_sections:
        raise ConfigError("the config has no [wecom] section: at least one app is needed")
    endpoints = {}
    for section in app_sections:
        name = section.partition(":")[2]
        # WECHATBOT_PLUGINS is the way out of a broken plugin: it beats every app's own list too.
        endpoints[name] = _endpoint(name, merged[section], callback_path, own_plugins=not plugins_from_env)

    store = host.get("store", "").strip() or DEFAULT_STORE
    return Config(
        endpoints=endpoints,
        callback_path=callback_path,
        plugins=plugins,
        plugins_from_env=plugins_from_env,
        disabled=split_list(host.get("disabled", "")),
        plugins_dir=host.get("plugins_dir", "").strip() or None,
        store=store,
        max_body=int(_number("wechatbot", "max_body", host.get("max_body", str(1024 * 1024)), int)),
        reply_deadline=float(_number("wechatbot", "reply_deadline", host.get("reply_deadline", "4"), float)),
        replay_window=float(_number("wechatbot", "replay_window", host.get("replay_window", "300"), float)),
        queue=host.get("queue", "").strip() or None,
        deferred_workers=int(_number("wechatbot", "deferred_workers", host.get("deferred_workers", "16"), int)),
        deferred_queue=int(_number("wechatbot", "deferred_queue", host.get("deferred_queue", "1000"), int)),
        job_lease=float(_number("wechatbot", "job_lease", host.get("job_lease", "10"), float)),
        push_retry_for=float(_number("wechatbot", "push_retry_for", host.get("push_retry_for", "600"), float)),
        stream_placeholder=_placeholder(host),
        stream_window=_stream_window(host),
        log_format=_log_format(host),
        command_prefix=_command_prefix(host.get("command_prefix", "")),
        ask_timeout=float(_number("wechatbot", "ask_timeout", host.get("ask_timeout", str(DEFAULT_ASK_TIMEOUT)), float)),
        cancel_words=tuple(split_list(host["cancel_words"])) if "cancel_words" in host else DEFAULT_CANCEL_WORDS,
        cancel_reply=host.get("cancel_reply", "").strip() or DEFAULT_CANCEL_REPLY,
        admins=tuple(split_list(host.get("admins", ""))),
        refused_reply=host.get("refused_reply", "").strip() or DEFAULT_REFUSED_REPLY,
        limited_reply=host.get("limited_reply", "").strip() or DEFAULT_LIMITED_REPLY,
        membership_ttl=float(_number("wechatbot", "membership_ttl", host.get("membership_ttl", str(DEFAULT_MEMBERSHIP_TTL)), float)),
        plugin_settings={s.partition(":")[2]: dict(v) for s, v in merged.items() if s.startswith("plugin:")},
        schedule_settings={s.partition(":")[2]: dict(v) for s, v in merged.items() if s.startswith("schedule:")},
        source=source,
    )


def write_dev_config(path: str | os.PathLike[str], token: str, aes_key: str, corp_id: str = "ww_dev_corp") -> Path:
    """Write a small development config with the given credentials (``wechatbot init``)."""
    path = Path(path)
    path.write_text(
        "# Development config written by `wechatbot init`. Paste token and\n"
        "# encoding_aes_key into the app's \"receive messages\" page, set corp_id.\n"
        "[wecom]\n"
        f"corp_id = {corp_id}\n"
        f"token = {token}\n"
        f"encoding_aes_key = {aes_key}\n"
        "agent_id =\n"
        "secret =\n\n"
        "[wechatbot]\n"
        "store = sqlite:///var/wechatbot.db\n"
        "plugins = *\n",
        encoding="utf-8",
    )
    return path
