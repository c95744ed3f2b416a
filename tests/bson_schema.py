"""Validate documents against a MongoDB ``$jsonSchema`` locally, with the ``jsonschema`` package.

MongoDB's dialect is draft 4 plus ``bsonType``; this adds a ``bsonType`` keyword that checks the
Python types PyMongo decodes BSON into, so a generated validator can be tried on real documents.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import jsonschema
from bson import Decimal128, Int64, ObjectId

_PLAIN = {"string": str, "objectId": ObjectId, "date": datetime.datetime, "object": dict, "array": list,
          "null": type(None), "binData": bytes, "decimal": (Decimal128, Decimal), "double": float, "long": (int, Int64)}


def _is(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "number":
        return isinstance(value, (int, float, Decimal128, Decimal))
    if kind == "int":
        return isinstance(value, int) and -(2**31) <= value < 2**31
    return isinstance(value, _PLAIN[kind])


def _bson_type(validator: Any, kinds: Any, instance: Any, schema: Any) -> Any:
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not any(_is(instance, k) for k in kinds):
        yield jsonschema.ValidationError(f"{instance!r} is not of bsonType {kinds}")


BsonValidator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"bsonType": _bson_type})


def problems(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """What ``schema`` (a ``$jsonSchema`` body) finds wrong with ``document``; [] when it passes."""
    validator = BsonValidator(schema)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<doc>'}: {e.message}" for e in validator.iter_errors(document))
