"""``astro-db reconcile-changes``: write the change records a crash or an outage left missing.

The work is ``Database.reconcile_changes`` (``astro_db.changes.log``): this process has no
records pending, so it settles the delete intents a crash left unconfirmed and rebuilds the
record of every document whose current revision has none.
"""

from __future__ import annotations

from typing import Any

from . import CliContext, cli, pass_ctx


@cli.command("reconcile-changes")
@pass_ctx
def reconcile_changes(ctx: CliContext) -> None:
    """Settle unconfirmed delete intents; record every document whose current revision has no change record."""
    db = ctx.database(connect=True)
    ctx.emit(db.reconcile_changes(), _text)


def _text(report: dict[str, Any]) -> str:
    rebuilt, intents = report["rebuilt"], report.get("intents", {})
    lines = [f"{model + ':':<22}{n} record(s) rebuilt" for model, n in rebuilt.items()]
    lines.append(f"{'delete intents:':<22}{intents.get('confirmed', 0)} confirmed, {intents.get('dropped', 0)} dropped")
    lines.append(f"{report['pending']} pending record(s) written")
    erasures = report.get("erasures") or {}
    if erasures.get("finished"):
        lines.append(f"{erasures['finished']} interrupted user erasure(s) finished")
    if erasures.get("scrubbed"):
        lines.append(f"{erasures['scrubbed']} record(s) of erased users scrubbed")
    lines.append(f"{sum(rebuilt.values()) + report['pending'] + intents.get('confirmed', 0)} change record(s) written")
    return "\n".join(lines)
