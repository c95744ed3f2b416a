"""``astro-db schema show | diff | install``: the models' ``$jsonSchema`` validators and the server's.

Only parsing and printing here; the work is ``astro_db.schema``.
"""

from __future__ import annotations

from typing import Any

import click

from .. import schema as sc
from . import CliContext, cli, pass_ctx


@cli.group("schema")
def schema_() -> None:
    """Server-side validators generated from the models: show, diff, install."""


@schema_.command("show")
@click.argument("model", required=False)
@pass_ctx
def show(ctx: CliContext, model: str | None) -> None:
    """Print the validator each model generates (JSON), or one model's."""
    db = ctx.database(connect=False, data=False)
    infos = [db.executor.model(model)] if model else list(db.executor.runtime.registry)
    ctx.emit({info.collection: sc.validator(info) for info in infos}, None)


@schema_.command("diff")
@pass_ctx
def diff(ctx: CliContext) -> None:
    """Compare each collection's validator on the server with the models'; exit 1 if any differs."""
    rows = sc.diff(ctx.database())

    def human(data: list[dict[str, Any]]) -> str:
        lines = []
        for r in data:
            extra = f" (action {r['action']}, level {r['level']})" if r["state"] != "missing" else ""
            lines.append(f"{r['collection']:<24} {r['state'].upper()}{extra}")
            lines += [f"  {d}" for d in r["differences"]]
        return "\n".join(lines)

    ctx.emit(rows, human)
    if any(r["state"] != "same" for r in rows):
        raise click.exceptions.Exit(1)


@schema_.command("install")
@click.option("--action", type=click.Choice(sc.ACTIONS), default="warn", show_default=True,
              help="warn: log what fails (first); error: refuse it (once the logs are clean).")
@click.option("--level", type=click.Choice(sc.LEVELS), default="moderate", show_default=True,
              help="moderate: existing invalid documents may still be updated; strict: every write is checked.")
@pass_ctx
def install(ctx: CliContext, action: str, level: str) -> None:
    """Install the models' validators (collMod, or create for a new collection)."""
    rows = sc.install(ctx.database(), action=action, level=level)
    ctx.emit(rows, lambda data: "\n".join(f"{r['collection']:<24} {r['command']} action={r['action']} level={r['level']}"
                                          for r in data))
