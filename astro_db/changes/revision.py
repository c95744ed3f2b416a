"""The per-document revision: how every write through the service orders itself on the server.

Each document carries ``_rev`` (an int; absent means 0, a new document's revision, so a created
document is stored exactly as before) and ``_op`` (the id of the service
operation that last changed it). Every update the service sends advances ``_rev`` with ``$inc``
and stamps ``updatedAt`` with ``$currentDate`` in the same atomic command as the change, so the
post-image the server returns says which revision this write made and when (by the server's
clock). Change records are keyed and ordered by ``(document, _rev)``, whichever client happened
to write its record first. ``_op`` lets a multi-document update read back exactly the documents
it changed (``{_op: <its id>}``), never one another caller changed or deleted meanwhile.

Both fields are service fields (callers cannot set or query them through ``update``), and the
Node service's Mongoose models ignore them: Mongoose keeps fields its schema does not declare
when it saves (it ``$set``s only the paths it changed), so a Node write neither drops nor
advances ``_rev`` (it writes no change record either).
"""

from __future__ import annotations

from typing import Any

from ..ids import new_id

__all__ = ["REV_FIELD", "OP_FIELD", "advance", "revision_of", "new_op_id"]

REV_FIELD = "_rev"
OP_FIELD = "_op"


#: A fresh id for one service operation (it tags the documents that operation changed): a
#: client-made ObjectId (``astro_db.ids.new_id``, the function itself: no call through here).
new_op_id = new_id


def advance(update: dict[str, Any], op_id: Any) -> dict[str, Any]:
    """``update`` (operator form) that also advances the revision: ``$inc _rev``, ``$set _op``
    and ``$currentDate updatedAt`` (the server's clock; a client ``updatedAt`` is dropped).

    Every write that changes a document through the service uses it, the list compare-and-set
    path included, so no change escapes the revision order."""
    spec = update.get("$set")
    if spec is not None and len(update) == 1:  # a $set alone (most updates): the same document, built directly
        setter = dict(spec)
        if "updatedAt" in setter:
            del setter["updatedAt"]
        setter[OP_FIELD] = op_id
        return {"$set": setter, "$inc": {REV_FIELD: 1}, "$currentDate": {"updatedAt": True}}
    out = {op: dict(spec) for op, spec in update.items()}
    setter = out.setdefault("$set", {})
    setter.pop("updatedAt", None)
    setter[OP_FIELD] = op_id
    if not setter:
        del out["$set"]
    out.setdefault("$inc", {})[REV_FIELD] = 1
    out.setdefault("$currentDate", {})["updatedAt"] = True
    return out


def revision_of(document: dict[str, Any]) -> int:
    """A stored document's revision (0 for one no update has touched yet)."""
    return int(document.get(REV_FIELD) or 0)
