"""Housekeeping: expired insights and documents orphaned by deleted users (``astro-db cleanup``).

- expired insights: ``PlanetaryInsight`` documents whose ``expiresAt`` is in the past (the TTL
  index removes them eventually; this does it now, and on servers without TTL monitors);
- orphans: birth charts, insights and timing recommendations whose ``userId`` names no user,
  or a user whose ``status`` is ``deleted``.

Deletes go through the service (``db.delete_many``), so write hooks (audit, cache
invalidation) see them. ``dry_run=True`` only counts.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

__all__ = ["cleanup", "CleanupReport", "OWNED_MODELS"]

log = logging.getLogger(__name__)

#: Models whose documents belong to a user through ``userId``.
OWNED_MODELS = ("BirthChart", "PlanetaryInsight", "TimingRecommendation")
_CHUNK = 500  # ids per $in query


@dataclass
class CleanupReport:
    """What ``cleanup`` found (``dry_run``) or deleted: counts per category and model."""

    dry_run: bool
    expired_insights: int = 0
    orphans: dict[str, int] = field(default_factory=dict)
    orphaned_users: int = 0  # distinct missing or deleted user ids referenced

    @property
    def total(self) -> int:
        return self.expired_insights + sum(self.orphans.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "expired_insights": self.expired_insights,
            "orphans": dict(self.orphans),
            "orphaned_users": self.orphaned_users,
            "total": self.total,
        }


def cleanup(db: Any, *, dry_run: bool = False, now: _dt.datetime | None = None) -> CleanupReport:
    """Count (``dry_run``) or delete expired insights and orphaned documents; returns the counts."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    report = CleanupReport(dry_run=dry_run)
    expired = {"expiresAt": {"$lt": now}}
    if dry_run:
        report.expired_insights = db.count("PlanetaryInsight", expired)
    else:
        report.expired_insights = db.delete_many("PlanetaryInsight", expired)

    orphan_ids = _orphaned_user_ids(db)
    report.orphaned_users = len(orphan_ids)
    for model in OWNED_MODELS:
        report.orphans[model] = 0
        for chunk in _chunks(orphan_ids):
            query = {"userId": {"$in": chunk}}
            report.orphans[model] += db.count(model, query) if dry_run else db.delete_many(model, query)
    log.info("cleanup%s: %s", " (dry run)" if dry_run else "", report.as_dict())
    return report


def _orphaned_user_ids(db: Any) -> list[Any]:
    """User ids referenced by owned documents that name no user, or a deleted one."""
    referenced: set[Any] = set()
    for model in OWNED_MODELS:
        info = db.executor.model(model)
        coll = db.collection(info)
        # a userId that is not an ObjectId cannot name a user, but cannot be queried by id either
        referenced.update(v for v in db.executor.call(info, "distinct", lambda: coll.distinct("userId")) if isinstance(v, ObjectId))
    live: set[Any] = set()
    for chunk in _chunks(sorted(referenced, key=str)):
        rows = db.find("User", {"_id": {"$in": chunk}, "status": {"$ne": "deleted"}}, projection=["_id"], lean=True)
        live.update(row["_id"] for row in rows)
    return sorted(referenced - live, key=str)


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
