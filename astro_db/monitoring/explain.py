"""``db.explain(model, query)``: the server's winning plan, reduced to what an operator asks.

Servers answer ``explain`` differently: MongoDB gives a tree of stages (``COLLSCAN``,
``IXSCAN`` with ``indexName``...) and execution statistics; nx-27017 gives SQLite's plan as a
list of ``{"detail": "SEARCH t USING INDEX idx_t_a ..."}`` rows and no real statistics; the
embedded backend (mongomock-ng) has no planner at all. Each case is reported for what it is:
figures a server does not give are ``None`` and ``notes`` says why, nothing crashes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pymongo import errors as pm

from ..errors import AstroDBError

if TYPE_CHECKING:  # pragma: no cover
    from ..ops import Executor

__all__ = ["explain_find", "explain_filter", "parse_plan"]

_INDEX_STAGES = {
    "IXSCAN", "IDHACK", "EXPRESS_IXSCAN", "EXPRESS_IDHACK", "COUNT_SCAN", "DISTINCT_SCAN", "TEXT", "TEXT_MATCH", "GEO_NEAR_2DSPHERE"
}
_SQL_INDEX = re.compile(r"USING (?:COVERING )?INDEX (\S+)")
_SQL_ROWID = re.compile(r"USING (?:INTEGER )?PRIMARY KEY")
_EMBEDDED_NOTE = (
    "the embedded backend (mongomock-ng) has no query planner: it scans every collection, "
    "so there is no plan, index or execution statistics to show"
)


def explain_find(ex: Executor, model: Any, query: Mapping[str, Any] | None, sort: Any = None) -> dict[str, Any]:
    """Explain ``find(model, query, sort=sort)``: walked (validated and sealed) as the find would
    be; explain needs ``monitor``, which no self-scoped actor has, so there is no scope to add."""
    from ..query import filters as q
    from ..query.pipeline import Checks
    from ..query.walker import Walker
    from ..security.filters import SealRule

    info = ex.model(model)
    rt = ex.runtime
    filt = Walker((Checks(), SealRule(rt.crypto, rt.registry))).filter(info.cls, query)
    return explain_filter(ex, info, filt, q.compile_sort(info.cls, sort))


def explain_filter(ex: Executor, info: Any, filt: Mapping[str, Any], sort: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    """Explain a compiled (stored-form) filter on ``info``'s collection."""
    base = {"model": info.name, "collection": info.collection, "filter": dict(filt), "sort": sort}
    if not ex.runtime.capabilities.explain:
        return {**base, **_unavailable(_EMBEDDED_NOTE)}
    find: dict[str, Any] = {"find": info.collection, "filter": dict(filt)}
    if sort:
        find["sort"] = dict(sort)
    command = {"explain": find, "verbosity": "executionStats"}
    database = ex.runtime.gateway
    try:
        raw = ex.call(info, "explain", lambda: database.command(command), retry=True)
    except AstroDBError as exc:
        cause = exc.__cause__
        if isinstance(cause, pm.OperationFailure):  # the server refuses or lacks explain
            return {**base, **_unavailable(f"the server could not explain this query: {str(exc)[:300]}")}
        raise
    return {**base, **parse_plan(raw)}


def parse_plan(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``{"available", "winning_plan", "summary", "index", "used_index", "collection_scan",
    "docs_examined", "keys_examined", "n_returned", "notes", "raw"}`` from an explain reply."""
    planner = raw.get("queryPlanner") or {}
    plan = planner.get("winningPlan")
    if isinstance(plan, list):
        return _sqlite_plan(raw, plan)
    if isinstance(plan, Mapping):
        return _mongodb_plan(raw, plan)
    return {**_unavailable("the server's explain output has no winning plan this parser knows"), "raw": dict(raw)}


def _mongodb_plan(raw: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    stages = list(_walk(plan.get("queryPlan", plan)))  # SBE plans nest the tree under queryPlan
    names = [stage.get("stage") for stage in stages]
    index = next((s.get("indexName") for s in stages if s.get("indexName")), None)
    if index is None and any(n in ("IDHACK", "EXPRESS_IDHACK") for n in names):
        index = "_id_"
    used = index is not None or any(n in _INDEX_STAGES for n in names)
    stats = raw.get("executionStats") or {}
    notes = []
    if names == ["EOF"]:
        notes.append("the server answered with an empty (EOF) plan: it did not plan this query")
    if not stats:
        notes.append("the server returned no execution statistics")
    return {
        "available": names != ["EOF"],
        "winning_plan": dict(plan),
        "summary": " <- ".join(f"{n} {s.get('indexName', '')}".strip() for n, s in zip(names, stages) if n),
        "index": index,
        "used_index": used,
        "collection_scan": "COLLSCAN" in names,
        "docs_examined": stats.get("totalDocsExamined"),
        "keys_examined": stats.get("totalKeysExamined"),
        "n_returned": stats.get("nReturned"),
        "notes": notes,
        "raw": dict(raw),
    }


def _sqlite_plan(raw: Mapping[str, Any], plan: list[Any]) -> dict[str, Any]:
    details = [str(row.get("detail", row)) if isinstance(row, Mapping) else str(row) for row in plan]
    index = None
    for detail in details:
        match = _SQL_INDEX.search(detail)
        if match:
            index = match.group(1)
            break
    used = index is not None or any(_SQL_ROWID.search(d) for d in details)
    scan = not used and any(d.startswith("SCAN ") for d in details)
    return {
        "available": True,
        "winning_plan": plan,
        "summary": "; ".join(details),
        "index": index,
        "used_index": used,
        "collection_scan": scan,
        "docs_examined": None,
        "keys_examined": None,
        "n_returned": None,
        "notes": [
            "this server reports an SQLite query plan (nx-27017): index use is shown, but it gives "
            "no execution statistics (documents/keys examined, documents returned)"
        ],
        "raw": dict(raw),
    }


def _walk(stage: Any) -> Iterator[Mapping[str, Any]]:
    """Every stage of a MongoDB plan tree, outermost first."""
    while isinstance(stage, Mapping):
        yield stage
        children = stage.get("inputStages")
        if children:
            for child in children:
                yield from _walk(child)
            return
        stage = stage.get("inputStage")


def _unavailable(note: str) -> dict[str, Any]:
    return {
        "available": False,
        "winning_plan": None,
        "summary": None,
        "index": None,
        "used_index": None,
        "collection_scan": None,
        "docs_examined": None,
        "keys_examined": None,
        "n_returned": None,
        "notes": [note],
        "raw": None,
    }
