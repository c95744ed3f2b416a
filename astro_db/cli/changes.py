"""``astro-db reconcile-changes``: write the change records a crash or an outage left missing.

The work is ``Database.reconcile_changes`` (``astro_db.changes.log``): this process has no
records pending, so it rebuilds the record of every document whose current revision has none.
"""

from __future__ import annotations

from typing import Any

from . import CliContext, cli, pass_ctx


@cli.command("reconcile-changes")
@pass_ctx
def reconcile_changes(ctx: CliContext) -> None:
    """Record every document whose current revision has no change record (audit + journal)."""
    db = ctx.database(connect=True)
    ctx.emit(db.reconcile_changes(), _text)


def _text(report: dict[str, Any]) -> str:
    rebuilt = report["rebuilt"]
    lines = [f"{model + ':':<22}{n} record(s) rebuilt" for model, n in rebuilt.items()]
    lines.append(f"{sum(rebuilt.values()) + report['pending']} change record(s) written")
    return "\n".join(lines)
