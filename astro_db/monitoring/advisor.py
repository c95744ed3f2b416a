"""The query advisor: read shapes the monitor has seen that no index serves, and the index to add;
and, on models that declare a shard key, shapes that do not carry it (scatter-gather).

Each recorded shape (a filter with its values masked, plus its sort) is explained with neutral
values of the same types (the plan depends on fields and operators, not on values). A shape
whose plan is a collection scan is listed with the index that would serve it: a declared
index whose leading field the query constrains, else a new key built by the
equality-sort-range rule. Where the server cannot explain (the embedded backend, or an
explain failure) the advice falls back to the declared indexes: a shape whose fields start no
declared index is listed.

Scatter-gather: a model sharded on ``{userId: "hashed"}`` (``astro_db.sharding``) routes a query
to one shard only when the filter pins ``userId`` by equality; any other query goes to every
shard and waits for the slowest. Such shapes are listed (``kind: "scatter_gather"``) with the
``call_site`` (file:line outside astro_db) that first made them, whether or not the deployment
is sharded yet: the fix is cheapest before it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import AstroDBError
from ..indexes import declared_indexes
from ..sharding import is_targeted, key_text, shard_key
from .explain import explain_filter
from .shapes import filter_fields, placeholder_filter

if TYPE_CHECKING:  # pragma: no cover
    from ..ops import Executor

__all__ = ["advise", "serving_index", "suggest_key"]

log = logging.getLogger(__name__)


def advise(ex: Executor, *, explain: bool = True) -> list[dict[str, Any]]:
    """One entry per recorded read shape that needs an index, most frequent first."""
    out = []
    registry = ex.runtime.registry
    for entry in ex.runtime.monitor.query_shapes():
        fields = filter_fields(entry["filter"])
        sort = [(name, direction) for name, direction in entry["sort"]]
        info = registry.resolve(entry["model"]) if entry["model"] in registry.names else None
        if info is None:
            continue
        scatter = _scatter_gather(info, entry, fields)
        if scatter is not None:
            out.append(scatter)
        if not fields and not sort:
            continue  # reading a whole collection: no index helps
        declared = declared_indexes(info)
        plan = _plan(ex, info, entry, sort) if explain else None
        if plan is not None and plan["available"]:
            if plan["used_index"] or not plan["collection_scan"]:
                continue
            basis = f"the server's plan is a collection scan ({plan['summary']})"
        else:
            if serving_index(fields, sort, declared) is not None:
                continue
            basis = "no declared index starts with a field this query uses (explain unavailable: " + (
                plan["notes"][0] if plan else "explain failed or was not asked for") + ")"
        declared_match = serving_index(fields, sort, declared)
        out.append({
            "kind": "index",
            "model": entry["model"],
            "operation": entry["operation"],
            "filter": entry["filter"],
            "sort": entry["sort"],
            "count": entry["count"],
            "basis": basis,
            "index": declared_match["name"] if declared_match else None,
            "suggested_key": [list(pair) for pair in (declared_match["key"] if declared_match else suggest_key(fields, sort))],
            "declared": declared_match is not None,
            "call_site": entry.get("call_site"),
        })
    return out


def _scatter_gather(info: Any, entry: dict[str, Any], fields: dict[str, str]) -> dict[str, Any] | None:
    """The advice for a shape on a sharded model that does not carry its shard key, else ``None``."""
    key = shard_key(info)
    if key is None or is_targeted(fields, key):
        return None
    names = ", ".join(key)
    return {
        "kind": "scatter_gather",
        "model": entry["model"],
        "operation": entry["operation"],
        "filter": entry["filter"],
        "sort": entry["sort"],
        "count": entry["count"],
        "shard_key": dict(key),
        "call_site": entry.get("call_site"),
        "basis": (f"{info.collection} is sharded on {key_text(key)} and this filter has no equality on {names}: "
                  f"on a sharded cluster every shard runs it (scatter-gather)"),
        "remedy": f"add the {names} of the user concerned to the filter, or run it as a report "
                  f"(read_preference=\"secondaryPreferred\") off the request path",
    }


def serving_index(fields: dict[str, str], sort: list[tuple[str, int]], declared: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The declared index whose leading field the query constrains (or sorts on), if any."""
    if "_id" in fields:
        return {"name": "_id_", "key": [("_id", 1)]}
    sort_fields = [name for name, _ in sort]
    best = None
    for spec in declared:
        key = spec["key"]
        first, kind = key[0][0], key[0][1]
        if kind == "text":
            if "$text" in fields:
                return spec
            continue
        if kind == "2dsphere":
            if fields.get(first) == "geo":
                return spec
            continue
        if first in fields or (not fields and sort_fields and first == sort_fields[0]):
            prefix = sum(1 for name, _ in key if name in fields or name in sort_fields)
            if best is None or prefix > best[0]:
                best = (prefix, spec)
    return best[1] if best else None


def suggest_key(fields: dict[str, str], sort: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """An index key by the equality-sort-range rule: equality fields, then the sort, then ranges."""
    key: list[tuple[str, int]] = []
    seen: set[str] = set()

    def add(name: str, direction: int) -> None:
        if name not in seen and not name.startswith("$"):
            seen.add(name)
            key.append((name, direction))

    for name, kind in fields.items():
        if kind == "eq":
            add(name, 1)
    for name, direction in sort:
        add(name, direction)
    for name, kind in fields.items():
        if kind in ("range", "other"):
            add(name, 1)
    return key


def _plan(ex: Executor, info: Any, entry: dict[str, Any], sort: list[tuple[str, int]]) -> dict[str, Any] | None:
    try:
        return explain_filter(ex, info, placeholder_filter(entry["filter"]), sort or None)
    except AstroDBError as exc:
        log.info("advisor could not explain a %s shape on %s: %s", entry["operation"], info.name, exc)
        return None
