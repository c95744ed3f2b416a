"""The audit trail: one ``auditLog`` entry per document written through the service.

``AuditHook`` is a write hook (``events.WriteEvent``), registered by the Database when
``config.audit`` is true; a caller cannot skip it per call. Entries hold the time, the actor,
the action (create / update / delete), the model, the document id, the names of the fields
written (never their values) and a request id. They are written with the write's session, so
inside a transaction they commit or abort with it. ``audit_retention_days`` becomes a TTL index.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import logging
from typing import Any, Iterator

from pymongo import errors as pm

from ..errors import translate
from ..events import WriteEvent

__all__ = ["AUDIT_COLLECTION", "AuditHook", "request_context", "current_request_id", "ensure_audit_indexes", "read_trail"]

AUDIT_COLLECTION = "auditLog"
log = logging.getLogger(__name__)
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("astro_db_request_id", default=None)


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """``with request_context("req-42"):`` tags the audit entries of writes made inside it."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


class AuditHook:
    """Appends the audit entries of one write event, in the write's session."""

    def __call__(self, event: WriteEvent) -> None:
        if not event.document_ids:
            return
        time = event.time.replace(microsecond=event.time.microsecond // 1000 * 1000)
        request_id = event.request_id or current_request_id()
        entries = [
            {
                "time": time,
                "actor": event.actor,
                "action": event.action,
                "model": event.model,
                "documentId": doc_id,
                "fields": sorted(event.fields),
                "requestId": request_id,
            }
            for doc_id in event.document_ids
        ]
        coll = event.database[AUDIT_COLLECTION]
        try:
            coll.insert_many(entries, ordered=True, session=event.session)
        except Exception as exc:
            log.error("audit entry for %s of %d %s document(s) could not be written", event.action, len(entries), event.model)
            raise translate(exc, operation=f"audit of {event.action}", model=event.model) from exc


def ensure_audit_indexes(database: Any, retention_days: int | None) -> None:
    """The trail's lookup index, and a TTL index on ``time`` when a retention is set."""
    coll = database[AUDIT_COLLECTION]
    coll.create_index([("model", 1), ("documentId", 1), ("time", 1)], name="model_1_documentId_1_time_1")
    if retention_days is None:
        return
    seconds = int(retention_days) * 86_400
    try:
        coll.create_index([("time", 1)], name="time_1", expireAfterSeconds=seconds)
    except pm.OperationFailure as exc:
        if exc.code not in (85, 86):  # IndexOptionsConflict / IndexKeySpecsConflict: retention changed
            raise
        database.command("collMod", AUDIT_COLLECTION, index={"keyPattern": {"time": 1}, "expireAfterSeconds": seconds})
        log.info("audit retention changed to %d days", retention_days)


def read_trail(database: Any, model: str, document_id: Any, session: Any = None) -> list[dict[str, Any]]:
    """The entries of one document, oldest first, as JSON-ready dicts."""
    cursor = database[AUDIT_COLLECTION].find(
        {"model": model, "documentId": document_id}, sort=[("time", 1), ("_id", 1)], session=session
    )
    return [
        {
            "time": _utc(entry.get("time")),
            "actor": entry.get("actor"),
            "action": entry.get("action"),
            "model": entry.get("model"),
            "documentId": str(entry.get("documentId")),
            "fields": list(entry.get("fields") or ()),
            "requestId": entry.get("requestId"),
        }
        for entry in cursor
    ]


def _utc(value: Any) -> Any:
    if isinstance(value, _dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value
