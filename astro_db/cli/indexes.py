"""``astro-db indexes list | sync | usage``: the models' indexes against the server's.

Only parsing and printing here; the work is ``astro_db.indexes`` and ``Database.sync_indexes``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import click

from .. import indexes as ix
from . import CliContext, cli, pass_ctx

if TYPE_CHECKING:  # pragma: no cover
    from ..database import Database


def _models(db: Database, model: str | None) -> list[Any]:
    return [db.executor.model(model)] if model else list(db.executor.runtime.registry)


def _key(key: list[list[Any]]) -> str:
    return ", ".join(f"{name}:{direction}" for name, direction in key)


@cli.group()
def indexes() -> None:
    """Declared indexes vs the server's: list, sync, usage."""


@indexes.command("list")
@click.argument("model", required=False)
@pass_ctx
def list_(ctx: CliContext, model: str | None) -> None:
    """Each model's declared indexes, whether the server has them, and undeclared extras."""
    db = ctx.database()
    ex = db.executor  # each model's listing is one call through the run step, as sync_indexes' are
    rows = [ex.call(info, "list_indexes", partial(ix.list_model_indexes, ex.runtime.gateway, info)) for info in _models(db, model)]

    def human(data: list[dict[str, Any]]) -> str:
        lines = []
        for row in data:
            lines.append(f"{row['model']} ({row['collection']})")
            for spec in row["declared"]:
                state = "ok" if spec["on_server"] else "n/a" if spec.get("note") else "MISSING"
                options = "".join(f" {k}" for k in ("unique", "sparse") if spec.get(k))
                if "expireAfterSeconds" in spec:
                    options += f" ttl={spec['expireAfterSeconds']}s"
                lines.append(f"  {state:<8} {spec['name']:<40} {_key(spec['key'])}{options}")
                if spec.get("note"):
                    lines.append(f"  {'':<8} note: {spec['note']}")
            for extra in row["extra"]:
                lines.append(f"  {'EXTRA':<8} {extra['name']:<40} {_key(extra['key'])}")
        return "\n".join(lines)

    ctx.emit(rows, human)


@indexes.command("sync")
@click.option("--drop-extra", is_flag=True, help="Also drop server indexes that no model declares.")
@pass_ctx
def sync(ctx: CliContext, drop_extra: bool) -> None:
    """Create the declared indexes the server lacks; report (or drop) undeclared ones."""
    reports = ctx.database().sync_indexes(drop_extra=drop_extra)

    def human(data: list[dict[str, Any]]) -> str:
        lines = []
        for r in data:
            parts = [f"{len(r['created'])} created", f"{len(r['existing'])} present"]
            if r["extra"]:
                parts.append(f"{len(r['extra'])} extra ({', '.join(r['extra'])})")
            if r["dropped"]:
                parts.append(f"{len(r['dropped'])} dropped")
            lines.append(f"{r['model']:<22} " + ", ".join(parts))
            lines += [f"  created {name}" for name in r["created"]]
            lines += [f"  FAILED  {name}: {why}" for name, why in r["failed"].items()]
            lines += [f"  note    {name}: {why}" for name, why in r.get("notes", {}).items()]
        return "\n".join(lines)

    ctx.emit(reports, human)
    if any(r["failed"] for r in reports):
        raise click.exceptions.Exit(1)


@indexes.command("usage")
@click.argument("model", required=False)
@pass_ctx
def usage(ctx: CliContext, model: str | None) -> None:
    """Operations each index has served ($indexStats; needs a real MongoDB)."""
    db = ctx.database()
    ex = db.executor
    rows = [ex.call(info, "index_usage", partial(ix.index_usage, ex.runtime.gateway, info)) for info in _models(db, model)]
    supported = all(r["supported"] for r in rows)

    def human(data: list[dict[str, Any]]) -> str:
        if not supported:
            return f"index usage unavailable: {ix.INDEX_STATS_UNAVAILABLE}"
        lines = []
        for r in data:
            lines.append(f"{r['model']} ({r['collection']})")
            for index in r["indexes"]:
                since = f"  since {index['since']:%Y-%m-%d %H:%M}" if index["since"] else ""
                lines.append(f"  {index['ops']:>10} ops  {index['name']}{since}")
            if not r["indexes"]:
                lines.append("  (no indexes)")
        return "\n".join(lines)

    ctx.emit(rows, human)
    if not supported:
        raise click.exceptions.Exit(1)
