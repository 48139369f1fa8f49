"""``wechatbot send``: push a message through ``message/send`` from the command line.

The message is JSON or YAML, from a file, stdin (``-``) or ``-m``; ``-a``
adds or overrides fields by dotted path, so one template serves many sends::

    wechatbot send card.yaml -a touser=zhangsan -a template_card.task_id=t42
    wechatbot send -a msgtype=text -a touser=@all -a text.content="deploy done"
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

import click
import yaml

__all__ = ["MessageError", "apply_fields", "parse_message", "parse_scalar", "send", "set_path"]

_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+")


class MessageError(ValueError):
    """The message or a ``-a`` field cannot be used; the text says why."""


def parse_message(text: str) -> dict:
    """A message from JSON or YAML text; it must be a mapping."""
    try:
        message = json.loads(text)
    except ValueError:
        try:
            message = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MessageError(f"the message is neither JSON nor YAML: {exc}") from None
    if message is None:
        raise MessageError("the message is empty")
    if not isinstance(message, dict):
        raise MessageError(f"the message must be a mapping of fields, not a {type(message).__name__}")
    return message


def parse_scalar(text: str) -> Any:
    """The value of a ``-a key=value`` field, read like a YAML scalar but stricter.

    ``42`` and ``-1.5`` are numbers, ``true``/``false`` booleans and
    ``null``/``~`` None; anything else stays a string. Unlike YAML, numbers
    with a leading zero (``007``) and words like ``yes``/``on`` stay strings,
    since user ids look like that. Quote a value to keep it a string
    (``'"42"'``); double quotes allow escapes such as ``\\n``.
    """
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        try:
            value = yaml.safe_load(stripped)
        except yaml.YAMLError:
            value = None
        return value if isinstance(value, str) else stripped[1:-1]
    if stripped in ("true", "True", "TRUE"):
        return True
    if stripped in ("false", "False", "FALSE"):
        return False
    if stripped in ("null", "Null", "NULL", "~"):
        return None
    if _INT.fullmatch(stripped):
        return int(stripped)
    if _FLOAT.fullmatch(stripped):
        return float(stripped)
    return text


def set_path(message: dict, path: str, value: Any) -> None:
    """Set ``value`` at a dotted ``path`` in ``message``, creating mappings on the way.

    A number indexes an existing list (``news.articles.0.title``); a path
    through a value that is neither mapping nor list is an error.
    """
    keys = path.split(".")
    if not all(keys):
        raise MessageError(f"field name {path!r} has an empty part")
    node: Any = message
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[:depth]) or "the message"
        if isinstance(node, list):
            if not key.isdigit() or int(key) > len(node) or (not last and int(key) == len(node)):
                raise MessageError(f"{where} is a list of {len(node)}; {key!r} is not an index in it")
            index = int(key)
            if last:
                node[index:index + 1] = [value]
                return
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
                return
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        else:
            raise MessageError(f"{where} is a {type(node).__name__}, so {path} cannot be set")
        if not isinstance(node, (dict, list)):
            raise MessageError(f"{'.'.join(keys[:depth + 1])} is a {type(node).__name__}, so {path} cannot be set")


def apply_fields(message: dict, fields: Iterable[str]) -> dict:
    """Apply ``key.path=value`` fields to ``message`` (in place) and return it."""
    for field in fields:
        key, sep, raw = field.partition("=")
        if not sep or not key.strip():
            raise MessageError(f"-a expects key.path=value, got {field!r}")
        set_path(message, key.strip(), parse_scalar(raw))
    return message


@click.command("send")
@click.argument("message_file", required=False, type=click.File("r", encoding="utf-8"))
@click.option("-m", "--message", "message_text", help="The message as JSON or YAML text.")
@click.option("-a", "--field", "fields", multiple=True, metavar="KEY.PATH=VALUE",
              help="Add or override a field, e.g. touser=zhangsan or text.content=hi (repeatable). "
                   "42, 1.5, true, false and null are typed; quote a value to keep it a string.")
@click.option("--app", "app_name", default="", help="Send as the app of [wecom:NAME] (default: [wecom]).")
@click.option("--config", "config_path", envvar="WECHATBOT_CONFIG", type=click.Path(dir_okay=False),
              help="INI config file (default: $WECHATBOT_CONFIG).")
def send(message_file: Any, message_text: str | None, fields: tuple[str, ...], app_name: str,
         config_path: str | None) -> None:
    """Send a message through WeCom's message/send and print the answer as JSON.

    MESSAGE_FILE holds the message as JSON or YAML (- reads stdin); -m gives
    it inline; with only -a fields the message starts empty. agentid is
    filled in from the app's config. The exit code is 1 when WeCom answers
    with an error.
    """
    from ..api import WeComError, client_for
    from ..config import ConfigError, load_config
    from ..store import StoreURLError, open_store

    if message_file is not None and message_text is not None:
        raise click.UsageError("give the message either as MESSAGE_FILE or with -m, not both")
    if message_file is None and message_text is None and not fields:
        raise click.UsageError("no message: give MESSAGE_FILE, - for stdin, -m TEXT or -a fields")
    try:
        text = message_file.read() if message_file is not None else message_text
        message = parse_message(text) if text is not None else {}
        apply_fields(message, fields)
    except MessageError as exc:
        raise click.UsageError(str(exc)) from None
    if not message.get("msgtype"):
        raise click.UsageError("the message has no msgtype (text, markdown, news, template_card …)")

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        app = config.endpoint(app_name)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--app") from None
    if not app.secret:
        raise click.ClickException(f"[{app.section}] has no secret: message/send needs the app's Secret")
    try:
        store = open_store(config.store)
    except StoreURLError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        answer = client_for(app, store).send_message(message)
    except WeComError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(json.dumps(answer, ensure_ascii=False, indent=2))
