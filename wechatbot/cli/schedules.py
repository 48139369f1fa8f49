"""``wechatbot schedules``: every scheduled push with its next run."""
from __future__ import annotations

import json
import time
from datetime import datetime

import click

from .options import CONFIG_OPTION
from .options import load as _load


def _when(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


@click.command("schedules")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def schedules(config_path: str | None, as_json: bool) -> None:
    """List scheduled pushes: when they run, where they push, their last and next run."""
    from ..host import Host
    from ..schedules import Scheduler

    with Host(_load(config_path)) as host:
        for endpoint in host.endpoints.values():
            endpoint.start()  # plugins declare their schedules once started
        jobs = [job for endpoint in host.endpoints.values() for job in endpoint.schedules]
        scheduler = Scheduler(jobs, host.store, lambda *_: None)
        now = time.time()
        rows = [{"name": job.key, "when": job.when, "to": [str(t) for t in job.to], "missed": job.missed,
                 "last_run": _when(scheduler.last_run(job)), "next_run": _when(job.next_due(now))} for job in jobs]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no schedules: add a [schedule:NAME] section, or a plugin's register_schedules")
    for row in rows:
        click.echo(f"{row['name']}\n  {row['when']} → {', '.join(row['to'])} (missed: {row['missed']})\n"
                   f"  last run: {row['last_run'] or 'never'}\n  next run: {row['next_run']}")
