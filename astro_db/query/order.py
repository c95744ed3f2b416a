"""MongoDB's order of BSON types, for conditions that must reach every value after one.

A comparison (``$gt``, ``$lt``) matches only values of its own type bracket: ``{"_id": {"$gt":
<ObjectId>}}`` never matches a string ``_id``, ``{"energyLevel": {"$gt": 5}}`` never ``"7"``. What
comes after a value in sort order is its bracket's later values and every value of the brackets
after it, asked for by ``$type`` (``beyond``). Keyset pages (``ops.pages``) and every scan in
``_id`` order (key rotation, migrations, the change records' rebuild: ``ids_after``) use it, so
a document another client stored with another type is reached, not skipped.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from bson import Binary, Decimal128, Int64, ObjectId

__all__ = ["beyond", "ids_after"]

# MongoDB's sort order of BSON types (ascending), as ``$type`` aliases, for the types a model's
# field can hold: a comparison (``$gt``) matches only values of its own type bracket, so what comes
# after a value of another bracket is asked for by type. Null and missing come first (``{k: None}``);
# timestamps, regexes, MinKey/MaxKey and arrays (a list sort key is refused) are not listed: no
# model field holds them, and the embedded backend cannot test for the first two.
_BRACKETS = ("number", "string", "object", "binData", "objectId", "bool", "date")


def _bracket(value: Any) -> int | None:
    """The position of ``value``'s type in ``_BRACKETS`` (None: null or a type not listed)."""
    if isinstance(value, bool):  # before int: a bool is no number to the server
        return 5
    if isinstance(value, (int, float, Int64, Decimal128)):
        return 0
    if isinstance(value, str):
        return 1
    if isinstance(value, Mapping):
        return 2
    if isinstance(value, (bytes, Binary)):
        return 3
    if isinstance(value, ObjectId):
        return 4
    if isinstance(value, _dt.datetime):
        return 6
    return None


def beyond(key: str, direction: int, value: Any) -> list[dict[str, Any]]:
    """Conditions matching every value of ``key`` in a type bracket after ``value``'s in
    ``direction`` (descending, null and missing last of all)."""
    rank = _bracket(value)
    if rank is None:
        return []
    types = _BRACKETS[rank + 1:] if direction == 1 else _BRACKETS[:rank]
    found: list[dict[str, Any]] = [{key: {"$type": name}} for name in types]
    return found if direction == 1 else [*found, {key: None}]


def ids_after(after: Any) -> dict[str, Any]:
    """Documents whose ``_id`` comes after ``after`` in MongoDB's order (ascending), every type
    bracket after its own included: what a scan in ``_id`` order (key rotation, migrations, the
    change records' rebuild) asks for next, so a document another client stored under an ``_id``
    of another type (a string among ObjectIds) is reached, not skipped."""
    later = beyond("_id", 1, after)
    return {"_id": {"$gt": after}} if not later else {"$or": [{"_id": {"$gt": after}}, *later]}
