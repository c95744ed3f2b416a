"""``astro-db health | stats | explain | advise | cleanup``: the operator's checks and housekeeping.

Only parsing and printing here; the work is ``Database.health / explain / advise``,
``Database.storage_stats`` and ``astro_db.maintenance.cleanup``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from bson import json_util

from ..errors import QueryError
from ..monitoring.health import STATUS_EXIT_CODES
from . import CliContext, cli, pass_ctx

#: Server-selection bound of these commands: an operator's command should fail fast.
SELECTION_TIMEOUT_MS = 5000


def _db(ctx: CliContext, connect: bool = True, timeout_ms: int | None = None) -> Any:
    return ctx.database(connect=connect, server_selection_timeout_ms=timeout_ms or SELECTION_TIMEOUT_MS)


def _json_arg(text: str | None, name: str) -> Any:
    """Parse a JSON argument (MongoDB extended JSON: ``{"$oid": ...}``, ``{"$date": ...}``)."""
    if text is None:
        return None
    try:
        return json_util.loads(text)
    except ValueError as exc:
        raise QueryError(f"{name} is not valid JSON ({exc}): {text[:80]!r}") from None


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line: Callable[[list[str]], str] = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


# --- health ---------------------------------------------------------------------------------

@cli.command("health")
@click.option("--timeout", type=click.FloatRange(0.05, 60), default=2.0, show_default=True, help="Seconds to wait for the ping.")
@pass_ctx
def health(ctx: CliContext, timeout: float) -> None:
    """Ping the server and judge pool, error and slow rates. Exit 0 ok, 1 degraded, 2 down."""
    db = _db(ctx, connect=False, timeout_ms=max(50, int(timeout * 1000)))
    report = db.health(timeout_s=timeout)

    def human(r: dict[str, Any]) -> str:
        latency = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.1f} ms"
        pool = r["pool"]
        lines = [
            f"status:   {r['status']}",
            f"server:   {r['url']} ({r['backend']})",
            f"ping:     {latency}",
            f"breaker:  {r['breaker']}",
            f"pool:     {pool['checked_out']}/{pool['max_size']} checked out, "
            + (f"{pool['open']} open" if pool["open"] is not None else "calls in flight (command_monitoring off)"),
        ]
        lines += [f"reason:   {reason}" for reason in r["reasons"]]
        return "\n".join(lines)

    ctx.emit(report, human)
    click.get_current_context().exit(STATUS_EXIT_CODES[report["status"]])


# --- stats ----------------------------------------------------------------------------------

@cli.command("stats")
@pass_ctx
def stats(ctx: CliContext) -> None:
    """Documents, data size and index sizes per collection (collStats / dbStats where available)."""
    data = _db(ctx).storage_stats()

    def human(d: dict[str, Any]) -> str:
        rows = [
            [c["model"], c["collection"], c["count"], _bytes(c.get("size")), _bytes(c.get("total_index_size")),
             ", ".join(f"{k}={_bytes(v)}" for k, v in (c.get("index_sizes") or {}).items()) or "-"]
            for c in d["collections"]
        ]
        rows += [
            ["(internal)", c["collection"], c["count"], _bytes(c.get("size")), _bytes(c.get("total_index_size")), "-"]
            for c in d.get("internal", [])
        ]
        out = [
            f"database {d['database']} ({d['backend']})",
            _table(["model", "collection", "documents", "data", "indexes", "index sizes"], rows),
        ]
        if d["db"]:
            out.append(f"total, every collection: {d['db'].get('objects', '-')} documents, data {_bytes(d['db'].get('dataSize'))}, "
                       f"storage {_bytes(d['db'].get('storageSize'))}, indexes {_bytes(d['db'].get('indexSize'))}")
        out += [f"note: {n}" for n in d["notes"]]
        return "\n".join(out)

    ctx.emit(data, human)


# --- explain and advise ---------------------------------------------------------------------

@cli.command("explain")
@click.argument("model")
@click.argument("query_json", default="{}")
@click.option("--sort", "sort_json", help='Sort as JSON, e.g. \'{"date": -1}\'.')
@pass_ctx
def explain(ctx: CliContext, model: str, query_json: str, sort_json: str | None) -> None:
    """The winning plan of a find on MODEL with QUERY_JSON, and whether it uses an index."""
    query = _json_arg(query_json, "QUERY_JSON")
    sort = _json_arg(sort_json, "--sort")
    plan = _db(ctx).explain(model, query, sort=sort)

    def human(p: dict[str, Any]) -> str:
        lines = [f"model:          {p['model']} ({p['collection']})"]
        if p["available"]:
            lines += [
                f"plan:           {p['summary']}",
                f"index:          {p['index'] or '-'}",
                f"used index:     {'yes' if p['used_index'] else 'no'}",
                f"docs examined:  {'-' if p['docs_examined'] is None else p['docs_examined']}",
                f"keys examined:  {'-' if p['keys_examined'] is None else p['keys_examined']}",
                f"returned:       {'-' if p['n_returned'] is None else p['n_returned']}",
            ]
        else:
            lines.append("plan:           unavailable")
        lines += [f"note:           {n}" for n in p["notes"]]
        return "\n".join(lines)

    ctx.emit(plan, human)


@cli.command("advise")
@pass_ctx
def advise(ctx: CliContext) -> None:
    """Query shapes this process has seen that scan a collection, with the index to add.

    A fresh ``astro-db`` process has seen no queries of the app: run ``db.advise()`` in the
    app's process for its traffic; this command shows the advisor's view of its own session."""
    advice = _db(ctx).advise()

    def human(items: list[dict[str, Any]]) -> str:
        if not items:
            return "no advice: every query shape seen is served by an index (or none was seen in this process)"
        rows = [[a["model"], a["operation"], json_util.dumps(a["filter"]), a["count"],
                 ", ".join(f"{k}:{d}" for k, d in a["suggested_key"]), a["index"] or "(new)"]
                for a in items if a.get("kind", "index") == "index"]
        out = [_table(["model", "operation", "filter shape", "seen", "index key", "declared index"], rows)] if rows else []
        out += [f"scatter-gather: {a['operation']} on {a['model']} {json_util.dumps(a['filter'])} at {a['call_site'] or '?'}: "
                f"{a['remedy']}" for a in items if a.get("kind") == "scatter_gather"]
        return "\n".join(out)

    ctx.emit(advice, human)


# --- cleanup --------------------------------------------------------------------------------

@cli.command("cleanup")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def cleanup(ctx: CliContext, dry_run: bool, yes: bool) -> None:
    """Delete expired insights and charts/insights/timings of missing or deleted users."""
    db = _db(ctx)
    counts = db.cleanup(dry_run=True)
    if not dry_run and counts.total and not yes and not ctx.as_json:
        click.echo(_cleanup_text(counts.as_dict()))
        click.confirm(f"delete these {counts.total} documents?", abort=True)
    report = counts if dry_run or not counts.total else db.cleanup(dry_run=False)
    ctx.emit(report.as_dict(), _cleanup_text)


def _cleanup_text(d: dict[str, Any]) -> str:
    verb = "would delete" if d["dry_run"] else "deleted"
    lines = [f"expired insights:    {d['expired_insights']}"]
    lines += [f"orphaned {model + ':':<22}{n}" for model, n in d["orphans"].items()]
    lines.append(f"{verb} {d['total']} document(s); {d['orphaned_users']} missing or deleted user id(s) referenced")
    return "\n".join(lines)
