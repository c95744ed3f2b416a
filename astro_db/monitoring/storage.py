"""Storage figures per collection: documents, data and index sizes (``astro-db stats``).

Counts come from the service; sizes from ``collStats`` / ``dbStats`` where the server has them
(MongoDB, nx-27017). The embedded backend has neither: only counts are shown, and ``notes``
says so. The service's own bookkeeping (the audit log, the change journal) is listed apart, under
``internal``: ``dbStats`` totals include it, and a note says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import AstroDBError
from ..registry import SERVICE_COLLECTIONS

if TYPE_CHECKING:  # pragma: no cover
    from ..driver.gateway import Gateway
    from ..registry import ModelRegistry

__all__ = ["storage_stats", "Counts"]

_DB_KEYS = ("collections", "objects", "dataSize", "storageSize", "indexes", "indexSize", "totalSize")
# astro_db's own collections: the change records, the erasure ledger, and the audit log and
# journal of before the change records
INTERNAL_COLLECTIONS = (*SERVICE_COLLECTIONS, "changeJournal")  # + the journal of versions before change records


class Counts(Protocol):
    """The service's count (a ``Database`` is one): a model's documents, through the pipeline."""

    def count(self, model: str, query: Mapping[str, Any]) -> int: ...


def storage_stats(counts: Counts, gateway: Gateway, models: ModelRegistry, *, database: str,
                  sizes: bool) -> dict[str, Any]:
    """``{"database", "backend", "db": {...} | None, "collections": [...], "notes": [...]}``.

    Narrow collaborators, composed by ``Database.storage_stats``: the service's counts, the
    gateway through the run step (``dbStats``, ``collStats``, the collection listing and the
    internal collections' counts get its breaker, bound, retries and translation), the registry,
    and whether the backend has ``collStats`` / ``dbStats`` (``sizes``)."""
    notes: list[str] = []
    embedded = not sizes
    db_figures = None
    if embedded:
        notes.append("the embedded backend has no collStats/dbStats: sizes are not available")
    else:
        raw = _command(gateway, {"dbStats": 1})
        if raw is None:
            notes.append("the server refused dbStats")
        else:
            db_figures = {key: raw[key] for key in _DB_KEYS if key in raw}
    rows = []
    for info in models:
        row: dict[str, Any] = {"model": info.name, "collection": info.collection, "count": counts.count(info.name, {})}
        rows.append(_sizes(gateway, row, notes, embedded))
    internal = []
    present = set(gateway.list_collection_names())
    for name in INTERNAL_COLLECTIONS:
        if name in present:
            count = int(gateway[name].count_documents({}))
            internal.append(_sizes(gateway, {"model": None, "collection": name, "count": count}, notes, embedded))
    if db_figures and internal:
        notes.append(f"the database totals include astro_db's own {' and '.join(r['collection'] for r in internal)} "
                     "(listed under internal)")
    return {
        "database": database,
        "backend": "embedded" if embedded else "server",
        "db": db_figures,
        "collections": rows,
        "internal": internal,
        "notes": notes,
    }


def _sizes(gateway: Gateway, row: dict[str, Any], notes: list[str], embedded: bool) -> dict[str, Any]:
    """``row`` with the collection's ``collStats`` sizes added (none on the embedded backend)."""
    if embedded:
        return row
    raw = _command(gateway, {"collStats": row["collection"]})
    if raw is None:
        notes.append(f"the server refused collStats for {row['collection']}")
        return row
    row.update({
        "size": raw.get("size"),
        "storage_size": raw.get("storageSize"),
        "avg_obj_size": raw.get("avgObjSize"),
        "total_index_size": raw.get("totalIndexSize"),
        "index_sizes": dict(raw.get("indexSizes") or {}),
    })
    return row


def _command(gateway: Gateway, command: dict[str, Any]) -> dict[str, Any] | None:
    """Run a read-only admin command through the run step; ``None`` if the server refuses it."""
    try:
        reply: dict[str, Any] | None = gateway.command(command)
        return reply
    except AstroDBError as exc:
        from pymongo.errors import OperationFailure

        if isinstance(exc.__cause__, (OperationFailure, NotImplementedError)):
            return None
        raise
