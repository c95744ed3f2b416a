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
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from bson import ObjectId

from ...changes import REV_FIELD
from ...errors import AstroDBError, QueryError, ValidationError
from ...ids import new_ids
from ...indexes import declared_indexes
from ...models.paths import resolve as resolve_path
from ...models.paths import through_list
from ...query import filters as q
from ...query.order import identity
from ...query.pipeline import Checks
from ...query.updates import CompiledUpdate
from ...query.walker import Walker, model_collections
from ...registry import ModelInfo, ModelRegistry
from ...security.access import TRUSTED, Guard, ReadsRule
from ...security.fieldpaths import value_at
from ...security.filters import SealRule
from ...security.masking import masked_errors
from ..runtime import Runtime
from ..writes import CONTINUED, new_document

__all__ = ["walker", "filter", "read", "find_options", "update", "filter_and_update", "documents", "pipeline", "revision",
           "upserts", "upsert_key",
           "upsert_items"]

_FIND_OPTIONS = ("sort", "limit", "skip", "projection", "batch_size")


def walker(rt: Runtime, guard: Guard, *, strict: bool = False) -> Walker:
    """The walk of one call: validated, sealed, scoped, other collections' permissions checked
    (``strict``: literals only in the call's own filter). The trusted app's walk (no actor: its
    guard and reads rule change nothing, so they are left out) is the same every call: built
    once per runtime's key and registry, and kept on the runtime (``Runtime.trusted_walks``: the
    rules hold no state of a call)."""
    if guard.actor is None and not guard.scope:
        crypto, registry = rt.crypto, rt.registry  # read once: the runtime's crypto is a property
        # keyed by the objects themselves (identity: none of them defines __eq__ or __hash__), so
        # a key can never be taken for another object's, and no id() is computed per call
        key = (crypto, registry, guard, strict)
        kept = rt.trusted_walks
        hit = kept.get(key)
        if hit is not None:
            return hit
        # the scope and reads rules of the trusted guard change nothing: left out of its walk
        built = Walker((Checks(strict=strict), SealRule(crypto, registry)), _collections(registry))
        if len(kept) > 64:  # a leak guard: one entry per key set on the runtime (and strictness)
            kept.clear()
        kept[key] = built
        return built
    return _walker(rt, guard, strict)


def _walker(rt: Runtime, guard: Guard, strict: bool) -> Walker:
    rules = (Checks(strict=strict), SealRule(rt.crypto, rt.registry), guard, ReadsRule(guard.actor, rt.registry))
    return Walker(rules, _collections(rt.registry))


@functools.lru_cache(maxsize=64)
def _collections(registry: ModelRegistry) -> dict[str, Any]:
    """The collections a pipeline may read: the registry's models (fixed once it is built)."""
    return model_collections(registry)


def filter(rt: Runtime, info: ModelInfo, guard: Guard, query: Mapping[str, Any] | None, *,  # noqa: A001
           strict: bool = False, walk: Walker | None = None) -> dict[str, Any]:
    """A user filter validated against the model, in stored form, sealed and scoped: the call's
    walk (``walker``; ``walk``: that walk, already looked up by the caller), or a by-id filter's
    compiled form (``Runtime.by_id_shapes``: ``_by_id_form``) where the walk is known to give it."""
    if guard is TRUSTED and query.__class__ is dict and len(query) == 1:
        for key in query:  # the one key: a by-id filter's?
            value = query[key]
            kind = value.__class__
            if kind is ObjectId or kind is str:
                shape = (rt.crypto, info.cls, key)
                shapes = rt.by_id_shapes
                try:  # one look, no call (the most frequent read), safe against another thread's clear()
                    known: bool | None = shapes[shape]
                except KeyError:
                    known = None
                if known:  # the walk's answer for any id: {"_id": the id}
                    return {"_id": value if kind is ObjectId else q.coerce_id(value, "_id")}
                if walk is None:
                    walk = walker(rt, guard, strict=strict)
                filt: dict[str, Any] = walk.filter(info.cls, query)
                if known is None:  # judged once per shape (a walk that refused the value judged nothing)
                    if len(shapes) >= 256:  # a leak guard, as the trusted walks' (per key set, model and key)
                        shapes.clear()
                    shapes[shape] = _by_id_form(rt, info, walk, key, value, filt)
                return filt
    return (walk or walker(rt, guard, strict=strict)).filter(info.cls, query)  # type: ignore[no-any-return]


# The compiled form of a by-id filter (issue 27: the most frequent read). A filter of one key
# naming the model's id (``id``, ``_id``: a key resolving to the stored ``_id``) whose value is an
# exact ``ObjectId`` or ``str`` is walked by the trusted app's walk (``walker``: no actor, so
# no scope and no other collection read; its rules are ``Checks`` and ``SealRule`` only) to the
# same answer whatever the id: ``Checks`` takes an ``ObjectId`` as it is and makes a ``str`` one
# by ``filters.coerce_id`` (or refuses it, with that function's error), ``strict`` refuses
# objects only, and ``SealRule`` leaves a condition on a path that is no sensitive field's (nor
# holds one) as it is. ``Runtime.by_id_shapes`` keeps, per shape ``(field encryption, model class, key)``
# (never a value), whether the first full walk of the shape showed that (``_by_id_form``): then
# later calls of the shape take ``{"_id": <the id>}`` without the walk (the same refusal of a
# bad id); else (another field, a sealed ``_id``, a walk with other rules) every call is walked.
# An actor's filter (its scope) and any other filter are walked every time, as before.
_BY_ID_RULES = (Checks, SealRule)


def _by_id_form(rt: Runtime, info: ModelInfo, walk: Walker, key: str, value: Any, filt: Any) -> bool:
    """Whether the trusted walk ``walk`` gives a filter of ``key`` on ``info`` with any id value
    ``{"_id": <that id>}``, as it gave ``filt`` for ``value`` (see ``Runtime.by_id_shapes``)."""
    if tuple(map(type, walk.rules)) != _BY_ID_RULES:
        return False
    resolved = resolve_path(info.cls, key)
    if resolved.stored != "_id" or q.path_kind(resolved) != "objectid":
        return False  # another field, or a model's own primary key of another type (a slug): walked
    if any(f.path == "_id" or f.path.startswith("_id.") for f in rt.crypto.fields.get(info.name, ())):
        return False  # a sealed id: its conditions are the seal rule's
    if filt.__class__ is not dict or len(filt) != 1 or "_id" not in filt:
        return False
    made = filt["_id"]
    return made.__class__ is ObjectId and (made is value or made == ObjectId(value))


def read(rt: Runtime, info: ModelInfo, guard: Guard, query: Mapping[str, Any] | None, options: Mapping[str, Any], *,
         one: bool = False, verb: str = "sort") -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """A read's filter (``filter``, ``strict`` from ``options``), its find options
    (``find_options``; ``one``: a ``find_one``, which takes ``sort`` and ``projection`` only) and
    what the open step drops, fetched only to open the values (``fetch_to_open``: ``_id``, the owner),
    compiled in one pass of this step."""
    # ``in`` looks (no ``dict.get`` call): a find_one that names no option passes here on every call
    filt = filter(rt, info, guard, query, strict=options["strict"] if "strict" in options else False)
    if one:
        sort = options["sort"] if "sort" in options else None
        projection = options["projection"] if "projection" in options else None
        if sort is None and projection is None:
            return filt, {}, ()  # the by-id find_one: no option to validate
        options = {"sort": sort, "projection": projection}
    compiled = find_options(rt, info, options, verb=verb)
    return filt, compiled, fetch_to_open(rt, info, compiled)


def find_options(rt: Runtime, info: ModelInfo, options: Mapping[str, Any], *, verb: str = "sort") -> dict[str, Any]:
    """``sort`` / ``limit`` / ``skip`` / ``projection`` / ``batch_size`` for PyMongo's ``find``;
    a sort by an encrypted field is refused where it holds ciphertext (its stored order would
    be the ciphertext's: ``verb`` names the call in the message)."""
    for name in _FIND_OPTIONS:
        if options.get(name) is not None:
            break
    else:
        return {}  # none given (the by-id find_one): nothing to validate
    out = q.find_options(info.cls, options.get("sort"), options.get("limit", 0), options.get("skip", 0),
                         options.get("projection"), options.get("batch_size"))
    if out.get("sort") and rt.crypto.ordered_by_value():
        for key, _ in out["sort"]:
            sealed = rt.crypto.sorted_by_ciphertext(info.name, key)
            if sealed == key:
                raise QueryError(f"cannot {verb} by {key!r}: it is encrypted, so its stored order means nothing")
            if sealed is not None:  # a position of its list, a document holding it
                raise QueryError(f"cannot {verb} by {key!r}: its stored order is the ciphertext's of the encrypted "
                                 f"{sealed!r}, which means nothing")
    return out


def fetch_to_open(rt: Runtime, info: ModelInfo, options: dict[str, Any]) -> tuple[str, ...]:
    """A read's compiled find ``options`` whose projection leaves out what opening its sealed
    values needs (``_id``; with field level encryption, the owner field: ``FieldCrypto.fetched_for``):
    it is fetched after all, and the paths returned tell the open step what to drop again
    (``open.documents(..., drop=...)``), so the caller gets exactly the fields it asked for,
    opened. Empty: nothing fetched, nothing to drop."""
    projection = options.get("projection")
    if projection is None:
        return ()
    fetch, drop = rt.crypto.fetched_for(info, projection)
    if not fetch:
        return ()
    inclusion = any(v for k, v in projection.items() if k != "_id")
    kept = {name: flag for name, flag in projection.items() if name not in fetch}
    if inclusion:
        kept.update({name: 1 for name in fetch if name != "_id"})
    if kept:
        options["projection"] = kept
    else:  # {"_id": 0} alone: every field
        del options["projection"]
    return drop


def update(rt: Runtime, info: ModelInfo, guard: Guard, data: Any) -> CompiledUpdate:
    """An update validated value by value and sealed; the actor may not hand a document to
    someone else."""
    try:
        return walker(rt, guard).update(info.cls, data)  # type: ignore[no-any-return]
    except ValidationError:
        with masked_errors(info.cls):  # masks the messages and re-raises; nothing to do when none was raised
            raise


def filter_and_update(rt: Runtime, info: ModelInfo, guard: Guard, query: Mapping[str, Any] | None, data: Any, *,
                      strict: bool = False) -> tuple[dict[str, Any], CompiledUpdate]:
    """An update call's filter (``filter``) and update (``update``), the call's walk looked up
    once (``strict`` applies to the filter only: the update's walk is then the plain one)."""
    walk = None if strict else walker(rt, guard)  # the filter's walk is the update's, unless strict
    filt = filter(rt, info, guard, query, strict=strict, walk=walk)
    try:
        compiled = (walk or walker(rt, guard)).update(info.cls, data)
    except ValidationError:
        with masked_errors(info.cls):  # as ``update``: masks the messages and re-raises
            raise
    return filt, compiled


def documents(info: ModelInfo, guard: Guard, items: Any, *,
              call: str = "create_many") -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, AstroDBError]]]:
    """New documents validated one by one: ``([(index, son)], [(index, error)])``."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise ValidationError(errors={"items": f"{call} takes a list of dicts, got {type(items).__name__}"})
    scoped = [guard.data(data) for data in items] if guard.scope else items  # no scope: data() gives each back
    sons: list[tuple[int, dict[str, Any]]] = []
    failed: list[tuple[int, AstroDBError]] = []
    ids = new_ids(len(scoped))  # the batch's client-made ids at once (one clock read); a chosen _id leaves its own unused
    for index, data in enumerate(scoped):
        try:
            sons.append((index, new_document(info, data, ids[index])))
        except AstroDBError as exc:
            failed.append((index, exc))
    return sons, failed


def document(info: ModelInfo, guard: Guard, data: Any) -> dict[str, Any]:
    """One new document, validated, with the service's fields (``_id``, dates, ``__v``); the
    actor's scope applied to it (``Guard.data``, which gives ``data`` back when there is none)."""
    return new_document(info, guard.data(data) if guard.scope else data)


def upserts(info: ModelInfo, guard: Guard, on: Any, items: Any, *, sealed: set[str]) -> tuple[
        tuple[str, ...], list[tuple[int, dict[str, Any]]], list[tuple[int, AstroDBError]]]:
    """``upsert_many``'s key (``upsert_key``) and items: validated one by one as ``create_many``'s
    (``documents``), then as upserts (``upsert_items``): ``(on, [(index, son)], [(index, error)])``."""
    key = upsert_key(info, on, sealed=sealed)
    sons, failed = documents(info, guard, items, call="upsert_many")
    return key, upsert_items(sons, key, failed), failed


def upsert_key(info: ModelInfo, on: Any, *, sealed: set[str] = set()) -> tuple[str, ...]:  # noqa: B006
    """``upsert_many``'s ``on``: field names (any spelling) that must be exactly the fields of a
    unique index the model declares; their stored names, in the index's order. ``id`` (or ``_id``)
    alone is the document's own key: ``("_id",)``."""
    names = (on,) if isinstance(on, str) else on
    if not isinstance(names, (tuple, list)) or not names or not all(isinstance(n, str) for n in names):
        raise QueryError(f"upsert_many needs on= the field name(s) of a unique index of {info.name}, got {on!r}")
    stored = []
    for name in names:
        try:
            stored.append(resolve_path(info.cls, name).stored)
            listed = through_list(info.cls, name)
        except AstroDBError as exc:
            raise QueryError(f"upsert_many on={on!r}: {exc}") from exc
        if listed:  # a multikey index: a document holds many keys
            raise QueryError(f"upsert_many on={on!r}: {stored[-1]} is, or is inside, a list: one document would hold "
                             "several keys; key on fields of the document or of its embedded documents")
    if "_id" in stored:  # the document's own key: unique on every collection, no declared index needed
        if len(stored) > 1:
            raise QueryError(f"upsert_many on={on!r}: the id is a key alone (unique by itself); pass on='id'")
        return ("_id",)
    unique = [[field for field, _ in spec["key"]] for spec in declared_indexes(info) if spec.get("unique")]
    for key in unique:
        if set(key) == set(stored) and len(key) == len(stored):
            if set(key) & sealed:
                raise QueryError(f"upsert_many cannot key on {sorted(set(key) & sealed)}: encrypted fields")
            return tuple(key)
    shown = ", ".join("(" + ", ".join(k) + ")" for k in unique) or "none"
    raise QueryError(f"upsert_many on {tuple(stored)}: {info.name} declares no unique index on exactly these "
                     f"fields (its unique indexes: {shown}); a key that is not unique could match several documents")


def upsert_items(sons: list[tuple[int, dict[str, Any]]], on: tuple[str, ...],
                 failed: list[tuple[int, AstroDBError]]) -> list[tuple[int, dict[str, Any]]]:
    """The ``upsert_many`` items that can be written: each must hold every key field and no
    ``id`` (a document is found by its key), or, keyed by id (``on == ("_id",)``), an ``id`` of
    its own; a key given by two items is refused for all of
    them (neither wins: which one was meant is the caller's to say). Key dates come cut to the
    millisecond the server stores (the codec's, ``fields.to_utc``), so the key read back compares equal."""
    kept: list[tuple[int, dict[str, Any]]] = []
    by_id = on == ("_id",)
    for index, son in sons:
        if by_id:
            if not _chose_id(son):
                failed.append((index, ValidationError(errors={"id": "required by upsert_many on id: the item's key"})))
                continue
        elif _chose_id(son):
            failed.append((index, ValidationError(errors={"id": "upsert_many finds documents by their key; leave id out"})))
            continue
        missing = [f for f in on if value_at(son, f) is None]
        if missing:
            failed.append((index, ValidationError(errors={f: "required by upsert_many: part of its key" for f in missing})))
            continue
        kept.append((index, son))
    seen: dict[Hashable, list[int]] = {}  # by the unique index's equality: 1 and 1.0 are one key
    for position, (_, son) in enumerate(kept):
        seen.setdefault(identity([value_at(son, f) for f in on]), []).append(position)
    twice = {p: ps for ps in seen.values() if len(ps) > 1 for p in ps}
    for position, positions in twice.items():
        others = [kept[p][0] for p in positions if p != position]
        failed.append((kept[position][0], ValidationError(errors={
            ", ".join(on): f"item {kept[position][0]} has the same key as item(s) {others}; upsert_many takes each key once"})))
    return [pair for position, pair in enumerate(kept) if position not in twice]


def _chose_id(son: dict[str, Any]) -> bool:
    """Whether the caller gave the new document's ``_id`` (``writes.new_document`` marks it)."""
    return son.get(REV_FIELD) is CONTINUED


def revision(value: Any) -> int | None:
    """An ``expected_revision=``: None, or a whole number from 0 that a BSON integer holds (below
    2**63: a revision is one), ``QueryError`` otherwise, before anything is sent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise QueryError(f"expected_revision must be a whole number from 0 (a revision read earlier), got {value!r}")
    return value


def pipeline(rt: Runtime, info: ModelInfo, guard: Guard, stages: Any) -> list[dict[str, Any]]:
    """An aggregation pipeline checked, sealed and scoped at every depth, each nested pipeline
    against the model of the collection it reads."""
    return walker(rt, guard).pipeline(info.cls, stages)


def require_target(info: ModelInfo, query: Any, call: str, *, all: bool = False) -> None:  # noqa: A002
    """A delete or a many-document update must name what it changes: an empty query is refused
    unless ``all=True`` (the same opt-in for ``delete_many`` and ``update_many``). Checked on the
    caller's query, before the scope narrows it."""
    if query:
        return
    if call == "delete":
        raise QueryError("delete needs a query naming the document (e.g. {'id': ...})")
    if not all:
        verb = "update" if call == "update_many" else "delete"
        raise QueryError(f"{call} with an empty query would {verb} every {info.name}; pass all=True to mean it")
