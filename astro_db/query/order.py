"""MongoDB's order of BSON types, for conditions that must reach every value after one.

A comparison (``$gt``, ``$lt``) matches only values of its own type bracket: ``{"_id": {"$gt":
<ObjectId>}}`` never matches a string ``_id``, ``{"energyLevel": {"$gt": 5}}`` never ``"7"``. What
comes after a value in sort order is its bracket's later values and every value of the brackets
after it, asked for by ``$type`` (``beyond``). The order itself (``rank``) is the one the local
query evaluator (``query.evaluate``) compares values by. Keyset pages (``ops.pages``) and every scan in
``_id`` order (key rotation, migrations, the change records' rebuild: ``ids_after``) use it, so
a document another client stored with another type is reached, not skipped.

``identity`` is the same order's equality as a hashable key: two values have one key exactly when
the server holds them equal (an ``_id``'s uniqueness), which Python's own ``==`` and ``hash`` do
not say (``True == 1``; ``Decimal128("1") != 1``). Every structure keyed by ``_id`` in backups and
restores uses it.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import uuid
from collections.abc import Hashable, Mapping
from decimal import Decimal
from typing import Any

import bson
from bson import Binary, Code, DBRef, Decimal128, MaxKey, MinKey, ObjectId, Timestamp
from bson.datetime_ms import DatetimeMS
from bson.regex import Regex

from ..ids import BSON_CODEC

__all__ = ["MIN", "NULL", "NUMBER", "STRING", "OBJECT", "ARRAY", "BINARY", "OID", "BOOL", "DATE", "TIMESTAMP",
           "REGEX", "MAX", "rank", "beyond", "ids_after", "FROM_START", "identity", "identity_bytes", "number_text", "is_nan"]

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


_NAN = "NaN"  # every NaN, double or decimal, is one value to the server (and one _id)


def identity(value: Any) -> Hashable:
    """A hashable key of ``value`` as the server tells values apart (the ``_id`` index's
    uniqueness): two values get the same key exactly when the server holds them equal.

    - the type class first: a bool is no number (``True`` and ``1`` are two ``_id`` values, though
      Python's ``True == 1`` and ``hash(True) == hash(1)``), a string no number (``"1"``), an
      ObjectId no string (its hex), a date no timestamp;
    - numbers of every kind by value: ``1``, ``1.0``, ``Int64(1)`` and ``Decimal128("1")`` are one
      ``_id`` (Python's exact comparison of ints, floats and ``Decimal``: a double equals a decimal
      only when their values are exactly equal; every NaN is one value, ``-0.0`` is ``0``);
    - a date by its milliseconds (what BSON holds; a naive datetime is UTC), binary data by its
      subtype and bytes (plain ``bytes`` subtype 0, a ``UUID`` subtype 4);
    - an embedded document field by field in its key order (``{a: 1, b: 2}`` and ``{b: 2, a: 1}``
      are two ``_id`` values; ``{a: 1}`` and ``{a: 1.0}`` one), an array item by item, a ``DBRef`` as
      the document it is stored as;
    - any other value (a regex, JavaScript code) by its BSON encoding, its type byte included.

    Not ``changes.records.id_text``, which names a change record and writes ``1`` and ``1.0``
    apart (their records stay distinct by revision); ``identity`` tells documents apart.
    """
    if value is None:
        return (NULL,)
    cls = value.__class__
    if cls is ObjectId:
        return (OID, value.binary)
    if cls is str:
        return (STRING, value)
    if cls is bool:
        return (BOOL, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (NUMBER, _NAN) if value != value else (NUMBER, value)
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        return (NUMBER, _NAN) if number.is_nan() else (NUMBER, number)
    if isinstance(value, _dt.datetime):
        return (DATE, _millis(value))
    if isinstance(value, DatetimeMS):
        return (DATE, int(value))
    if isinstance(value, str) and not isinstance(value, Code):
        return (STRING, str(value))
    if isinstance(value, DBRef):
        return identity(value.as_doc())
    if isinstance(value, Mapping):
        return (OBJECT, tuple((key, identity(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return (ARRAY, tuple(identity(item) for item in value))
    if isinstance(value, Binary):
        return (BINARY, value.subtype, bytes(value))
    if isinstance(value, bytes):
        return (BINARY, 0, value)
    if isinstance(value, uuid.UUID):
        return (BINARY, 4, value.bytes)
    if isinstance(value, Timestamp):
        return (TIMESTAMP, value.time, value.inc)
    if isinstance(value, MinKey):
        return (MIN,)
    if isinstance(value, MaxKey):
        return (MAX,)
    # a regex, code, ...: its BSON element (type byte, name "v", value), skipping the length prefix
    return (None, bson.encode({"v": value}, codec_options=BSON_CODEC)[4:])


def is_nan(value: Any) -> bool:
    """Whether ``value`` is a NaN, a double's or a ``Decimal128``'s (a signalling one too)."""
    if isinstance(value, float):
        return value != value
    return isinstance(value, Decimal128) and value.to_decimal().is_nan()


def identity_bytes(value: Any) -> bytes:
    """``identity(value)`` as bytes that every process computes alike (the query cache's digests
    cross processes over its bus): two values get the same bytes exactly when the server holds
    them equal. A number is written by its exact value (``5``, ``5.0`` and ``Decimal128("5")``
    alike; a double and a decimal alike only when exactly equal, as ``identity``)."""
    return repr(_portable(identity(value))).encode()


def number_text(number: Any) -> str:
    """The exact value of an int, a float or a ``Decimal`` as text, one spelling per value
    (``-0.0`` is ``0``, every NaN ``NaN``)."""
    if number == _NAN or (number.is_nan() if isinstance(number, Decimal) else number != number):
        return _NAN  # a signalling NaN too (comparing one raises)
    exact = number if isinstance(number, Decimal) else Decimal(number)
    if exact.is_infinite():
        return "Infinity" if exact > 0 else "-Infinity"
    if exact == exact.to_integral_value():
        return str(int(exact))
    return str(exact.normalize())


def _portable(key: Any) -> Any:
    """``identity``'s key with each number as ``number_text`` (Python's ``1 == 1.0`` made text)."""
    if key.__class__ is tuple:
        if len(key) == 2 and key[0] == NUMBER:
            return (NUMBER, number_text(key[1]))
        return tuple(_portable(part) for part in key)
    return key


def _millis(value: _dt.datetime) -> int:
    """A datetime's milliseconds since the epoch, as BSON stores it (naive: UTC)."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value - value.utcoffset()  # type: ignore[operator]
    return calendar.timegm(value.timetuple()) * 1000 + value.microsecond // 1000
