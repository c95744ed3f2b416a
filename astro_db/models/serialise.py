"""``to_dict``: a model instance as a JSON-ready dict in the stored (camelCase) shape.

``_id`` becomes ``"id"`` (a string) at every level, ObjectIds become hex strings, datetimes
ISO-8601 UTC with ``Z``, and Mongoose's ``__v`` is left out. With ``masked=True`` fields that
declare a mask kind (emails, names, ``sensitive=True``) are passed through ``mask_value``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from mongoengine.base import BaseDocument
from mongoengine.fields import EmbeddedDocumentField, ListField

from .fields import iso_utc
from .masking import field_mask_kind, mask_value

__all__ = ["document_to_dict", "json_value"]

_HIDDEN = frozenset({"__v"})


def document_to_dict(doc: BaseDocument, masked: bool = False) -> dict[str, Any]:
    """Serialise a Document or EmbeddedDocument; only declared fields with a value appear."""
    out: dict[str, Any] = {}
    data = doc._data
    for name in doc._fields_ordered:
        value = data.get(name)
        field = doc._fields[name]
        key = field.db_field
        if value is None or key in _HIDDEN:
            continue
        if key == "_id":
            key = "id"
        out[key] = _field_value(field, value, masked)
    return out


def _field_value(field: Any, value: Any, masked: bool) -> Any:
    if isinstance(field, EmbeddedDocumentField) or isinstance(value, BaseDocument):
        return document_to_dict(value, masked) if isinstance(value, BaseDocument) else json_value(value)
    if isinstance(field, ListField) and isinstance(value, (list, tuple)):
        item_field = field.field
        return [_field_value(item_field, item, masked) for item in value]
    if masked:
        kind = field_mask_kind(field)
        if kind:
            return mask_value(kind, value)
    return json_value(value)


def json_value(value: Any) -> Any:
    """Make a stored value JSON-ready: ObjectId → hex, datetime → ISO ``Z``, recursively."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {("id" if k == "_id" else k): json_value(v) for k, v in value.items() if k not in _HIDDEN}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value
