"""Step 3, compile: validate what the caller sent and turn it into stored form.

Filters (``query``), updates (``updates``), new documents (``models.codec``) and pipelines
(``pipeline``) are checked against the model before anything is sent; the actor's scope
(``Guard``) is applied here, so a compiled filter is already narrowed to what the actor may see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import AstroDBError, QueryError, ValidationError
from ...query import filters as q
from ...query.pipeline import compile_pipeline
from ...query.updates import CompiledUpdate, compile_update
from ...registry import ModelInfo
from ...security.access import Guard
from ...security.masking import masked_errors
from ..writes import new_document

__all__ = ["filter", "find_options", "update", "documents", "pipeline"]

_FIND_OPTIONS = ("sort", "limit", "skip", "projection", "batch_size")


def filter(info: ModelInfo, query: Mapping[str, Any] | None, *, strict: bool = False) -> dict[str, Any]:  # noqa: A001
    """A user filter validated against the model, in stored form (not yet scoped or sealed)."""
    return q.compile_filter(info.cls, query, strict=strict)


def find_options(info: ModelInfo, options: Mapping[str, Any]) -> dict[str, Any]:
    """``sort`` / ``limit`` / ``skip`` / ``projection`` / ``batch_size`` for PyMongo's ``find``."""
    for name in _FIND_OPTIONS:
        if options.get(name) is not None:
            break
    else:
        return {}  # none given (the by-id find_one): nothing to validate
    return q.find_options(info.cls, options.get("sort"), options.get("limit", 0), options.get("skip", 0),
                          options.get("projection"), options.get("batch_size"))


def update(info: ModelInfo, guard: Guard, data: Any) -> CompiledUpdate:
    """An update validated value by value; the actor may not hand a document to someone else."""
    try:
        compiled = compile_update(info.cls, data)
        for op in ("$set", "$push", "$addToSet"):
            for key, value in compiled.update.get(op, {}).items():
                q.check_document_keys(value["$each"] if isinstance(value, dict) and "$each" in value else value, key)
    except ValidationError:
        with masked_errors(info.cls):  # masks the messages and re-raises; nothing to do when none was raised
            raise
    guard.update(compiled.update)
    return compiled


def documents(info: ModelInfo, guard: Guard, items: Any) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, AstroDBError]]]:
    """New documents validated one by one: ``([(index, son)], [(index, error)])``."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise ValidationError(errors={"items": f"create_many takes a list of dicts, got {type(items).__name__}"})
    scoped = [guard.data(data) for data in items]
    sons: list[tuple[int, dict[str, Any]]] = []
    failed: list[tuple[int, AstroDBError]] = []
    for index, data in enumerate(scoped):
        try:
            sons.append((index, new_document(info, data)))
        except AstroDBError as exc:
            failed.append((index, exc))
    return sons, failed


def document(info: ModelInfo, guard: Guard, data: Any) -> dict[str, Any]:
    """One new document, validated, with the service's fields (``_id``, dates, ``__v``)."""
    return new_document(info, guard.data(data))


def pipeline(info: ModelInfo, stages: Any) -> list[dict[str, Any]]:
    """An aggregation pipeline checked stage by stage (``pipeline.compile_pipeline``)."""
    return compile_pipeline(info.cls, stages)


def require_target(info: ModelInfo, filt: Mapping[str, Any], call: str, *, all: bool = False) -> None:  # noqa: A002
    """A delete or a many-document update must name what it changes: an empty filter is
    refused unless ``all=True`` (the same opt-in for ``delete_many`` and ``update_many``)."""
    if filt:
        return
    if call == "delete":
        raise QueryError("delete needs a query naming the document (e.g. {'id': ...})")
    if not all:
        verb = "update" if call == "update_many" else "delete"
        raise QueryError(f"{call} with an empty query would {verb} every {info.name}; pass all=True to mean it")
