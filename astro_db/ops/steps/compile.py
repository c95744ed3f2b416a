"""Step 3, compile: validate what the caller sent and turn it into stored form, in one walk.

A filter, an update or a pipeline is walked once by the query walker (``query.walker``), with
four rules at every node, in order: what callers may send (``query.pipeline.Checks``: stored
form, whitelists, limits, the regex policy), conditions on encrypted fields made to match
ciphertext and update values sealed (``security.filters.SealRule`` over ``rt.crypto``), the
actor's scope (the ``Guard``), and the actor's permission to read every other collection a
pipeline reads (``security.access.ReadsRule``). So what leaves this step is validated, sealed and narrowed to
what the actor may see, at every depth of a pipeline, each part against the model it reads.
New documents (``models.codec``) are validated here and sealed by the seal step.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import AstroDBError, QueryError, ValidationError
from ...query import filters as q
from ...query.pipeline import Checks
from ...query.updates import CompiledUpdate
from ...query.walker import Walker, model_collections
from ...registry import ModelInfo, ModelRegistry
from ...security.access import Guard, ReadsRule
from ...security.filters import SealRule
from ...security.masking import masked_errors
from ..runtime import Runtime
from ..writes import new_document

__all__ = ["walker", "filter", "find_options", "update", "documents", "pipeline"]

_FIND_OPTIONS = ("sort", "limit", "skip", "projection", "batch_size")


def walker(rt: Runtime, guard: Guard, *, strict: bool = False) -> Walker:
    """The walk of one call: validated, sealed, scoped, other collections' permissions checked
    (``strict``: literals only in the call's own filter)."""
    rules = (Checks(strict=strict), SealRule(rt.crypto, rt.registry), guard, ReadsRule(guard.actor, rt.registry))
    return Walker(rules, _collections(rt.registry))


@functools.lru_cache(maxsize=64)
def _collections(registry: ModelRegistry) -> dict[str, Any]:
    """The collections a pipeline may read: the registry's models (fixed once it is built)."""
    return model_collections(registry)


def filter(rt: Runtime, info: ModelInfo, guard: Guard, query: Mapping[str, Any] | None, *,  # noqa: A001
           strict: bool = False) -> dict[str, Any]:
    """A user filter validated against the model, in stored form, sealed and scoped."""
    return walker(rt, guard, strict=strict).filter(info.cls, query)  # type: ignore[no-any-return]


def find_options(info: ModelInfo, options: Mapping[str, Any]) -> dict[str, Any]:
    """``sort`` / ``limit`` / ``skip`` / ``projection`` / ``batch_size`` for PyMongo's ``find``."""
    for name in _FIND_OPTIONS:
        if options.get(name) is not None:
            break
    else:
        return {}  # none given (the by-id find_one): nothing to validate
    return q.find_options(info.cls, options.get("sort"), options.get("limit", 0), options.get("skip", 0),
                          options.get("projection"), options.get("batch_size"))


def update(rt: Runtime, info: ModelInfo, guard: Guard, data: Any) -> CompiledUpdate:
    """An update validated value by value and sealed; the actor may not hand a document to
    someone else."""
    try:
        return walker(rt, guard).update(info.cls, data)  # type: ignore[no-any-return]
    except ValidationError:
        with masked_errors(info.cls):  # masks the messages and re-raises; nothing to do when none was raised
            raise


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


def pipeline(rt: Runtime, info: ModelInfo, guard: Guard, stages: Any) -> list[dict[str, Any]]:
    """An aggregation pipeline checked, sealed and scoped at every depth, each nested pipeline
    against the model of the collection it reads."""
    return walker(rt, guard).pipeline(info.cls, stages)


def require_target(info: ModelInfo, query: Any, call: str, *, all: bool = False) -> None:  # noqa: A002
    """A delete must name what it deletes: an empty query is refused unless ``all=True``.
    Checked on the caller's query, before the scope narrows it."""
    if query:
        return
    if call == "delete":
        raise QueryError("delete needs a query naming the document (e.g. {'id': ...})")
    if not all:
        raise QueryError(f"delete_many with an empty query would delete every {info.name}; pass all=True to mean it")
