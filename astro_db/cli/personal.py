"""``astro-db export-user ID`` and ``astro-db erase-user ID --yes``: a shell over ``Database.export_user`` / ``erase_user``.

The export is printed as JSON (relaxed Extended JSON, ``astro_db.personal``) on stdout, one
document or record at a time (flat memory), so it can be redirected to the file handed to the
user. The erasure is irreversible, so it
refuses to run without ``--yes`` (no prompt: it is meant for scripts and runbooks as well), and
prints what it erased; a rerun finishes an erasure a crash interrupted.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import ConfigError
from . import CliContext, cli, pass_ctx


@cli.command("export-user")
@click.argument("user_id")
@pass_ctx
def export_user(ctx: CliContext, user_id: str) -> None:
    """Print everything stored about one user (documents and change records), as JSON."""
    from ..personal import write_export

    db = ctx.database(connect=True)
    write_export(db, db.executor, user_id, _echo)  # one document at a time


def _echo(text: str) -> None:
    click.echo(text, nl=False)


@cli.command("erase-user")
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Confirm: the erasure cannot be undone.")
@pass_ctx
def erase_user(ctx: CliContext, user_id: str, yes: bool) -> None:
    """Erase one user: live documents, change records' contents, data keys; the erasure is recorded."""
    if not yes:
        raise ConfigError(f"erase-user {user_id} cannot be undone: pass --yes to erase this user")
    db = ctx.database(connect=True)
    ctx.emit(db.erase_user(user_id), _text)


def _text(report: dict[str, Any]) -> str:
    lines = [f"{model + ':':<22}{n} document(s) erased" for model, n in report["erased"].items()]
    lines.append(f"{'data keys shredded:':<22}{report['keys_shredded']}")
    state = "already erased earlier" if report["already"] else ("resumed and finished" if report["resumed"] else "done")
    lines.append(f"user {report['userId']}: {state}")
    return "\n".join(lines)
