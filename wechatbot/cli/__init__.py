"""The ``wechatbot`` command: serve, init, genkey, plugins, schedules, simulate, send, worker."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..config import load_config, write_dev_config
from ..errors import WechatbotError, one_line
from ..wecom.crypto import generate_aes_key, generate_token

from .options import CONFIG_OPTION
from .options import load as _load


class _Commands(click.Group):
    """Every wechatbot error a command meets ends it with one line (``Error: …``), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WechatbotError as exc:
            raise click.ClickException(one_line(str(exc))) from None


@click.group(cls=_Commands)
@click.version_option(package_name="wechatbot")
def cli() -> None:
    """wechatbot: a WeCom (企业微信) bot host."""
    from ..logs import setup

    try:
        setup(os.environ.get("WECHATBOT_LOG_LEVEL", "info"))
    except ValueError as exc:
        raise click.ClickException(f"WECHATBOT_LOG_LEVEL: {exc}") from None


@cli.command()
@click.option("--path", "path", default="config.ini", show_default=True, type=click.Path(dir_okay=False))
@click.option("--corp-id", default="ww_dev_corp", show_default=True, help="Your CorpID (我的企业 → 企业信息).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, corp_id: str, force: bool) -> None:
    """Write a development config with a fresh Token and EncodingAESKey."""
    target = Path(path)
    if target.exists() and not force:
        endpoint = _load(str(target)).endpoint()
        token, key = endpoint.token, endpoint.encoding_aes_key
        click.echo(f"{target} exists; keeping it (use --force to write a new one)")
    else:
        token, key = generate_token(), generate_aes_key()
        write_dev_config(target, token, key, corp_id)
        click.echo(f"wrote {target}")
    Path("var").mkdir(exist_ok=True)
    click.echo(f"  Token:          {token}\n  EncodingAESKey: {key}\n"
               "Paste both into the app's 接收消息 (receive messages via API) page and set corp_id.")


@cli.command()
def genkey() -> None:
    """Print a random Token and EncodingAESKey for a new app."""
    click.echo(f"token = {generate_token()}\nencoding_aes_key = {generate_aes_key()}")


@cli.command()
@CONFIG_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--debug", is_flag=True)
def serve(config_path: str | None, host: str, port: int, debug: bool) -> None:
    """Run the bot host with Flask's development server (use gunicorn in production)."""
    from ..ext import create_app
    from ..logs import setup

    config = _load(config_path)
    setup(os.environ.get("WECHATBOT_LOG_LEVEL", "info"), config.log_format)
    app = create_app(config)
    for endpoint in app.extensions["wechatbot"].endpoints.values():
        click.echo(f"[{endpoint.section}] callback URL: http://{host}:{port}{endpoint.path}")
    try:
        app.run(host=host, port=port, debug=debug, use_reloader=False, threaded=True)
    finally:
        app.extensions["wechatbot"].close()


@cli.command("plugins")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(config_path: str | None, as_json: bool) -> None:
    """List installed plugins: version, source, hooks, and the order each endpoint calls them in."""
    from ..host import Host
    from ..metadata import plugin_metadata
    from ..plugins import call_order

    with Host(_load(config_path)) as host:
        endpoints = list(host.endpoints.values())
        candidates, loaded_plugins = host.candidates, host.loaded
    # Per endpoint and hook, the order plugins are really asked in (tryfirst/trylast included).
    chains = {e.section: {hook: [impl.plugin_name for impl in call_order(e.pm, hook)]
                          for hook in ("handle_message", "handle_event")}
              for e in endpoints}
    rows = []
    for name, candidate in sorted(candidates.items()):
        loaded = loaded_plugins.get(name)
        apps = {e.section: [p.name for p in e.plugins].index(name) + 1
                for e in endpoints if name in [p.name for p in e.plugins]}
        pm = next((e.pm for e in endpoints if loaded in e.plugins), None)
        about = loaded.metadata if loaded else plugin_metadata(candidate.dist)
        commands = sorted({c.name for e in endpoints for c in e.intake.commands.commands if c.plugin == name})
        rows.append({
            "name": name, "version": candidate.version, "source": candidate.source,
            "description": about.description, "usage": about.usage, "homepage": about.homepage,
            "enabled": bool(apps), "order": apps, "hooks": loaded.hooks(pm) if loaded and pm else [],
            "commands": commands,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        state = ", ".join(f"[{a}] #{n}" for a, n in row["order"].items()) if row["enabled"] else "disabled"
        click.echo(f"{row['name']} {row['version'] or ''}" + (f" — {row['description']}" if row["description"] else ""))
        click.echo(f"  source: {row['source']}\n  enabled: {state}")
        for key in ("homepage", "usage"):
            if row[key]:
                click.echo(f"  {key}: " + row[key].replace("\n", "\n    "))
        if row["commands"]:
            click.echo(f"  commands: {', '.join(row['commands'])}")
        if row["hooks"]:
            click.echo(f"  hooks: {', '.join(row['hooks'])}")
    for section, hooks in chains.items():
        for hook, names in hooks.items():
            click.echo(f"[{section}] {hook}: {' → '.join(names) or '(none)'}")


@cli.command()
@CONFIG_OPTION
@click.argument("url")
@click.option("--app", "app_name", default="", help="Use the keys of [wecom:NAME].")
@click.option("--verify", is_flag=True, help="Do the GET URL verification instead of sending a message.")
@click.option("--text", default=None, help="Send a text message (the default: 'hello').")
@click.option("--event", default=None, help="Send an event instead, e.g. enter_agent or click.")
@click.option("--event-key", default=None, help="EventKey for click/view events.")
@click.option("--from-user", default="zhangsan", show_default=True)
@click.option("--type", "msg_type", default=None, help="Another message type (image, voice, file …) with --field.")
@click.option("--field", "fields", multiple=True, callback=lambda _c, _p, v: _fields(v),
              help="Extra XML field NAME=VALUE, e.g. MediaId=abc or MsgId=42 (the same MsgId twice plays a retry).")
@click.option("--token", "token", default=None, help="Sign with this Token instead of the config's (to try a wrong one).")
def simulate(config_path: str | None, url: str, app_name: str, verify: bool, text: str | None, event: str | None,
             event_key: str | None, from_user: str, msg_type: str | None, fields: dict[str, str],
             token: str | None) -> None:
    """Act as WeCom: sign and encrypt a callback, send it to URL, print the decrypted reply.

    For an AI bot (type = aibot) a streamed answer is followed through its
    refresh polls and each update printed; a group robot gets its own XML.

    URL is the full callback URL: local (http://127.0.0.1:8000/callback) or a
    tunnel's public one. The keys come from the config.
    """
    import requests

    from ..testing.simulator import SimulatedWeCom, SimulationError, event_xml, http_transport, message_xml

    endpoint = _load(config_path).endpoint(app_name)
    sim = SimulatedWeCom(http_transport(url), token or endpoint.token, endpoint.encoding_aes_key, endpoint.receive_id, path="")
    try:
        if endpoint.type != "app":
            _simulate_bot(endpoint, url, verify, text, event, from_user)
        else:
            _simulate(sim, endpoint, verify, text, event, event_key, from_user, msg_type, fields,
                      event_xml=event_xml, message_xml=message_xml)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"cannot reach {url} ({type(exc).__name__}): is the host running (wechatbot serve, or gunicorn wsgi:app) "
            "and is the URL its callback URL?"
        ) from None
    except SimulationError as exc:
        raise click.ClickException(one_line(str(exc))) from None


def _fields(values: tuple[str, ...]) -> dict[str, str]:
    """``--field NAME=VALUE`` options as a dict; one without ``=`` is a usage error naming it."""
    for value in values:
        if "=" not in value or not value.split("=", 1)[0].strip():
            raise click.BadParameter(f"{value!r} is not NAME=VALUE (for example MediaId=abc)", param_hint="--field")
    return dict(value.split("=", 1) for value in values)


def _simulate(sim: Any, endpoint: Any, verify: bool, text: str | None, event: str | None, event_key: str | None,
              from_user: str, msg_type: str | None, extra: dict[str, str], *, event_xml: Any, message_xml: Any) -> None:
    """Send the simulated callback and print what came back."""
    if verify:
        click.echo(f"URL verification OK: echoed {sim.verify_url()}")
        return
    if event:
        xml = event_xml(event, from_user=from_user, to_user=endpoint.corp_id, **({"event_key": event_key} if event_key else {}), **extra)
    elif msg_type:
        xml = message_xml(msg_type, from_user=from_user, to_user=endpoint.corp_id, **extra)
    else:
        xml = message_xml("text", from_user=from_user, to_user=endpoint.corp_id, content=text or "hello", **extra)
    received = sim.post_xml(xml)
    if received.status != 200:
        hint = " (is token the one this host is configured with?)" if received.status == 403 else ""
        raise click.ClickException(f"HTTP {received.status}: {one_line(received.body)}{hint}")
    if not received:
        click.echo("(empty answer: no plugin replied, or the reply is delivered through message/send)")
        return
    click.echo(json.dumps(received.raw, indent=2, ensure_ascii=False))


def _simulate_bot(app: Any, url: str, verify: bool, text: str | None, event: str | None, from_user: str) -> None:
    """``simulate`` for an AI bot (following a stream, printing each update) or a group robot."""
    from ..testing.bot_simulator import SimulatedAibot, SimulatedGroupRobot
    from ..testing.simulator import http_transport

    if app.type == "aibot":
        bot = SimulatedAibot(http_transport(url), app.token, app.encoding_aes_key, path="")
        if verify:
            click.echo(f"URL verification OK: echoed {bot.verify_url()}")
            return
        if event:
            answer = bot.event(event, {}, from_user=from_user)
            click.echo(json.dumps(answer.data, indent=2, ensure_ascii=False) if answer else "(empty answer)")
            return

        def show(update: Any) -> None:
            if update.status != 200:
                raise click.ClickException(f"HTTP {update.status}: {update.body.strip()}")
            if update.stream:
                click.echo(f"[{'finished' if update.finish else 'streaming'}] {update.content}")
            elif update:
                click.echo(json.dumps(update.data, indent=2, ensure_ascii=False))
            else:
                click.echo("(empty answer: no plugin replied, or the reply goes through response_url)")

        bot.send(bot.document("text", {"content": text or "hello"}, from_user=from_user), on_update=show)
        return
    robot = SimulatedGroupRobot(http_transport(url), app.token, app.encoding_aes_key, path="")
    if verify:
        click.echo(f"URL verification OK: echoed {robot.verify_url()}")
        return
    answer = robot.event(event, from_user=from_user) if event else robot.text(text or "hello", from_user=from_user)
    if answer.status != 200:
        raise click.ClickException(f"HTTP {answer.status}: {answer.body.strip()}")
    click.echo(json.dumps(answer.raw, indent=2, ensure_ascii=False) if answer
               else "(empty answer: no plugin replied, or the reply goes through the webhook)")


@cli.command()
@CONFIG_OPTION
def worker(config_path: str | None) -> None:
    """Run deferred jobs outside the web workers (optional: web workers run them too).

    Useful with a Redis store when several hosts share one queue.
    """
    from ..host import Host
    from ..jobs import describe, run_standalone
    from ..logs import setup

    config = _load(config_path)
    setup(os.environ.get("WECHATBOT_LOG_LEVEL", "info"), config.log_format)
    with Host(config) as host:
        for endpoint in host.endpoints.values():
            endpoint.start()
        host.start_long_connections()
        click.echo(f"running deferred jobs from {describe(host.jobs.huey)}")
        run_standalone(host.jobs)


def _register_plugin_commands(group: click.Group) -> None:
    """Let plugins add subcommands (``register_commands`` hook)."""
    from ..plugins import installed_plugins, load, plugin_manager, select

    try:
        config = load_config() if os.environ.get("WECHATBOT_CONFIG") else None
        candidates = installed_plugins(config.plugins_dir if config else None)
        names = select(config.plugins if config else ["*"], config.disabled if config else [], candidates)
        pm = plugin_manager(load(candidates, names))
    except Exception as exc:  # a broken plugin must not take the whole CLI down
        print(f"wechatbot: plugin commands not loaded: {exc}", file=sys.stderr)
        return
    pm.hook.register_commands(cli=group)


def main() -> None:
    """Console-script entry point."""
    from .schedules import schedules
    from .send import send

    cli.add_command(send)
    cli.add_command(schedules)
    _register_plugin_commands(cli)
    cli()


