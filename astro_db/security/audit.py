"""The audit trail's request tagging, and the name of the collection earlier versions wrote.

The trail itself is the audit part of the change records (``astro_db.changes``: one record per
document a write changed, with the time, the actor, the action, the model, the document id,
its revision, the names of the fields written, never their values, and a request id), written
by every write through the service when ``config.audit`` is true; a caller cannot skip it per
call. ``request_context`` tags the records of the writes made inside it. ``auditLog`` holds
the entries of earlier versions: still read by ``Database.audit_trail``, no longer written.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

__all__ = ["AUDIT_COLLECTION", "request_context", "current_request_id"]

AUDIT_COLLECTION = "auditLog"
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("astro_db_request_id", default=None)


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """``with request_context("req-42"):`` tags the audit records of writes made inside it."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


def current_request_id() -> str | None:
    return _REQUEST_ID.get()
