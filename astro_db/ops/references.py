"""Optional reference checks: a ``userId`` written must name an existing User.

On with ``check_references=True`` (``ASTRO_DB_CHECK_REFERENCES=1``); then ``create``,
``create_many``, ``update`` and ``update_many`` refuse a ``userId`` that names no User with
``ValidationError(errors={"userId": "no User with id ..."})``. ``create_many`` asks once, with
one ``$in`` over the batch's distinct ids, and reports the orphans in ``result.failed``.

Off by default, on purpose:
- it costs one more round trip per write that sets ``userId``;
- the Node service writing the same collections does not check either, so the check cannot
  promise that no orphan exists;
- without a transaction it is advisory: a User deleted between the check and the write still
  leaves an orphan (pass ``transaction=tx`` to read the User inside the same transaction);
- the remedy for orphans is the cascade: ``Database.delete_user_cascade`` deletes a User with
  its charts, insights and timings (a plain ``delete`` of a User does not), and
  ``astro-db cleanup`` removes those of users deleted otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bson import ObjectId

from ..errors import AstroDBError, ValidationError
from ..registry import ModelInfo
from .runtime import Runtime
from .steps import resolve, run

__all__ = ["REFERENCE_FIELD", "missing_users", "refuse_orphans", "keep_referenced", "refuse_orphan_update"]

#: the stored name of the reference every child model carries, and the model it names
REFERENCE_FIELD = "userId"
TARGET_MODEL = "User"


def missing_users(rt: Runtime, ids: Iterable[Any], transaction: Any = None) -> set[Any]:
    """The ids among ``ids`` that name no User: one ``find`` with ``$in``, ids only, through the
    run step (breaker, time bound, retries, translation) and in the write's session."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return set()
    users = resolve.model(rt, TARGET_MODEL)
    session = resolve.session(rt, transaction)
    collection = rt.connection.database[users.collection]
    found = run.call(rt, users, "check references", lambda: [
        doc["_id"] for doc in collection.find({"_id": {"$in": list(wanted)}}, {"_id": 1}, session=session)
    ], transaction)
    return wanted - set(found)


def _error(user_id: Any) -> ValidationError:
    return ValidationError(errors={REFERENCE_FIELD: f"no {TARGET_MODEL} with id {user_id}"})


def _enabled(rt: Runtime, info: ModelInfo) -> bool:
    return bool(rt.config.check_references) and info.name != TARGET_MODEL


def refuse_orphans(rt: Runtime, info: ModelInfo, sons: Sequence[Mapping[str, Any]], transaction: Any = None) -> None:
    """Raise ``ValidationError`` when a new document's ``userId`` names no User (when enabled)."""
    if not _enabled(rt, info):
        return
    missing = missing_users(rt, (son.get(REFERENCE_FIELD) for son in sons), transaction)
    for son in sons:
        if son.get(REFERENCE_FIELD) in missing:
            raise _error(son[REFERENCE_FIELD])


def keep_referenced(rt: Runtime, info: ModelInfo, sons: list[tuple[int, dict[str, Any]]],
                    failed: list[tuple[int, AstroDBError]], transaction: Any = None) -> list[tuple[int, dict[str, Any]]]:
    """``create_many``: the ``(index, son)`` pairs whose ``userId`` exists; the others are
    appended to ``failed`` as ``(index, ValidationError)``. One query for the whole batch."""
    if not _enabled(rt, info):
        return sons
    missing = missing_users(rt, (son.get(REFERENCE_FIELD) for _, son in sons), transaction)
    if not missing:
        return sons
    kept = []
    for index, son in sons:
        if son.get(REFERENCE_FIELD) in missing:
            failed.append((index, _error(son[REFERENCE_FIELD])))
        else:
            kept.append((index, son))
    return kept


def refuse_orphan_update(rt: Runtime, info: ModelInfo, update: Mapping[str, Any], transaction: Any = None) -> None:
    """Raise ``ValidationError`` when an update sets ``userId`` to an id that names no User."""
    if not _enabled(rt, info):
        return
    user_id = (update.get("$set") or {}).get(REFERENCE_FIELD)
    if isinstance(user_id, ObjectId) and missing_users(rt, [user_id], transaction):
        raise _error(user_id)
