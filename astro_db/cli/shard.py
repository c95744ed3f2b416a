"""``astro-db shard plan``: the mongosh commands that shard the database, from the models' keys.

Only parsing and printing here; the work is ``astro_db.sharding``. Nothing is sent to a server:
the plan is read by an operator, then run in mongosh against a mongos.
"""

from __future__ import annotations

import click

from ..sharding import parse_key, render_plan, shard_plan
from . import CliContext, cli, pass_ctx


@cli.group()
def shard() -> None:
    """Sharding: the plan for the models' shard keys."""


@shard.command("plan")
@click.option("--database", "database", default=None, help="Database name (default: the one in --url / MONGODB_URL).")
@click.option("--key", "keys", multiple=True, metavar="MODEL=FIELD:hashed|1[,...]",
              help="Try another shard key for a model (e.g. User=_id:hashed, or User=none); repeatable.")
@pass_ctx
def plan(ctx: CliContext, database: str | None, keys: tuple[str, ...]) -> None:
    """Print sh.enableSharding / createIndex / sh.shardCollection commands for every model, and
    the unique indexes a shard key would leave unenforceable (with the remedy)."""
    db = ctx.database(connect=False, data=False)
    overrides = dict(parse_key(text) for text in keys)
    result = shard_plan(db.executor.runtime.registry, database or db.config.database_name, overrides)
    ctx.emit(result.as_dict(), lambda _: render_plan(result))
