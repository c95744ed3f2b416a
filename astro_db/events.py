"""Write events: what the service tells its write hooks (audit trail, change journal) after a write.

Hooks run synchronously, after the write succeeded, with the write's session: inside a
transaction their own writes commit or abort with it. A hook that raises fails the call.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["WriteEvent", "WriteHook"]


@dataclass(frozen=True)
class WriteEvent:
    """One successful create, update or delete through the service."""

    model: str  # class name, e.g. "BirthChart"
    collection: str  # stored collection name, e.g. "birthCharts"
    action: str  # "create" | "update" | "delete"
    document_ids: tuple[Any, ...]  # ObjectIds of the documents written
    fields: tuple[str, ...]  # stored names of the fields set (all fields for create)
    database: Any  # the PyMongo Database the write went to
    session: Any = None  # the ClientSession of the write's transaction, if any
    transaction: Any = None  # the astro_db Transaction, if any (for after_commit work)
    actor: str | None = None
    request_id: str | None = None
    documents: tuple[dict[str, Any], ...] | None = None  # stored form after a create or a single update
    time: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))


class WriteHook(Protocol):
    def __call__(self, event: WriteEvent) -> None: ...


HookList = list[Callable[[WriteEvent], None]]
