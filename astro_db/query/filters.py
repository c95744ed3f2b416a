"""Query validation: what request JSON may ask of the server, in stored form.

``compile_filter`` turns a user query (Python or stored field names, ``id``, ISO dates, hex ids)
into a stored-form filter, accepting only whitelisted operators: code-running operators
(``$where``, ``$function``, ``$accumulator``, ``$expr``) and unknown fields or operators raise
``QueryError``. Updates are checked in ``updates``, aggregation pipelines in ``pipeline``.

A filter of plain field names is planned once per shape (the model and its keys, never the
values); a later filter of that shape whose values are plain literals only has them coerced and
checked, anything else (operators, regexes, lists) takes the full compile.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator, Mapping
from typing import Any

from bson import ObjectId
from bson.regex import Regex
from mongoengine import fields as me

from ..errors import QueryError, ValidationError
from ..models import paths
from ..models.fields import EmailField, NumberField, UTCDateTimeField, canonical_email, longest_text, short_repr, to_utc
from .regex import MAX_REGEX_LENGTH, check_regex, check_regex_options

__all__ = [
    "compile_filter",
    "compile_sort",
    "compile_projection",
    "find_options",
    "coerce_id",
    "document_id",
    "path_kind",
    "MAX_REGEX_LENGTH",
    "check_document_keys",
    "PROTOTYPE_KEYS",
    "describe",
    "reject_code",
    "FORBIDDEN_OPERATORS",
]

MAX_QUERY_DEPTH = 12
#: how deep a value (a literal in a filter, data to write) may nest: MongoDB's own limit for a
#: stored document (100 levels), checked before anything walks the value, so that a value nested
#: thousands of levels deep is a clear error rather than Python's ``RecursionError``
MAX_VALUE_DEPTH = 100
MAX_IN_VALUES = 10_000

_LOGICAL = {"$and", "$or", "$nor"}
_FIELD_OPS = {
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type", "$all",
    "$size", "$elemMatch", "$not", "$regex", "$options", "$mod",
    # geo operators; their arguments ($geometry, $box, $center...) are plain data, not operators
    "$geoWithin", "$geoIntersects", "$near", "$nearSphere", "$maxDistance", "$minDistance",
}
_VALUE_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"}
_LIST_VALUE_OPS = {"$in", "$nin", "$all"}
# operators that run code or escape the model: refused in filters, updates and pipelines alike
FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator", "$expr", "$jsonSchema", "$comment"})
_FORBIDDEN = FORBIDDEN_OPERATORS
_UPDATE_OPS = {"$set", "$unset", "$inc", "$push", "$pull", "$addToSet"}
#: keys a JavaScript reader (the Node service) takes for an object's prototype: harmless here
PROTOTYPE_KEYS = frozenset({"__proto__", "constructor", "prototype"})
_BAD_KEYS = re.compile(r"\x01(?:\$|(?:__proto__|constructor|prototype)(?:\x01|$))|[.\x00]")


def coerce_id(value: Any, name: str = "id") -> ObjectId:
    """An ObjectId from an ObjectId or its 24-hex string; anything else is a ValidationError."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
    raise ValidationError(errors={name: f"not a valid ObjectId (24 hex characters), got {shown}"})


def document_id(model: Any, value: Any, name: str = "id") -> Any:
    """One document's id of ``model`` (``audit_trail``): an ObjectId (or its 24-hex string) for
    a model with the default ``_id``; for one declaring a primary key of another type, one value
    that field validates: a list, a regex or null (never an ``_id`` in MongoDB) is refused, and
    an embedded document (a compound key) only as stored data, without an operator or a dotted
    key anywhere: an id names one document, never a condition matching several."""
    resolved = paths.resolve(model, "_id")
    field = resolved.field
    if field is None or path_kind(resolved) == "objectid":
        return coerce_id(value, name)
    if isinstance(value, (list, tuple, set, Regex, re.Pattern)) or value is None:
        raise ValidationError(errors={name: f"an id is one value, got {short_repr(value)}"})
    if isinstance(value, Mapping):
        if not isinstance(value, dict):
            value = dict(value)
        try:
            check_document_keys(value, name)
        except ValidationError:
            raise ValidationError(errors={name: f"an id is one value, not a condition: got {short_repr(value)}"}) from None
    try:
        field.validate(value)
    except me.ValidationError as exc:
        raise ValidationError(errors={name: f"not a valid {model.__name__} id: {exc.message}"}) from None
    return value


def field_kind(field: Any) -> str:
    """What a query value for ``field`` must become: objectid, date, number, email, list, embedded,
    other."""
    if isinstance(field, EmailField):
        return "email"
    if isinstance(field, me.ObjectIdField):
        return "objectid"
    if isinstance(field, (UTCDateTimeField, me.DateTimeField)):
        return "date"
    if isinstance(field, (NumberField, me.IntField, me.FloatField)):
        return "number"
    if isinstance(field, me.ListField):
        return "list"
    if isinstance(field, me.EmbeddedDocumentField):
        return "embedded"
    return "other"


def _parse_date(value: str, name: str) -> _dt.datetime:
    parsed = to_utc(value)
    if not isinstance(parsed, _dt.datetime):
        raise ValidationError(errors={name: f"not a valid ISO-8601 date/time: {value[:60]!r}"})
    return parsed


def _is_required(resolved: Any) -> bool:
    return bool(getattr(resolved.field, "required", False))


def _number_bounds(field: Any) -> tuple[Any, Any]:
    low = getattr(field, "min_value", None)
    high = getattr(field, "max_value", None)
    return low, high


# --- filters -----------------------------------------------------------------------------------


MAX_FILTER_PLANS = 1024
# the values a planned filter takes as they are (exact types: a subclass takes the full compile)
_LITERAL_TYPES = frozenset({str, int, float, bool, type(None), ObjectId, _dt.datetime})
_FILTER_PLANS: dict[tuple[Any, ...], tuple[tuple[str, str], ...]] = {}


def compile_filter(model: Any, query: Any, *, strict: bool = False) -> dict[str, Any]:
    """Validate ``query`` for ``model`` and return it in stored form.

    ``strict=True`` refuses operator objects anywhere a value is expected: use it for values
    that must be literals (a login by email), so ``{"email": {"$ne": null}}`` cannot match all.
    """
    if type(query) is not dict:
        if query is None:
            return {}
        if not isinstance(query, Mapping):
            raise QueryError(f"a query must be a dict of field -> value, got {type(query).__name__}")
        return _compile_mapping(model, query, strict, depth=0, prefix="")
    key = (model, *query)
    plan = _FILTER_PLANS.get(key)
    if plan is not None:
        out: dict[str, Any] = {}
        for (stored, kind), value in zip(plan, query.values()):
            cls = type(value)
            if cls not in _LITERAL_TYPES:
                break
            # an ObjectId, or a literal but a str for a field that is no id, is what _coerce_kind returns
            out[stored] = value if cls is ObjectId or (cls is not str and kind != "objectid") else _coerce_kind(
                kind, stored, value)
        else:
            return out
        return _compile_mapping(model, query, strict, depth=0, prefix="")
    out = _compile_mapping(model, query, strict, depth=0, prefix="")
    if len(_FILTER_PLANS) < MAX_FILTER_PLANS and all(isinstance(k, str) and not k.startswith("$") for k in query):
        resolved = [paths.resolve(model, k) for k in query]  # each key's stored name and value kind
        _FILTER_PLANS[key] = tuple((r.stored, path_kind(r)) for r in resolved)
    return out


def _compile_mapping(model: Any, query: Mapping[str, Any], strict: bool, depth: int, prefix: str) -> dict[str, Any]:
    if depth > MAX_QUERY_DEPTH:
        raise QueryError(f"query nested deeper than {MAX_QUERY_DEPTH} levels")
    out: dict[str, Any] = {}
    for key, value in query.items():
        if not isinstance(key, str):
            raise QueryError(f"query keys must be strings, got {key!r}")
        if key in _FORBIDDEN:
            raise QueryError(f"operator {key} is not allowed: it can run code or escape the model")
        if key in _LOGICAL:
            if strict:
                raise QueryError(f"operator {key} is not allowed in a strict query")
            if not isinstance(value, (list, tuple)) or not value:
                raise QueryError(f"{key} takes a non-empty list of queries")
            out[key] = [_compile_clause(model, sub, strict, depth + 1, prefix) for sub in value]
        elif key == "$text":
            if strict:
                raise QueryError("operator $text is not allowed in a strict query")
            out[key] = _compile_text(value)
        elif key.startswith("$"):
            raise QueryError(f"unknown or unsupported query operator {key}")
        else:
            resolved = paths.resolve(model, prefix + key)
            stored = resolved.stored[len(_stored_prefix(model, prefix)):] if prefix else resolved.stored
            out[stored] = _compile_condition(model, resolved, value, strict, depth)
    return out


def _stored_prefix(model: Any, prefix: str) -> str:
    return paths.resolve(model, prefix.rstrip(".")).stored + "." if prefix else ""


def _compile_clause(model: Any, sub: Any, strict: bool, depth: int, prefix: str) -> dict[str, Any]:
    if not isinstance(sub, Mapping):
        raise QueryError(f"each clause of $and/$or/$nor must be a dict, got {type(sub).__name__}")
    return _compile_mapping(model, sub, strict, depth, prefix)


def _compile_text(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not isinstance(value.get("$search"), str):
        raise QueryError('$text takes {"$search": "words"}')
    allowed = {"$search", "$language", "$caseSensitive", "$diacriticSensitive"}
    extra = set(value) - allowed
    if extra:
        raise QueryError(f"unknown $text option(s): {', '.join(sorted(extra))}")
    if len(value["$search"]) > 1000:
        raise QueryError("$text search string longer than 1000 characters")
    return dict(value)


def _is_operator_doc(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(k, str) and k.startswith("$") for k in value)


def _compile_condition(model: Any, resolved: Any, value: Any, strict: bool, depth: int) -> Any:
    if isinstance(value, Mapping):
        if strict:
            raise QueryError(f"field {resolved.stored!r} must be a literal value in a strict query, got an object")
        keys = [k for k in value if isinstance(k, str) and k.startswith("$")]
        if keys and len(keys) != len(value):
            raise QueryError(f"field {resolved.stored!r} mixes operators and plain keys")
        if keys:
            options = value.get("$options", "")
            return {op: _compile_operator(model, resolved, op, arg, depth, options) for op, arg in value.items()}
        _reject_dollar_keys(value, resolved.stored)
        return dict(value)
    if isinstance(value, (re.Pattern, Regex)):
        check_regex(value, resolved.stored, max_input=longest_text(resolved.field))
        return value
    return _coerce(resolved, value)


def _compile_operator(model: Any, resolved: Any, op: str, arg: Any, depth: int, options: Any = "") -> Any:
    name = resolved.stored
    if op in _FORBIDDEN:
        raise QueryError(f"operator {op} is not allowed: it can run code or escape the model")
    if op not in _FIELD_OPS:
        raise QueryError(f"unknown or unsupported operator {op} on field {name!r}")
    if op in _VALUE_OPS:
        if isinstance(arg, Mapping):
            _reject_dollar_keys(arg, name)
            return dict(arg)
        return _coerce(resolved, arg)
    if op in _LIST_VALUE_OPS:
        if not isinstance(arg, (list, tuple)):
            raise QueryError(f"{op} on {name!r} takes a list, got {type(arg).__name__}")
        if len(arg) > MAX_IN_VALUES:
            raise QueryError(f"{op} on {name!r} lists {len(arg)} values; at most {MAX_IN_VALUES}")
        return [_coerce(resolved, v) for v in arg]
    if op == "$exists":
        if not isinstance(arg, (bool, int)):
            raise QueryError(f"$exists on {name!r} takes true or false")
        return bool(arg)
    if op == "$regex":
        if not isinstance(arg, (str, re.Pattern, Regex)):
            raise QueryError(f"$regex on {name!r} takes a string")
        bound = longest_text(resolved.field)
        check_regex(arg, name, options if isinstance(arg, str) and isinstance(options, str) else "", max_input=bound)
        if not isinstance(arg, str) and isinstance(options, str) and options:
            # the server applies $options to a regex object too: judge its text with them as well
            check_regex(arg.pattern, name, options, max_input=bound)
        return arg
    if op == "$options":
        check_regex_options(arg, name)
        return arg
    if op in ("$not", "$elemMatch") and depth >= MAX_QUERY_DEPTH:
        raise QueryError(f"query nested deeper than {MAX_QUERY_DEPTH} levels")
    if op == "$not":
        if isinstance(arg, (re.Pattern, Regex)):
            check_regex(arg, name, max_input=longest_text(resolved.field))
            return arg
        if not _is_operator_doc(arg):
            raise QueryError(f"$not on {name!r} takes an operator object or a regex")
        inner = arg.get("$options", "")
        return {o: _compile_operator(model, resolved, o, a, depth + 1, inner) for o, a in arg.items()}
    if op == "$elemMatch":
        if not isinstance(arg, Mapping):
            raise QueryError(f"$elemMatch on {name!r} takes a query object")
        if _is_operator_doc(arg):
            inner = arg.get("$options", "")
            return {o: _compile_operator(model, resolved, o, a, depth + 1, inner) for o, a in arg.items()}
        return _compile_mapping(model, arg, False, depth + 1, prefix=resolved.stored + ".")
    if op == "$size":
        if not isinstance(arg, int) or isinstance(arg, bool) or arg < 0:
            raise QueryError(f"$size on {name!r} takes a whole number >= 0")
        return arg
    if op == "$type":
        if not isinstance(arg, (str, int)) or isinstance(arg, bool):
            raise QueryError(f"$type on {name!r} takes a BSON type name or number")
        return arg
    if op == "$mod":
        if not (isinstance(arg, (list, tuple)) and len(arg) == 2 and all(isinstance(x, (int, float)) for x in arg)):
            raise QueryError(f"$mod on {name!r} takes [divisor, remainder]")
        return list(arg)
    # geo operators and their arguments: plain data, no operators that run code
    reject_code(arg, name)
    return arg


def path_kind(resolved: Any) -> str:
    """``field_kind`` of a resolved path; a document's own ``_id`` is an ObjectId unless its
    model declares a primary key of another type (``id = StringField(primary_key=True)``: a slug,
    an ``IntField``, ...), whose values are then taken as that field's."""
    field = resolved.field
    if resolved.stored != "_id":
        return field_kind(field)
    return "objectid" if field is None or isinstance(field, me.ObjectIdField) else field_kind(field)


def _coerce(resolved: Any, value: Any) -> Any:
    """Convert a literal to its stored type: hex ids to ObjectId, ISO strings to datetimes."""
    return _coerce_kind(path_kind(resolved), resolved.stored, value)


def _coerce_kind(kind: str, stored: str, value: Any) -> Any:
    """``_coerce`` for a field of ``kind`` (``field_kind``) stored as ``stored``."""
    if kind == "objectid" and not isinstance(value, ObjectId) and value is not None:
        return coerce_id(value, stored)
    if kind == "date" and isinstance(value, str):
        return _parse_date(value, stored)
    if kind == "email" and isinstance(value, str) and len(value) <= 16_384:
        return canonical_email(value)  # compared in the spelling it is stored in
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (list, tuple)) for v in value):
            refuse_deep(value, stored)  # before the recursion below, which follows the nesting
        return [_coerce_kind(kind, stored, v) for v in value]
    if isinstance(value, str) and len(value) > 16_384:
        raise QueryError(f"value for {stored!r} is longer than 16384 characters")
    if not isinstance(value, (str, int, float, bool, ObjectId, _dt.datetime, type(None), list, tuple)):
        raise QueryError(f"value for {stored!r} has unsupported type {type(value).__name__}")
    return value


def refuse_deep(value: Any, name: str, error: type[QueryError] | type[ValidationError] = QueryError) -> None:
    """Raise ``error`` when ``value`` nests mappings and lists deeper than ``MAX_VALUE_DEPTH``
    levels; iterative, so no depth makes it recurse."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_VALUE_DEPTH:
            message = f"value nested deeper than {MAX_VALUE_DEPTH} levels (MongoDB's limit)"
            if error is ValidationError:
                raise ValidationError(errors={name or "__all__": message})
            raise QueryError(f"{message} in {name!r}")
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, (list, tuple)) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list, tuple)))


def _keys_within(value: Any, name: str) -> Iterator[Any]:
    """Every key of every mapping in ``value``, at any depth (``refuse_deep`` first; iterative)."""
    refuse_deep(value, name)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            yield from item
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _reject_dollar_keys(value: Any, name: str) -> None:
    for k in _keys_within(value, name):
        if not isinstance(k, str) or k.startswith("$") or "." in k or "\x00" in k or k in PROTOTYPE_KEYS:
            raise QueryError(f"field {name!r}: key {k!r} is not allowed in a value")


def check_document_keys(doc: Any, path: str = "") -> None:
    """Refuse ``$``-prefixed, dotted, NUL or prototype-style keys anywhere in data to be
    written (defence in depth: a free-form value such as a GeoJSON dict could carry them)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_VALUE_DEPTH:
            raise ValidationError(errors={path or "__all__": f"nested deeper than {MAX_VALUE_DEPTH} levels (MongoDB's "
                                                             "limit for a stored document)"})
        if isinstance(value, dict):
            try:
                bad: object = _BAD_KEYS.search("\x01" + "\x01".join(value))
            except TypeError:  # a key that is not a string
                bad = True
            if bad:
                key = next(k for k in value if not isinstance(k, str) or _BAD_KEYS.search("\x01" + k))
                raise ValidationError(errors={path or "__all__": f"key {key!r} is not allowed in stored data"})
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))


def reject_code(value: Any, name: str) -> None:
    """Refuse a code-running operator (``FORBIDDEN_OPERATORS``) at any depth of ``value``, and
    a value nested deeper than ``MAX_VALUE_DEPTH``."""
    for k in _keys_within(value, name):
        if k in _FORBIDDEN:
            raise QueryError(f"operator {k} is not allowed (in {name!r})")


def describe(value: Any) -> str:
    """A short ``type repr`` of ``value`` for error messages (``models.fields.short_repr``:
    bounded whatever the value)."""
    text = short_repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


# --- sort, projection, find options ----------------------------------------------------------


def compile_sort(model: Any, sort: Any) -> list[tuple[str, int]] | None:
    """``[("date", -1)]``, ``{"date": -1}`` or ``"-date"`` to a stored-name sort list."""
    if sort is None:
        return None
    if isinstance(sort, str):
        sort = [(sort.lstrip("-+"), -1 if sort.startswith("-") else 1)]
    elif isinstance(sort, Mapping):
        sort = list(sort.items())
    if not isinstance(sort, (list, tuple)):
        raise QueryError(f"sort takes a list of (field, direction) pairs, got {describe(sort)}")
    out: list[tuple[str, int]] = []
    for item in sort:
        if isinstance(item, str):
            item = (item.lstrip("-+"), -1 if item.startswith("-") else 1)
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and item[1] in (1, -1)):
            raise QueryError(f"sort item {item!r} must be (field, 1 or -1)")
        stored = paths.resolve(model, item[0]).stored
        if any(key == stored for key, _ in out):  # PyMongo sends a sort as a document: one direction per key
            raise QueryError(f"sort names {stored!r} twice; the driver would send one direction for it, at its "
                             "first place, the last one given")
        out.append((stored, int(item[1])))
    return out


def compile_projection(model: Any, projection: Any) -> dict[str, int] | None:
    """``["email", "name"]`` or ``{"email": 1}`` to a stored-name projection."""
    if projection is None:
        return None
    if isinstance(projection, (list, tuple)):
        projection = {name: 1 for name in projection}
    if not isinstance(projection, Mapping):
        raise QueryError(f"projection takes a list of fields or a dict, got {describe(projection)}")
    out: dict[str, int] = {}
    for name, flag in projection.items():
        if flag not in (0, 1, True, False):
            raise QueryError(f"projection of {name!r} must be 0 or 1")
        out[paths.resolve(model, name).stored] = int(flag)
    return out


_INT64 = 2**63  # a limit, skip or batch size the driver can encode is below it


def find_options(model: Any, sort: Any, limit: Any, skip: Any, projection: Any, batch_size: Any) -> dict[str, Any]:
    """Validated PyMongo ``find`` keyword options (stored names) from the service's arguments."""
    options: dict[str, Any] = {}
    for name, value in (("limit", limit), ("skip", skip)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _INT64:
            raise QueryError(f"{name} must be a whole number >= 0, got {value!r} (at most 2**63 - 1)")
        if value:
            options[name] = value
    compiled_sort = compile_sort(model, sort)
    if compiled_sort:
        options["sort"] = compiled_sort
    compiled_projection = compile_projection(model, projection)
    if compiled_projection:
        options["projection"] = compiled_projection
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size < _INT64:
            raise QueryError(f"batch_size must be a whole number >= 1, got {batch_size!r} (at most 2**63 - 1)")
        options["batch_size"] = batch_size
    return options
