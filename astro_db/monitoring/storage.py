"""Storage figures per collection: documents, data and index sizes (``astro-db stats``).

Counts come from the service; sizes from ``collStats`` / ``dbStats`` where the server has them
(MongoDB, nx-27017). The embedded backend has neither: only counts are shown, and ``notes``
says so. The service's own bookkeeping (the audit log, the change journal) is listed apart, under
``internal``: ``dbStats`` totals include it, and a note says so.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import AstroDBError

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB
    from ..database import Database
    from ..ops import Executor

__all__ = ["storage_stats"]

_DB_KEYS = ("collections", "objects", "dataSize", "storageSize", "indexes", "indexSize", "totalSize")
#: collections astro_db writes for itself: the audit log and the change journal
# astro_db's own collections: the change records, and the audit log and journal of before them
INTERNAL_COLLECTIONS = ("astroChanges", "auditLog", "changeJournal", "astroErasures")


def storage_stats(db: Database) -> dict[str, Any]:
    """``{"database", "backend", "db": {...} | None, "collections": [...], "notes": [...]}``."""
    ex = db.executor
    rt = ex.runtime
    database = rt.gateway
    notes: list[str] = []
    embedded = not rt.capabilities.storage_stats
    db_figures = None
    if embedded:
        notes.append("the embedded backend has no collStats/dbStats: sizes are not available")
    else:
        raw = _command(ex, database, {"dbStats": 1})
        if raw is None:
            notes.append("the server refused dbStats")
        else:
            db_figures = {key: raw[key] for key in _DB_KEYS if key in raw}
    rows = []
    for info in rt.registry:
        row: dict[str, Any] = {"model": info.name, "collection": info.collection, "count": db.count(info)}
        rows.append(_sizes(ex, database, row, info, notes, embedded))
    internal = []
    present = set(ex.call(None, "list collections", database.list_collection_names))
    for name in INTERNAL_COLLECTIONS:
        if name in present:
            count: int = ex.call(None, "count", partial(_count, database, name))
            internal.append(_sizes(ex, database, {"model": None, "collection": name, "count": count}, None, notes, embedded))
    if db_figures and internal:
        notes.append(f"the database totals include astro_db's own {' and '.join(r['collection'] for r in internal)} "
                     "(listed under internal)")
    return {
        "database": rt.config.database_name,
        "backend": "embedded" if embedded else "server",
        "db": db_figures,
        "collections": rows,
        "internal": internal,
        "notes": notes,
    }


def _sizes(ex: Executor, database: MongoDB, row: dict[str, Any], info: Any, notes: list[str], embedded: bool) -> dict[str, Any]:
    """``row`` with the collection's ``collStats`` sizes added (none on the embedded backend)."""
    if embedded:
        return row
    raw = _command(ex, database, {"collStats": row["collection"]}, info)
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


def _command(ex: Executor, database: MongoDB, command: dict[str, Any], info: Any = None) -> dict[str, Any] | None:
    """Run a read-only admin command through the service; ``None`` if the server refuses it."""
    try:
        reply: dict[str, Any] | None = ex.call(info, next(iter(command)), lambda: database.command(command))
        return reply
    except AstroDBError as exc:
        from pymongo.errors import OperationFailure

        if isinstance(exc.__cause__, (OperationFailure, NotImplementedError)):
            return None
        raise


def _count(database: MongoDB, name: str) -> int:
    return int(database[name].count_documents({}))
