"""Housekeeping: expired documents and documents orphaned by deleted users (``astro-db cleanup``).

- expired: documents of every model with a TTL index (``expireAfterSeconds`` on one date field,
  the built-in ``PlanetaryInsight``'s ``expiresAt``) whose time has passed (the TTL index removes
  them eventually; this does it now, and on servers without TTL monitors);
- orphans: documents of every model that declares an owner field (``meta["owner"]``: the built-in
  charts, insights and timing recommendations, and the app's own) whose owner names no user, or
  a user the user model declares deleted (``meta["deleted_when"]``: ``status`` ``deleted``).

Deletes go through the service (``db.delete_many``), so write hooks (audit, cache
invalidation) see them. ``dry_run=True`` only counts.

Its collaborators are narrow (``Database.cleanup`` composes them): the service's public calls it
needs (``Service``: count, delete_many, find), the gateway through the run step (one
``distinct`` per owned model) and the model registry; never the ``Database``'s executor or runtime.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bson import ObjectId

if TYPE_CHECKING:  # pragma: no cover
    from .driver.gateway import Gateway
    from .registry import ModelInfo, ModelRegistry

__all__ = ["cleanup", "CleanupReport", "Service", "ttl_fields"]

log = logging.getLogger(__name__)

_CHUNK = 500  # ids per $in query


class Service(Protocol):
    """The service calls cleanup makes (a ``Database`` is one): counts and deletes go through the
    pipeline, so authorization, change records and cache invalidation apply."""

    def count(self, model: str, query: Mapping[str, Any]) -> int: ...

    def delete_many(self, model: str, query: Mapping[str, Any]) -> int: ...

    def find_ids(self, model: str, query: Mapping[str, Any]) -> list[Any]: ...


@dataclass
class CleanupReport:
    """What ``cleanup`` found (``dry_run``) or deleted: counts per category and model."""

    dry_run: bool
    expired_insights: int = 0  # expired documents of every model with a TTL index
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


def ttl_fields(info: Any) -> list[tuple[str, float]]:
    """``(stored field, seconds)`` of each TTL index the model declares on one field."""
    from .indexes import declared_indexes

    return [(spec["key"][0][0], float(spec["expireAfterSeconds"])) for spec in declared_indexes(info)
            if "expireAfterSeconds" in spec and len(spec["key"]) == 1]


def cleanup(service: Service, gateway: Gateway, models: ModelRegistry, *, dry_run: bool = False,
            now: _dt.datetime | None = None) -> CleanupReport:
    """Count (``dry_run``) or delete expired and orphaned documents; returns the counts."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    report = CleanupReport(dry_run=dry_run)
    for info in models:
        for stored, seconds in ttl_fields(info):
            expired = {stored: {"$lt": now - _dt.timedelta(seconds=seconds)}}
            report.expired_insights += service.count(info.name, expired) if dry_run else service.delete_many(info.name, expired)

    owned = models.owned
    orphan_ids = _orphaned_user_ids(service, gateway, models, owned) if owned else []
    report.orphaned_users = len(orphan_ids)
    for info in owned:
        report.orphans[info.name] = 0
        for chunk in _chunks(orphan_ids):
            query: dict[str, Any] = {str(info.declaration.owner): {"$in": chunk}}
            report.orphans[info.name] += service.count(info.name, query) if dry_run else service.delete_many(info.name, query)
    log.info("cleanup%s: %s", " (dry run)" if dry_run else "", report.as_dict())
    return report


def _orphaned_user_ids(service: Service, gateway: Gateway, models: ModelRegistry, owned: list[ModelInfo]) -> list[Any]:
    """User ids referenced by owned documents that name no user, or a deleted one."""
    referenced: set[Any] = set()
    for info in owned:
        # an owner that is not an ObjectId cannot name a user, but cannot be queried by id either
        distinct = gateway[info.collection].distinct(str(info.declaration.owner))
        referenced.update(v for v in distinct if isinstance(v, ObjectId))
    users = models.users()
    alive = {field: {"$ne": value} for field, value in users.declaration.deleted_when.items()}
    live: set[Any] = set()
    for chunk in _chunks(sorted(referenced, key=str)):
        live.update(service.find_ids(users.name, {"_id": {"$in": chunk}, **alive}))
    return sorted(referenced - live, key=str)


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
