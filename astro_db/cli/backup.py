"""``astro-db backup | backup list | backup prune | backup sign | restore | verify``: a shell over ``astro_db.backup``.

Each reads the backup secret from ``ASTRO_DB_BACKUP_SECRET`` (never an option: a command line is
visible to every user of the machine): sets taken are signed, sets read must be."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from .. import backup as api
from . import CliContext, cli, pass_ctx

_repo_option = click.option("--repo", "repo", type=click.Path(file_okay=False), help="The backup repository directory.")
_url_option = click.option("--url", "url", help="MongoDB URL (same as the group-level --url).")


class _Bars:
    """A ``progress(label, advance, total)`` callback drawing one click progress bar per label on stderr.

    On a terminal, live bars; elsewhere (a log file, CI, cron) one finished line per label
    (``users: 1200 done``), since a bar there is only a bare label line."""

    def __init__(self, enabled: bool, tty: bool | None = None) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.label: str | None = None
        self.bar: Any = None
        self.count = 0

    def __call__(self, label: str, advance: int, total: int | None) -> None:
        if not self.enabled:
            return
        if not self.tty:
            if label != self.label:
                self.close()
                self.label = label
            self.count += advance
            return
        if label != self.label:
            self.close()
            self.label = label
            stream = sys.stderr
            if total is None:  # an unknown length: a counter rather than a bar
                self.bar = click.progressbar(iter(()), label=f"{label:<24}", file=stream, show_pos=True)
            else:
                self.bar = click.progressbar(length=total, label=f"{label:<24}", file=stream, show_pos=True)
            self.bar.__enter__()
        self.bar.update(advance)

    def close(self) -> None:
        if not self.tty and self.enabled and self.label is not None:
            click.echo(f"{self.label}: {self.count} done", err=True)
            self.label, self.count = None, 0
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _run(obj: CliContext, fn: Callable[[Callable[..., None]], Any]) -> Any:
    bars = _Bars(enabled=not obj.as_json)
    try:
        return fn(bars)
    finally:
        bars.close()


def _source(obj: CliContext, url: str | None) -> Any:
    if url:
        obj.url = url
    return obj.database(journal=False)


def _repo(ctx: click.Context, repo: str | None) -> str:
    repo = repo or ctx.meta.get("astro_db.backup.repo")
    if not repo:
        raise click.UsageError("--repo DIR is required")
    return repo


def _set_line(s: dict[str, Any]) -> str:
    docs = sum(s["documents"].values())
    gone = sum(s["deleted"].values())
    return (
        f"{s['id']:<36} {s['kind']:<12} {s['from'] or '-':<25} {s['to']:<25} "
        f"{docs:>9} {gone:>8} {s['journal_entries']:>8} {s['bytes']:>11}"
    )


@cli.group("backup", invoke_without_command=True)
@_repo_option
@click.option("--full", is_flag=True, help="Take a full set even if the repository has one.")
@_url_option
@click.pass_context
def backup_cmd(ctx: click.Context, repo: str | None, full: bool, url: str | None) -> None:
    """Take a backup set: full the first time (or with --full), else incremental."""
    ctx.meta["astro_db.backup.repo"] = repo
    if ctx.invoked_subcommand is not None:
        return
    obj: CliContext = ctx.obj
    db = _source(obj, url)
    summary = _run(obj, lambda bars: api.backup(db, _repo(ctx, repo), full=full, progress=bars))
    obj.emit(summary, lambda s: f"{s['kind']} backup set {s['id']}: {sum(s['documents'].values())} documents, "
             f"{sum(s['deleted'].values())} deletions, {s['journal_entries']} journal entries, {s['bytes']} bytes")


@backup_cmd.command("list")
@_repo_option
@click.pass_context
def backup_list(ctx: click.Context, repo: str | None) -> None:
    """List the sets in a repository, oldest first."""
    sets = api.list_sets(_repo(ctx, repo))
    header = f"{'set':<36} {'kind':<12} {'from':<25} {'to':<25} {'docs':>9} {'deleted':>8} {'journal':>8} {'bytes':>11}"
    ctx.obj.emit(sets, lambda rows: "\n".join([header, *map(_set_line, rows)]) if rows else "no backup sets")


@backup_cmd.command("prune")
@_repo_option
@click.option("--keep-daily", type=click.IntRange(min=0), default=None, help="Keep the newest full set of each of the last N days.")
@click.option("--keep-weekly", type=click.IntRange(min=0), default=None, help="Keep the newest full set of each of the last M weeks.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted.")
@click.option("--journal/--no-journal", default=True, help="Also prune the source's change journal (needs --url).")
@_url_option
@click.pass_context
def backup_prune(
    ctx: click.Context, repo: str | None, keep_daily: int | None, keep_weekly: int | None, dry_run: bool, journal: bool, url: str | None
) -> None:
    """Delete sets outside the retention (and their incrementals) and old journal entries.

    Give --keep-daily, --keep-weekly or both; the newest full set is always kept."""
    obj: CliContext = ctx.obj
    if keep_daily is None and keep_weekly is None:
        raise click.UsageError("give a retention: --keep-daily N and/or --keep-weekly M")
    source = _source(obj, url) if journal and (url or obj.url) else None
    report = api.prune(_repo(ctx, repo), keep_daily=keep_daily, keep_weekly=keep_weekly, source=source, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    obj.emit(report, lambda r: f"kept {len(r['kept'])} sets, {verb} {len(r['deleted'])}"
             + "".join(f"\n  {verb} {i}" for i in r["deleted"]) + f"\njournal entries deleted: {r['journal_entries_deleted']}")


@backup_cmd.command("sign")
@_repo_option
@click.pass_context
def backup_sign(ctx: click.Context, repo: str | None) -> None:
    """Sign the sets taken before ASTRO_DB_BACKUP_SECRET was set (verify them first)."""
    signed = api.sign(_repo(ctx, repo))
    ctx.obj.emit({"signed": signed}, lambda r: f"signed {len(r['signed'])} set(s)"
                 + "".join(f"\n  {i}" for i in r["signed"]))


@cli.command("restore")
@_repo_option
@click.option("--until", help="Restore the state as of this ISO-8601 time (e.g. 2025-03-01T12:00:00Z).")
@click.option("--set", "set_id", help="Restore exactly this set (default: the newest).")
@click.option("--drop", is_flag=True, help="Replace the target's collections if they hold data.")
@click.option("--journal-url", help="The source database whose change journal covers --until past the newest set.")
@click.option("--erasures-url", help="The live database whose erasure ledger the restore obeys (default: --journal-url): "
              "users erased there are not restored.")
@_url_option
@pass_ctx
def restore_cmd(
    obj: CliContext, repo: str | None, until: str | None, set_id: str | None, drop: bool, journal_url: str | None,
    erasures_url: str | None, url: str | None,
) -> None:
    """Rebuild the --url database from a backup repository."""
    if not repo:
        raise click.UsageError("--repo DIR is required")
    target = _source(obj, url)
    report = _run(
        obj, lambda bars: api.restore(repo, target, until=until, set_id=set_id, drop=drop, journal_source=journal_url,
                                  erasures_from=erasures_url, progress=bars)
    )

    def human(r: dict[str, Any]) -> str:
        lines = [f"restored {', '.join(r['sets'])} into {r['target']} as of {r['as_of']} "
                 f"({r['journal_entries']} journal entries replayed)"]
        lines += [f"  {name:<24} {n:>9} documents" for name, n in r["collections"].items()]
        if r.get("migrations"):
            lines.append("  migrations: " + ", ".join(f"{v} {state}" for v, state in r["migrations"].items()))
        elif r.get("migrations") is None:
            lines.append("  no migration ledger in these sets (taken by an earlier version): the target's is unchanged")
        if r.get("erased_users"):
            skipped = sum(r.get("skipped", {}).values())
            lines.append(f"  {r['erased_users']} erased user(s) kept out: {skipped} of their documents not restored")
        lines += [f"  index {ix} on {name} not created: {why}" for name, res in r["indexes"].items() for ix, why in res["failed"].items()]
        return "\n".join(lines)

    obj.emit(report, human)


@cli.command("verify")
@_repo_option
@click.option("--deep", is_flag=True, help="Also load every set into a scratch database on --url and compare content hashes.")
@_url_option
@pass_ctx
def verify_cmd(obj: CliContext, repo: str | None, deep: bool, url: str | None) -> None:
    """Check a repository's checksums, BSON, counts and chaining; exit 2 naming a bad file."""
    if not repo:
        raise click.UsageError("--repo DIR is required")
    db = _source(obj, url) if deep else None
    report = _run(obj, lambda bars: api.verify(repo, deep=deep, url=db, progress=bars))
    obj.emit(report, lambda r: f"OK: {len(r['sets'])} sets, {r['files']} files, {r['documents']} documents verified"
             + (" (deep: every set loaded and hashed)" if r["deep"] else "")
             + (", every set's signature checked" if r["signed"] else ""))
