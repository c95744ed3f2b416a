"""Where a model's encrypted values live: its ``sensitive=True`` fields as stored dotted paths,
and the small walkers that reach the value(s) at such a path through embedded documents and lists.

A stored path leaves list positions out (``positions.body`` names the ``body`` of every item of
``positions``); it is also what an envelope is bound to (``crypto``: the associated data).

What is sealed is text: a field holding another type (the birth date, a datetime) has its value
written as canonical extended JSON before sealing and read back from it after opening, here and
nowhere else (``to_plaintext`` / ``from_plaintext``), so the engine below sees one kind of
plaintext whatever the field holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS, JSONOptions
from mongoengine.fields import EmbeddedDocumentField, ListField, StringField

from ..errors import EncryptionError
from ..models.fields import TextField
from .blind import blind_path

__all__ = ["Sensitive", "sensitive_fields", "norm_path", "copy_tree", "apply_at", "leaves_at", "each_pushed",
           "to_plaintext", "from_plaintext", "value_at"]

_READ_JSON: JSONOptions = CANONICAL_JSON_OPTIONS.with_options(tz_aware=True)  # as the client reads dates


@dataclass(frozen=True)
class Sensitive:
    """One encrypted field: its stored dotted path (list positions left out), its mode
    (``deterministic``: declared queryable, so it gets a blind index) and whether it holds text
    (``text``; other values are sealed as canonical extended JSON)."""

    path: str
    deterministic: bool
    text: bool = True

    @property
    def blind(self) -> str | None:
        """The stored path of its blind index (``blind.blind_path``), for a queryable field."""
        return blind_path(self.path) if self.deterministic else None


def to_plaintext(value: Any, f: Sensitive) -> str:
    """The text sealed for ``value`` at ``f`` (and hashed for its blind index): a text field's
    string as it is, any other field's value as canonical extended JSON."""
    if f.text:
        if not isinstance(value, str):
            raise EncryptionError(f"{f.path}: only string values can be encrypted, got {type(value).__name__}")
        return value
    try:
        return json_util.dumps({"v": value}, json_options=CANONICAL_JSON_OPTIONS)
    except TypeError:
        raise EncryptionError(f"{f.path}: a {type(value).__name__} cannot be encrypted (not a BSON value)") from None


def from_plaintext(text: str, f: Sensitive) -> Any:
    """The value ``to_plaintext`` sealed (``EncryptionError`` if it is not what it wrote)."""
    if f.text:
        return text
    try:
        doc = json_util.loads(text, json_options=_READ_JSON)
    except (ValueError, TypeError):
        raise EncryptionError(f"{f.path}: the opened value is not extended JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"v"}:
        raise EncryptionError(f"{f.path}: the opened value is not what a write seals")
    return doc["v"]


def sensitive_fields(model_name: str, model_cls: type, deterministic: set[tuple[str, str]]) -> tuple[Sensitive, ...]:
    """Every field of a model declaring ``sensitive=True``, walked through embedded documents.

    A field is deterministic (queryable by equality) when it says ``queryable=True`` or its
    ``(model, path)`` is in ``deterministic``."""
    found: list[Sensitive] = []

    def walk(doc_cls: Any, prefix: str) -> None:
        for name in doc_cls._fields_ordered:
            field = doc_cls._fields[name]
            path = prefix + field.db_field
            inner = field.field if isinstance(field, ListField) else field
            if isinstance(inner, EmbeddedDocumentField):
                walk(inner.document_type, path + ".")
            elif getattr(field, "sensitive", False) or getattr(inner, "sensitive", False):
                queryable = bool(getattr(field, "queryable", False)) or (model_name, path) in deterministic
                found.append(Sensitive(path, queryable, isinstance(inner, (StringField, TextField))))

    walk(model_cls, "")
    return tuple(found)


def norm_path(path: str) -> str:
    """A stored path without list positions: ``positions.0.x`` / ``positions.$.x`` -> ``positions.x``."""
    return ".".join(p for p in path.split(".") if not (p.isdigit() or p == "$" or p.startswith("$[")))


def value_at(doc: Any, path: str) -> Any:
    """The value at a stored document's dotted ``path`` through embedded documents (``userId``,
    ``sender.userId``); ``None`` where the path leads nowhere (a list on the way included)."""
    if "." not in path:
        return doc.get(path) if isinstance(doc, Mapping) else None
    value = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def pop_at(doc: Any, path: str) -> None:
    """Remove the value at the dotted ``path`` of ``doc``, in place (nothing where it leads nowhere)."""
    *parents, leaf = path.split(".")
    at: Any = doc
    for part in parents:
        at = at.get(part) if isinstance(at, dict) else None
    if isinstance(at, dict):
        at.pop(leaf, None)


def copy_tree(value: Any) -> Any:
    """A copy of a stored-form value sharing no dict or list with the original."""
    if isinstance(value, dict):
        return {k: copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_tree(v) for v in value]
    return value


def each_pushed(value: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to a pushed value or to each item of ``{"$each": [...]}``."""
    if isinstance(value, dict) and "$each" in value:
        return {**value, "$each": [fn(v) for v in value["$each"]]}
    return fn(value)


def apply_at(doc: Any, parts: list[str], fn: Callable[[Any], Any]) -> Any:
    """Replace the value(s) at ``parts`` in ``doc`` (through lists) by ``fn(value)``; returns doc."""
    if isinstance(doc, list):
        for item in doc:
            apply_at(item, parts, fn)
        return doc
    if not isinstance(doc, dict) or parts[0] not in doc:
        return doc
    if len(parts) == 1:
        value = doc[parts[0]]
        doc[parts[0]] = [fn(v) for v in value] if isinstance(value, list) else fn(value)
    else:
        apply_at(doc[parts[0]], parts[1:], fn)
    return doc


def slots_at(doc: Any, parts: list[str]) -> list[tuple[dict[str, Any], str]]:
    """Where the value(s) at ``parts`` sit in ``doc`` (through lists of sub-documents): the
    ``(dict, key)`` pairs, for a caller that replaces each value itself (``apply_at`` without the
    call back: ``security.crypto`` seals and opens them in its own loop)."""
    out: list[tuple[dict[str, Any], str]] = []
    _slots(doc, parts, out)
    return out


def _slots(doc: Any, parts: list[str], out: list[tuple[dict[str, Any], str]]) -> None:
    if isinstance(doc, list):
        for item in doc:
            _slots(item, parts, out)
    elif isinstance(doc, dict) and parts[0] in doc:
        if len(parts) == 1:
            out.append((doc, parts[0]))
        else:
            _slots(doc[parts[0]], parts[1:], out)


def leaves_at(doc: Any, parts: list[str]) -> Iterator[Any]:
    """The value(s) at ``parts`` in ``doc``, through lists."""
    if isinstance(doc, list):
        for item in doc:
            yield from leaves_at(item, parts)
    elif isinstance(doc, dict) and parts[0] in doc:
        if len(parts) == 1:
            value = doc[parts[0]]
            yield from (value if isinstance(value, list) else [value])
        else:
            yield from leaves_at(doc[parts[0]], parts[1:])
