"""Server-side validators from the models: a ``$jsonSchema`` per collection, shown, compared, installed.

``collection_schema(model)`` turns a model's fields (``models/fields.py``) into the
``$jsonSchema`` MongoDB enforces: the required fields, a ``bsonType`` per field type, enums for
choices, minimum/maximum and lengths where the field has them, embedded documents and arrays
(item counts, item schemas). It is as permissive as Mongoose, so it accepts what the Node service
writes today: other fields are allowed (``additionalProperties`` is left open, so ``__v``, the
timestamps, ``_rev``/``_op`` and an app's extra keys pass), an optional field may be ``null``,
numbers may be any BSON number type (JavaScript writes doubles and int32s), case-insensitive
choices are not enumerated (Mongoose may store another spelling), a sensitive field is any
string or binary (an encrypted envelope, longer than the plain value's limit, or MongoDB's
client-side encryption's ``binData``; a non-text one also its plain type, as data written before
encryption holds it until ``astro-db rotate-key``), and a queryable one's blind index
(``emailIndex``, ``birthData.location.nameIndex``: ``security.blind``) is a 43-character string
when present. What it cannot
say (list-wide rules: a body listed once, windows sorted; dates' ranges; time-zone names;
e-mail syntax) stays in Python.

``install(db, action)`` sends ``collMod`` (or ``create`` for a collection that does not exist
yet) with the validator and ``validationAction`` ``"warn"`` or ``"error"``; ``diff(db)`` compares
each collection's validator (``listCollections`` options) with the models'. Every driver call
goes through ``Executor.call``. The embedded backend has no validators (``ConfigError``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from bson import json_util
from mongoengine import fields as me
from mongoengine.fields import EmbeddedDocumentField as _Embedded
from mongoengine.fields import ListField

from .errors import ConfigError
from .models import fields as f
from .registry import declare
from .security.blind import blind_path

BLIND_LENGTH = 43  # base64url of an HMAC-SHA256, unpadded (security.blind)

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database
    from .registry import ModelInfo

__all__ = ["collection_schema", "validator", "validators", "install", "diff", "server_validators", "ACTIONS", "LEVELS"]

log = logging.getLogger(__name__)
ACTIONS = ("warn", "error")
LEVELS = ("moderate", "strict")
NUMBER = "number"  # MongoDB's alias for int, long, double and decimal


_MONGOENGINE: tuple[tuple[Any, str], ...] = (
    ((me.StringField,), "string"), ((me.IntField, me.LongField, me.FloatField, me.DecimalField), NUMBER),
    ((me.BooleanField,), "bool"), ((me.DateTimeField, me.DateField), "date"), ((me.ObjectIdField,), "objectId"),
    ((me.DictField,), "object"),
)


def collection_schema(model: Any) -> dict[str, Any]:
    """The ``$jsonSchema`` of a model class (or a registry ``ModelInfo``, whose declared
    ``queryable`` fields get their blind index; a class: those of ``meta["queryable"]``)."""
    cls = getattr(model, "cls", model)
    declaration = getattr(model, "declaration", None)
    if declaration is not None:
        queryable = set(declaration.queryable)
    else:
        queryable = set(declare(cls).queryable)
    schema = _object(cls, top=True)
    for path in sorted(queryable):
        _add_blind(schema, path.split("."))
    return schema


def _add_blind(schema: dict[str, Any], parts: list[str]) -> None:
    """Declare the blind index beside ``parts`` (through embedded documents and arrays)."""
    if schema.get("bsonType") == "array" or "array" in (schema.get("bsonType") or ()):
        schema = schema.get("items") or {}
    props = schema.get("properties")
    if not isinstance(props, dict):
        return
    if len(parts) == 1:
        props[blind_path(parts[0])] = {"bsonType": "string", "minLength": BLIND_LENGTH, "maxLength": BLIND_LENGTH}
        schema["properties"] = dict(sorted(props.items()))
    elif parts[0] in props:
        _add_blind(props[parts[0]], parts[1:])


def validator(model: Any) -> dict[str, Any]:
    """The validator document of a model's collection: ``{"$jsonSchema": ...}``."""
    return {"$jsonSchema": collection_schema(model)}


def validators(registry: Iterable[ModelInfo]) -> dict[str, dict[str, Any]]:
    """``{collection: validator}`` for every model of ``registry``."""
    return {info.collection: validator(info) for info in registry}


# --- the generator ------------------------------------------------------------------------------


def _object(cls: Any, *, top: bool = False) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, field in cls._fields.items():
        stored = field.db_field or name
        if top and stored == "_id":
            properties["_id"] = {"bsonType": "objectId"}
            continue
        properties[stored] = _field(field)
        if field.required:
            required.append(stored)
    schema: dict[str, Any] = {"bsonType": "object"}
    if required:
        schema["required"] = sorted(required)
    schema["properties"] = dict(sorted(properties.items()))
    return schema


def _field(field: Any) -> dict[str, Any]:
    schema = _value(field)
    if not field.required and "bsonType" in schema:
        kinds = schema["bsonType"]
        schema["bsonType"] = [*([kinds] if isinstance(kinds, str) else kinds), "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def _value(field: Any) -> dict[str, Any]:
    """The schema of one value of ``field`` (null not allowed: ``_field`` adds it when optional)."""
    if getattr(field, "sensitive", False):  # an encrypted envelope: no length or choice to check
        plain = [] if isinstance(field, f.TextField) else _value_plain(field).get("bsonType", [])
        return {"bsonType": ["string", "binData", *([plain] if isinstance(plain, str) else plain)]}
    return _value_plain(field)


def _value_plain(field: Any) -> dict[str, Any]:
    if isinstance(field, f.ChoiceField):
        if field.ignore_case:
            return {"bsonType": "string"}
        return {"bsonType": "string", "enum": list(field.options)}
    if isinstance(field, f.TextField):  # EmailField and TimezoneField included
        schema: dict[str, Any] = {"bsonType": "string"}
        if field.min_length is not None:
            schema["minLength"] = field.min_length
        if field.max_length is not None:
            schema["maxLength"] = field.max_length
        return schema
    if isinstance(field, f.NumberField):
        schema = {"bsonType": NUMBER}
        if field.min_value is not None:
            schema["minimum"] = field.min_value
        if field.below is not None:
            schema.update(maximum=field.below, exclusiveMaximum=True)
        elif field.max_value is not None:
            schema["maximum"] = field.max_value
        return schema
    if isinstance(field, f.BoolField):
        return {"bsonType": "bool"}
    if isinstance(field, f.StrictObjectIdField):
        return {"bsonType": "objectId"}
    if isinstance(field, f.UTCDateTimeField):
        return {"bsonType": "date"}
    if isinstance(field, f.GeoPointField):
        return {"bsonType": "object", "required": ["coordinates", "type"], "properties": {
            "coordinates": {"bsonType": "array", "minItems": 2, "maxItems": 2, "items": [
                {"bsonType": NUMBER, "minimum": -180, "maximum": 180},
                {"bsonType": NUMBER, "minimum": -90, "maximum": 90},
            ]},
            "type": {"bsonType": "string", "enum": ["Point"]},
        }}
    if isinstance(field, ListField):
        schema = {"bsonType": "array"}
        if getattr(field, "min_length", None) is not None:
            schema["minItems"] = field.min_length
        if getattr(field, "max_length", None) is not None:
            schema["maxItems"] = field.max_length
        if field.field is not None:
            schema["items"] = _value(field.field)
        return schema
    if isinstance(field, _Embedded):
        return _object(field.document_type)
    for kinds, bson_type in _MONGOENGINE:  # an app model's plain MongoEngine fields
        if isinstance(field, kinds):
            return {"bsonType": bson_type}
    return {}  # a field type with no rule here: any value (the server checks nothing for it)


# --- the server -----------------------------------------------------------------------------------


def server_validators(db: Database) -> dict[str, dict[str, Any]]:
    """``{collection: listCollections options}`` for the models' collections that exist."""
    ex = db.executor
    database = ex.runtime.gateway
    names = {info.collection for info in ex.runtime.registry}
    rows = ex.call(None, "schema listCollections", lambda: list(database.list_collections()))
    return {row["name"]: dict(row.get("options") or {}) for row in rows if row.get("name") in names}


def install(db: Database, *, action: str = "warn", level: str = "moderate") -> list[dict[str, Any]]:
    """Install each model's validator with ``validationAction`` ``action``: ``collMod`` on a
    collection that exists, ``create`` on one that does not. One dict per collection."""
    if action not in ACTIONS:
        raise ConfigError(f"validationAction must be one of {', '.join(ACTIONS)}, got {action!r}", key="action")
    if level not in LEVELS:
        raise ConfigError(f"validationLevel must be one of {', '.join(LEVELS)}, got {level!r}", key="level")
    ex = db.executor
    if not ex.runtime.capabilities.validators:
        raise ConfigError("the embedded backend has no server-side validators; install them on a MongoDB server")
    database = ex.runtime.gateway
    existing = set(server_validators(db))
    done = []
    for info in ex.runtime.registry:
        spec = validator(info)
        if info.collection in existing:
            command: dict[str, Any] = {"collMod": info.collection}
        else:
            command = {"create": info.collection}
        command.update(validator=spec, validationAction=action, validationLevel=level)
        ex.call(info, "schema install", partial(database.command, command))
        done.append({"model": info.name, "collection": info.collection, "command": next(iter(command)),
                     "action": action, "level": level})
        log.info("schema: %s validator installed (%s, action %s)", info.collection, next(iter(command)), action)
    return done


def diff(db: Database) -> list[dict[str, Any]]:
    """Each model's validator against the server's: ``state`` is ``same``, ``different``
    (``differences``: the paths that differ) or ``missing`` (no validator on the server)."""
    server = server_validators(db)
    rows = []
    for info in db.executor.runtime.registry:
        options = server.get(info.collection, {})
        want = _plain(validator(info))
        have = _plain(options.get("validator")) if options.get("validator") else None
        row: dict[str, Any] = {"model": info.name, "collection": info.collection,
                               "action": options.get("validationAction"), "level": options.get("validationLevel")}
        if have is None:
            row.update(state="missing", differences=[])
        else:
            differences = list(_differences(want, have, ""))
            row.update(state="same" if not differences else "different", differences=differences)
        rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    """A BSON value as plain JSON data (SON and int/float spellings made comparable)."""
    return json.loads(json_util.dumps(value), parse_float=_number, parse_int=_number)


def _number(text: str) -> Any:
    number = float(text)
    return int(number) if number.is_integer() else number


def _differences(want: Any, have: Any, path: str) -> Iterable[str]:
    if isinstance(want, dict) and isinstance(have, dict):
        for key in sorted(set(want) | set(have)):
            where = f"{path}.{key}" if path else key
            if key not in have:
                yield f"{where}: missing on the server"
            elif key not in want:
                yield f"{where}: only on the server"
            else:
                yield from _differences(want[key], have[key], where)
    elif isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        for index, (a, b) in enumerate(zip(want, have)):
            yield from _differences(a, b, f"{path}[{index}]")
    elif want != have:
        yield f"{path}: models say {json.dumps(want)}, server has {json.dumps(have)}"
