"""Field-path resolution: any spelling of a field path → its stored dotted path and field.

Accepts the Python attribute (``energy_level``), the stored name (``energyLevel``), dotted
paths into embedded documents in either spelling (``birth_data.location.name``), array
positions and update operators inside list paths (``positions.0.degree``, ``positions.$``,
``windows.$[w].start``), paths through a list of embedded documents (``windows.start``) and
``id`` / ``_id``. Results are cached per (model, name): this is on every query's path.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple, NoReturn

from mongoengine.base import BaseField
from mongoengine.fields import EmbeddedDocumentField, ListField

from ..errors import QueryError

__all__ = ["ResolvedPath", "resolve", "known_fields"]


class ResolvedPath(NamedTuple):
    """A resolved path: the stored dotted name and the field it ends on (None for ``$`` ops)."""

    stored: str
    field: BaseField | None


def _is_positional(part: str) -> bool:
    return part.isdigit() or part == "$" or (part.startswith("$[") and part.endswith("]"))


def _embedded_type(field: BaseField | None) -> Any:
    if isinstance(field, EmbeddedDocumentField):
        return field.document_type
    if isinstance(field, ListField) and isinstance(field.field, EmbeddedDocumentField):
        return field.field.document_type
    return None


def known_fields(doc_cls: Any) -> list[str]:
    """Stored names of a document class's fields, in declaration order."""
    return [doc_cls._fields[name].db_field for name in doc_cls._fields_ordered]


def _lookup(doc_cls: Any, part: str) -> BaseField | None:
    field = doc_cls._fields.get(part)
    if field is None:
        name = doc_cls._reverse_db_field_map.get(part)
        field = doc_cls._fields.get(name) if name else None
    if field is None and part in ("id", "_id"):
        field = doc_cls._fields.get(doc_cls._reverse_db_field_map.get("_id", ""))
    return field


@lru_cache(maxsize=4096)
def resolve(model_cls: Any, name: str) -> ResolvedPath:
    """Resolve ``name`` on ``model_cls``; raise ``QueryError`` listing known fields if unknown."""
    if not isinstance(name, str) or not name:
        raise QueryError(f"field names must be non-empty strings, got {name!r} on {model_cls.__name__}")
    doc_cls, field, stored = model_cls, None, list[str]()
    for part in name.split("."):
        if isinstance(field, ListField) and _is_positional(part):
            stored.append(part)
            field = field.field
            doc_cls = _embedded_type(field)
            continue
        found = _lookup(doc_cls, part) if doc_cls is not None else None
        if found is None:
            _unknown(model_cls, name, doc_cls, stored)
        stored.append(found.db_field)
        field = found
        doc_cls = _embedded_type(found)
    return ResolvedPath(".".join(stored), field)


def through_list(model_cls: Any, name: str) -> bool:
    """Whether the path ``name`` (resolvable: ``resolve``) is a list or leads through one (a
    list of embedded documents): such a path holds several values in one document (an owner,
    an ``upsert_many`` key: each is one value a document)."""
    parts = name.split(".")
    return any(isinstance(resolve(model_cls, ".".join(parts[:n])).field, ListField) for n in range(1, len(parts) + 1))


def _unknown(model_cls: Any, name: str, doc_cls: Any, stored: list[str]) -> NoReturn:
    prefix = ".".join(stored)
    if doc_cls is None:
        raise QueryError(f"unknown field {name!r} on {model_cls.__name__}: "
                         f"{prefix!r} has no sub-fields")
    known = ", ".join(f"{prefix}.{k}" if prefix else k for k in known_fields(doc_cls))
    raise QueryError(f"unknown field {name!r} on {model_cls.__name__}; known fields: {known}")
