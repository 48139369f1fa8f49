"""What every subcommand of ``wechatbot`` shares: the ``--config`` option and loading it."""
from __future__ import annotations

from typing import Any

import click

from ..config import ConfigError, load_config
from ..errors import one_line

CONFIG_OPTION = click.option(
    "--config", "config_path", envvar="WECHATBOT_CONFIG", type=click.Path(dir_okay=False),
    help="INI config file (default: $WECHATBOT_CONFIG).",
)


def load(config_path: str | None) -> Any:
    """The config at ``config_path`` (or ``$WECHATBOT_CONFIG``); a bad one is a one-line CLI error."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(one_line(str(exc))) from None
