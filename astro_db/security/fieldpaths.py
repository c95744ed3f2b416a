"""Where a model's encrypted values live: its ``sensitive=True`` fields as stored dotted paths,
and the small walkers that reach the value(s) at such a path through embedded documents and lists.

A stored path leaves list positions out (``positions.body`` names the ``body`` of every item of
``positions``); it is also what an envelope is bound to (``crypto``: the associated data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from mongoengine.fields import EmbeddedDocumentField, ListField

__all__ = ["Sensitive", "sensitive_fields", "norm_path", "copy_tree", "apply_at", "leaves_at", "each_pushed"]

@dataclass(frozen=True)
class Sensitive:
    """One encrypted field: its stored dotted path (list positions left out) and its mode."""

    path: str
    deterministic: bool


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
            elif getattr(field, "sensitive", False):
                queryable = bool(getattr(field, "queryable", False)) or (model_name, path) in deterministic
                found.append(Sensitive(path, queryable))

    walk(model_cls, "")
    return tuple(found)


def norm_path(path: str) -> str:
    """A stored path without list positions: ``positions.0.x`` / ``positions.$.x`` -> ``positions.x``."""
    return ".".join(p for p in path.split(".") if not (p.isdigit() or p == "$" or p.startswith("$[")))


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
