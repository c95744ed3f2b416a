"""Optional reference checks: a reference a model declares must name an existing document.

A model declares its references in ``meta["references"]`` (field -> model; the built-in
charts, insights and timings declare ``{"user_id": "User"}``). On with
``check_references=True`` (``ASTRO_DB_CHECK_REFERENCES=1``); then ``create``, ``create_many``,
``update`` and ``update_many`` refuse a reference that names no document of its model with
``ValidationError(errors={"userId": "no User with id ..."})``. ``create_many`` asks once per
reference, with one ``$in`` over the batch's distinct ids, and reports the orphans in
``result.failed``.

Off by default, on purpose:
- it costs one more round trip per write that sets a reference;
- the Node service writing the same collections does not check either, so the check cannot
  promise that no orphan exists;
- without a transaction it is advisory: a User deleted between the check and the write still
  leaves an orphan (pass ``transaction=tx`` to read the User inside the same transaction);
- the remedy for orphans is the cascade: ``Database.delete_user_cascade`` deletes a user with
  every document a model declares as owned by them (a plain ``delete`` of a user does not), and
  ``astro-db cleanup`` removes those of users deleted otherwise.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import AstroDBError, ValidationError
from ..query.order import identity
from ..registry import ModelInfo
from .runtime import Runtime
from .steps import resolve, run

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MaybeTransaction

__all__ = ["missing", "refuse_orphans", "keep_referenced", "refuse_orphan_update"]


def missing(rt: Runtime, target: str, ids: Iterable[Any], transaction: MaybeTransaction = None) -> set[Hashable]:
    """The ids among ``ids`` that name no document of the model ``target``, as
    ``query.order.identity`` keys (the server's equality of ids: ``True`` is not ``1``, an
    embedded-document id is one): one ``find`` with ``$in``, ids only, through the run step
    (breaker, time bound, retries, translation) and in the write's session."""
    wanted = {identity(i): i for i in ids if i is not None}
    if not wanted:
        return set()
    info = resolve.model(rt, target)
    session = resolve.session(rt, transaction)
    collection = rt.gateway[info.collection]
    found = run.call(rt, info, "check references", lambda: [
        doc["_id"] for doc in collection.find({"_id": {"$in": list(wanted.values())}}, {"_id": 1}, session=session)
    ], transaction)
    return set(wanted) - {identity(i) for i in found}


def _error(rt: Runtime, field: str, target: str, value: Any) -> ValidationError:
    return ValidationError(errors={field: f"no {resolve.model(rt, target).name} with id {value}"})


def _references(rt: Runtime, info: ModelInfo) -> Mapping[str, str]:
    return info.declaration.references if rt.config.check_references else {}


def refuse_orphans(rt: Runtime, info: ModelInfo, sons: Sequence[Mapping[str, Any]], transaction: MaybeTransaction = None) -> None:
    """Raise ``ValidationError`` when a new document's reference names nothing (when enabled)."""
    if not rt.config.check_references:  # ``_references``, read in place (every create passes here)
        return
    for field, target in info.declaration.references.items():
        absent = missing(rt, target, (son.get(field) for son in sons), transaction)
        for son in sons:
            if absent and field in son and identity(son[field]) in absent:
                raise _error(rt, field, target, son[field])


def keep_referenced(rt: Runtime, info: ModelInfo, sons: list[tuple[int, dict[str, Any]]],
                    failed: list[tuple[int, AstroDBError]], transaction: MaybeTransaction = None) -> list[tuple[int, dict[str, Any]]]:
    """``create_many``: the ``(index, son)`` pairs whose references exist; the others are
    appended to ``failed`` as ``(index, ValidationError)``. One query per reference for the batch."""
    for field, target in _references(rt, info).items():
        absent = missing(rt, target, (son.get(field) for _, son in sons), transaction)
        if not absent:
            continue
        kept = []
        for index, son in sons:
            if field in son and identity(son[field]) in absent:
                failed.append((index, _error(rt, field, target, son[field])))
            else:
                kept.append((index, son))
        sons = kept
    return sons


def refuse_orphan_update(rt: Runtime, info: ModelInfo, update: Mapping[str, Any], transaction: MaybeTransaction = None) -> None:
    """Raise ``ValidationError`` when an update sets a reference to an id that names nothing."""
    if not rt.config.check_references:  # ``_references``, read in place (every update passes here)
        return
    for field, target in info.declaration.references.items():
        value = (update.get("$set") or {}).get(field)
        if value is not None and missing(rt, target, [value], transaction):  # any id: a slug model's too
            raise _error(rt, field, target, value)
