"""How large a new document may be, cheaply: the create path's size rule (``LARGE_DOCUMENT``).

A create whose document and change record would go in one client-level ``bulkWrite``
(``ops.bulk``) sends them in two commands instead when the document is large. The command is
sent whole (``Gateway.bulk_write_command``): one BSON document, encoded by PyMongo in C, that
holds the document twice (itself and its record's post-image). Up to about 2 MB that costs less
client CPU than two ``insert`` commands, for the same wall time; from about 3.5 MB it costs as
much CPU and more wall time on nx-27017 (docs/performance.md, "Large documents"), hence 2 MiB.
The command also has the server's limit for one BSON document (16 MiB, and 16 KiB more for a
command): a document and its post-image past 8 MB cannot go in one. The estimate below counts
a bounded field's characters as bytes, so text of many-byte characters in such fields can pass
that limit under the threshold: PyMongo then refuses the command before sending it
(``DocumentTooLarge``), and the create goes the two-command way (``WriteRunner._insert_recorded``).

The rule costs nothing on the creates of most models: what each field of a model can hold at
most is worked out once per class from its plan (``models.plan``: a text field's
``max_length`` or choices, a number, date, id or flag, an embedded document of such fields, a
list with a ``max_length`` of such items), and a model whose every field is bounded, with a
bound under the threshold, is never looked at again (``estimate`` answers None at once). Only
fields with no bound (a text field without ``max_length``, binary data, a free-form dict, a
list without ``max_length``) are measured on each create (the UTF-8 length of their strings
and the length of their bytes, recursively through their lists and dicts), and a model whose bounds alone could pass
the threshold (the ODM benchmark's large model: 125 text fields of up to 1000 characters) has
every field measured. A measured string counts its UTF-8 bytes; a bound counts characters as
bytes. The estimate adds a slack for what the
service and the seal step add (``createdAt``, ``_rev``, a ciphertext's envelope, blind
indexes): it decides a path, it is not a limit (the server's 16 MB limit is the driver's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mongoengine.fields import BooleanField, DateTimeField, FloatField, IntField, ObjectIdField

from ..models.fields import BoolField, GeoPointField, NumberField, TextField, UTCDateTimeField
from ..models.plan import EMBEDDED, LIST, FieldPlan, doc_plan

__all__ = ["LARGE_DOCUMENT", "large"]

# Above this many (estimated) BSON bytes a create sends its document and its change record in
# two commands, not one bulkWrite (measured: docs/performance.md, "Large documents").
LARGE_DOCUMENT = 2 * 1024 * 1024
_SLACK = 4096  # service fields, blind indexes: what a new document holds beyond its model's fields
_SEALED = 256  # a sensitive value's ciphertext envelope beyond the value itself
_SCALAR = 32  # a number, date, id or flag with its type byte and length
_SCALARS = (NumberField, BoolField, UTCDateTimeField, ObjectIdField, IntField, FloatField, BooleanField, DateTimeField)

# per model class, settled once: (the bound in bytes of the fields not measured, the fields
# measured on each create as (stored name, the bound of one item of a list whose length alone
# is unbounded, else 0))
Measured = tuple[tuple[str, int], ...]
_RULES: dict[type, tuple[int, Measured]] = {}


def large(cls: type, sons: list[dict[str, Any]]) -> bool:
    """Whether the new documents ``sons`` of ``cls`` together may take more than
    ``LARGE_DOCUMENT`` bytes: the one question the create path asks. A model whose fields are
    all bounded, under the threshold, is answered from its bound alone."""
    limit = LARGE_DOCUMENT
    rule = _RULES.get(cls)
    if rule is None:
        rule = _rule(cls)
    bound, measured = rule
    if not measured:
        return bound * len(sons) > limit
    total = 0
    for son in sons:
        total += bound
        for key, item in measured:
            if key in son:
                value = son[key]
                total += len(value) * item if item and type(value) is list else _measure(value)
        if total > limit:
            return True
    return False


def _rule(cls: type) -> tuple[int, Measured]:
    """Every field with no bound is measured; if the others' bounds together could still pass
    the threshold, the fields with the largest bounds are measured too, until what is left is
    bounded by half of it."""
    plan = doc_plan(cls)
    bound = _SLACK
    measured: list[tuple[str, int]] = []
    bounded: list[tuple[int, str, int]] = []
    for fp in plan.fields:
        size = _bound(fp)
        item = _bound(fp.item) if fp.kind == LIST and fp.item is not None else None
        pair = (fp.stored, 0 if item is None else item + 8)
        if size is None:
            measured.append(pair)
        else:
            bound += size
            bounded.append((size, *pair))
    bounded.sort(reverse=True)
    for size, name, item in bounded:
        if bound <= LARGE_DOCUMENT // 2:
            break
        bound -= size
        measured.append((name, item))
    return _RULES.setdefault(cls, (bound, tuple(measured)))


def _bound(fp: FieldPlan) -> int | None:
    """The most bytes ``fp``'s value takes in BSON (key included), None when unbounded."""
    key = len(fp.stored or "") + 2  # a list item has no name of its own
    field = fp.field
    if fp.kind == EMBEDDED:
        total = 5
        for sub in fp.sub.fields:
            size = _bound(sub)
            if size is None:
                return None
            total += size
        return key + total
    if fp.kind == LIST:
        most = getattr(field, "max_length", None)
        item = _bound(fp.item) if fp.item is not None else None
        return None if most is None or item is None else key + 5 + most * (item + 8)
    sealed = _SEALED if getattr(field, "sensitive", False) else 0
    if isinstance(field, TextField):
        options = getattr(field, "options", None)
        most = max(map(len, options)) if options else getattr(field, "max_length", None)
        return None if most is None else key + most + 8 + sealed  # characters as bytes (an estimate)
    if isinstance(field, _SCALARS):
        return key + _SCALAR + sealed
    if isinstance(field, GeoPointField):
        return key + 128 + sealed
    return None


def _measure(value: Any) -> int:
    """About how many bytes ``value`` takes in BSON: its strings' UTF-8 and bytes' lengths,
    through its lists and dicts; anything else a scalar. A string of ASCII only (a flag CPython
    keeps) is its length; any other is encoded to count its bytes (up to 4 a character)."""
    if isinstance(value, str):
        return (len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))) + 8
    if isinstance(value, (bytes, bytearray)):
        return len(value) + 8
    if isinstance(value, Mapping):
        return 5 + sum(len(k) + 2 + _measure(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 5 + sum(8 + _measure(v) for v in value)
    return _SCALAR
