"""Change records: one record per document a write changed (a large create's packed), the audit trail and the journal in one.

Every create, update and delete through the service writes, for each document it actually
changed, one record into ``astroChanges`` (``records``; a ``create_many`` of 32 documents or
more writes them packed, one record per 1,000 documents, which every reader reads per
document), ordered per document by a revision the
write itself advanced on the server (``revision``; a document created again under an earlier
``_id`` continues its revisions), identified by the writing operation (``records``: never
reused by another write), written under the same retry and time bound as the write,
idempotently, and never silently dropped (``log``; a delete's record is written first as an
intent and confirmed after, so a crash in between leaves something ``reconcile_changes()``
settles). ``audit_trail()`` and the backups (incremental sets, point-in-time restore) both read
them (``reader``).
"""

from __future__ import annotations

from .log import ChangeLog, last_revisions, recorded
from .reader import prune_images, read_trail, read_window
from .records import CHANGES_COLLECTION, ensure_change_indexes, record_id
from .revision import OP_FIELD, REV_FIELD, advance, new_op_id, revision_of

__all__ = [
    "CHANGES_COLLECTION", "ChangeLog", "OP_FIELD", "REV_FIELD", "advance",
    "ensure_change_indexes", "last_revisions", "new_op_id", "prune_images", "read_trail", "read_window", "record_id", "recorded",
    "revision_of",
]
