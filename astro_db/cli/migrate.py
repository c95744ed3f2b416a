"""``astro-db migrate status | up [--to N] [--dry-run] | down [--to N]``: the app's versioned migrations.

Only parsing and printing here; the work is ``astro_db.migrations.Migrator``. The directory is
``--dir`` or ``ASTRO_DB_MIGRATIONS``. While a migration runs, a progress line is drawn on stderr
when stderr is a terminal (``-v`` logs the INFO lines instead, or as well).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..migrations import MIGRATIONS_ENV, Migrator
from . import CliContext, cli, pass_ctx


def _migrator(ctx: CliContext, directory: str | None, *, dry_run: bool = False, batch_size: int = 1000,
              lease_ttl: float = 60.0) -> Migrator:
    return Migrator(ctx.database(), directory, dry_run=dry_run, batch_size=batch_size, lease_ttl_s=lease_ttl,
                    progress=_progress_line if sys.stderr.isatty() else None)


def _progress_line(figures: dict[str, Any]) -> None:
    total = figures["total"] or 0
    share = f" {100 * figures['changed'] // total:3d}%" if total else ""
    end = "\n" if figures["done"] else ""
    click.echo(f"\r{figures['version']:04d} {figures['model']}: batch {figures['batches']}, "
               f"{figures['changed']}/{total} changed{share}", err=True, nl=False)
    if end:
        click.echo("", err=True)


def _dir_option(fn: Any) -> Any:
    return click.option("--dir", "directory", envvar=MIGRATIONS_ENV, type=click.Path(file_okay=False),
                        help=f"The migrations directory (default: ${MIGRATIONS_ENV}).")(fn)


@cli.group()
def migrate() -> None:
    """The app's versioned migrations: status, up, down."""


@migrate.command("status")
@_dir_option
@pass_ctx
def status(ctx: CliContext, directory: str | None) -> None:
    """Each migration and its state (pending, applied, running, failed, changed, missing)."""
    rows = _migrator(ctx, directory).status()

    def human(data: list[dict[str, Any]]) -> str:
        lines = [f"{r['version']:04d}  {r['state']:<8} {r['description']}"
                 + (f"  (applied {r['applied_at']:%Y-%m-%d %H:%M} by {r['by'].get('actor')}@{r['by'].get('host')})"
                    if r["state"] == "applied" and r["applied_at"] and r["by"] else "")
                 + (f"  error: {r['error']}" if r["state"] == "failed" and r["error"] else "")
                 for r in data]
        return "\n".join(lines) or "no migrations"

    ctx.emit(rows, human)
    if any(r["state"] in ("changed", "failed", "missing") for r in rows):
        raise click.exceptions.Exit(1)


def _report(ctx: CliContext, report: Any) -> None:
    def human(data: dict[str, Any]) -> str:
        verb = {"up": "applied", "down": "reverted"}[data["direction"]]
        if not data["ran"]:
            return "nothing to do"
        lines = []
        for version in data["ran"]:
            figures = ", ".join(
                f"{key.split(':', 1)[1]}: {o['matched'] if data['dry_run'] else o['changed']} document(s)"
                for key, o in data["outcomes"].get(version, {}).items())
            lines.append(f"{version:04d} {'would be ' + verb if data['dry_run'] else verb}"
                         + (f" ({figures})" if figures else ""))
        return "\n".join(lines)

    ctx.emit(report.as_dict(), human)


@migrate.command("up")
@_dir_option
@click.option("--to", "to", type=int, help="Apply up to this version (default: all).")
@click.option("--dry-run", is_flag=True, help="Count what would change; write nothing.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--lease-ttl", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Seconds the lease lasts without renewal (a killed run's lease is taken over after it).")
@pass_ctx
def up(ctx: CliContext, directory: str | None, to: int | None, dry_run: bool, batch_size: int, lease_ttl: float) -> None:
    """Apply the pending migrations in order (a stopped one resumes from its position)."""
    _report(ctx, _migrator(ctx, directory, dry_run=dry_run, batch_size=batch_size, lease_ttl=lease_ttl).up(to=to))


@migrate.command("down")
@_dir_option
@click.option("--to", "to", type=int, help="Revert every applied migration above this version (default: the last one).")
@click.option("--dry-run", is_flag=True, help="Count what would change; write nothing.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@pass_ctx
def down(ctx: CliContext, directory: str | None, to: int | None, dry_run: bool, batch_size: int) -> None:
    """Revert the last applied migration (or all above --to), newest first."""
    _report(ctx, _migrator(ctx, directory, dry_run=dry_run, batch_size=batch_size).down(to=to))
