"""MongoDB's order of BSON types, for conditions that must reach every value after one.

A comparison (``$gt``, ``$lt``) matches only values of its own type bracket: ``{"_id": {"$gt":
<ObjectId>}}`` never matches a string ``_id``, ``{"energyLevel": {"$gt": 5}}`` never ``"7"``. What
comes after a value in sort order is its bracket's later values and every value of the brackets
after it, asked for by ``$type`` (``beyond``). The order itself (``rank``) is the one the local
query evaluator (``query.evaluate``) compares values by. Keyset pages (``ops.pages``) and every scan in
``_id`` order (key rotation, migrations, the change records' rebuild: ``ids_after``) use it, so
a document another client stored with another type is reached, not skipped.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

from bson import Code, Decimal128, MaxKey, MinKey, ObjectId, Timestamp
from bson.regex import Regex

__all__ = ["MIN", "NULL", "NUMBER", "STRING", "OBJECT", "ARRAY", "BINARY", "OID", "BOOL", "DATE", "TIMESTAMP",
           "REGEX", "MAX", "rank", "beyond", "ids_after", "FROM_START"]

# the server's canonical type order (numbers of every kind share a rank, as do null and missing)
MIN, NULL, NUMBER, STRING, OBJECT, ARRAY, BINARY, OID, BOOL, DATE, TIMESTAMP, REGEX, MAX = (
    1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 47, 50, 127)

# ``$type`` aliases of the ranks a condition asks for by type, for the types a model's field can
# hold. Null and missing come first (``{k: None}``); timestamps, regexes, MinKey/MaxKey and arrays
# (a list sort key is refused) are not listed: no model field holds them, and the embedded
# backend cannot test for the first two.
_ALIASES = {NUMBER: "number", STRING: "string", OBJECT: "object", BINARY: "binData", OID: "objectId", BOOL: "bool",
            DATE: "date"}


def rank(value: Any) -> int | None:
    """``value``'s type in the server's sort order (None: a type this module does not order)."""
    if value is None:
        return NULL
    if isinstance(value, bool):  # before int: a bool is no number to the server
        return BOOL
    if isinstance(value, (int, float, Decimal128)):
        return NUMBER
    if isinstance(value, str):
        return None if isinstance(value, Code) else STRING  # Code is a str, not a string to BSON
    if isinstance(value, Mapping):
        return OBJECT  # a DBRef is no Mapping: not ordered
    if isinstance(value, (list, tuple)):
        return ARRAY
    if isinstance(value, (bytes, uuid.UUID)):
        return BINARY
    if isinstance(value, ObjectId):
        return OID
    if isinstance(value, _dt.datetime):
        return DATE
    if isinstance(value, Timestamp):
        return TIMESTAMP
    if isinstance(value, (re.Pattern, Regex)):
        return REGEX
    if isinstance(value, MinKey):
        return MIN
    if isinstance(value, MaxKey):
        return MAX
    return None


def beyond(key: str, direction: int, value: Any) -> list[dict[str, Any]]:
    """Conditions matching every value of ``key`` in a type bracket after ``value``'s in
    ``direction`` (descending, null and missing last of all)."""
    own = rank(value)
    if own not in _ALIASES:
        return []
    types = [alias for r, alias in sorted(_ALIASES.items()) if (r > own if direction == 1 else r < own)]
    found: list[dict[str, Any]] = [{key: {"$type": name}} for name in types]
    return found if direction == 1 else [*found, {key: None}]


class _FromStart:
    """``FROM_START``: where a scan in ``_id`` order starts, before every ``_id``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FROM_START"


FROM_START: Any = _FromStart()
"""The position of a scan in ``_id`` order that has read nothing yet. Not ``None``: ``None`` is
an ``_id`` a document may have (``_id: null``, which sorts first), so a scan whose batch ended
on it started again from the beginning, for ever (``reconcile_changes()``, a migration)."""


def ids_after(after: Any) -> dict[str, Any]:
    """Documents whose ``_id`` comes after ``after`` in MongoDB's order (ascending), every type
    bracket after its own included: what a scan in ``_id`` order (key rotation, migrations, the
    change records' rebuild) asks for next, so a document another client stored under an ``_id``
    of another type (a string among ObjectIds) is reached, not skipped. ``FROM_START``: every
    document (``{}``); ``None`` is the ``_id`` null."""
    if after is FROM_START:
        return {}
    if after is None:  # the first _id of all: every other comes after it (``$gt: null`` matches none)
        return {"_id": {"$ne": None}}
    later = beyond("_id", 1, after)
    return {"_id": {"$gt": after}} if not later else {"$or": [{"_id": {"$gt": after}}, *later]}
