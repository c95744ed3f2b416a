"""The executor: every operation of the service runs here, through the same ordered steps.

    resolve → authorize → compile → seal → route → cache → run → hooks → open → hydrate

``Database`` methods are one-line declarations of an ``Operation``; the executor takes it through
the steps (``astro_db.ops.steps``), each one module, in that order. Operator tooling (indexes,
explain, health, key rotation, maintenance, backup) runs its driver calls through ``call`` and so
gets the same authorization, breaker, time bound, retries, translation and metrics.

The executor is also the documented interface for tools and tests that need more than the public
``Database`` API: ``runtime`` (the shared state: config, connection, cache, breaker, retry policy,
monitor, crypto, registry), ``call`` (one driver call through the run step) and ``after_write``
(the after-write step: the write hooks, change records included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ..changes import REV_FIELD, read_trail
from ..errors import AstroDBError, PermissionDeniedError, QueryError
from ..events import Written
from ..monitoring import tracing
from ..query import filters as q
from ..query.order import identity
from ..query.updates import CompiledUpdate
from ..registry import ModelInfo
from ..security.access import DELETE_ALL, UPDATE, Actor, Guard
from ..stale import stale_age
from . import pages, references
from .operation import Operation
from .runtime import Runtime
from .steps import authorize, cache, compile, hooks, hydrate, open, resolve, route, run, seal
from .writes import WriteRunner

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MaybeTransaction, Session
    from ..driver.gateway import Gateway

__all__ = ["Executor", "CreateManyResult", "UpsertResult"]

T = TypeVar("T")


class CreateManyResult(Sequence[Any]):
    """The created documents, in the order given, plus ``failed``: ``[(index, error), ...]`` for
    the rest. Model instances are built on first use (indexing, iterating, comparing), so a caller
    that only checks ``failed`` or reads ``ids`` builds none; with ``lean=True`` the items are the
    stored dicts. ``list(result)`` gives a plain list."""

    def __init__(self, created: Any = (), failed: Any = (), *, build: Callable[[list[Any]], list[Any]] | None = None) -> None:
        self._stored: list[Any] = list(created)
        self._build = build
        self._items: list[Any] | None = None if build is not None else self._stored
        self.failed: list[tuple[int, AstroDBError]] = list(failed)

    @property
    def ids(self) -> list[Any]:
        """The ``_id`` of every created document (no instance is built for it)."""
        return [doc["_id"] if isinstance(doc, Mapping) else doc.id for doc in self._stored]

    def _all(self) -> list[Any]:
        items = self._items
        if items is None:  # two threads may both build: the same instances' equals, the last one kept
            items = self._items = self._build(self._stored)  # type: ignore[misc]
        return items

    def __len__(self) -> int:
        return len(self._stored)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._all()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CreateManyResult):
            return self._all() == other._all() and self.failed == other.failed
        return isinstance(other, list) and self._all() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CreateManyResult({self._all()!r}, failed={self.failed!r})"


class UpsertResult:
    """What ``upsert_many`` did: ``inserted``, ``updated`` and ``unchanged`` (counts), their ids
    (``inserted_ids``, ``updated_ids``, ``unchanged_ids``), ``ids`` (every item not failed, in
    the order given) and ``failed``: ``[(index, error), ...]`` for the items not written."""

    def __init__(self, outcomes: Mapping[int, tuple[str, Any]], failed: Sequence[tuple[int, AstroDBError]]) -> None:
        ordered = sorted(outcomes.items())
        self.ids: list[Any] = [oid for _, (_, oid) in ordered]
        self.inserted_ids: list[Any] = [oid for _, (what, oid) in ordered if what == "inserted"]
        self.updated_ids: list[Any] = [oid for _, (what, oid) in ordered if what == "updated"]
        self.unchanged_ids: list[Any] = [oid for _, (what, oid) in ordered if what == "unchanged"]
        self.failed: list[tuple[int, AstroDBError]] = sorted(failed, key=lambda pair: pair[0])

    @property
    def inserted(self) -> int:
        return len(self.inserted_ids)

    @property
    def updated(self) -> int:
        return len(self.updated_ids)

    @property
    def unchanged(self) -> int:
        return len(self.unchanged_ids)

    def __repr__(self) -> str:
        return (f"UpsertResult(inserted={self.inserted}, updated={self.updated}, unchanged={self.unchanged}, "
                f"failed={self.failed!r})")


@tracing.instrument  # one OpenTelemetry span per operation (monitoring/tracing.py), when installed
class Executor:
    """Runs operations through the steps over one ``Runtime`` (shared by a Database's views)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        if not any(isinstance(hook, hooks.ChangeRecords) for hook in runtime.hooks):
            runtime.hooks.append(hooks.ChangeRecords(runtime))  # after the cache's, before the app's

    # --- the documented interface for tools ------------------------------------------------

    def model(self, name: Any) -> ModelInfo:
        """Resolve a model name (step 1)."""
        return resolve.model(self.runtime, name)

    def authorize(self, actor: Actor | None, name: str, model: Any = None) -> Guard:
        """Authorize the call ``name`` for ``actor`` (step 2) on ``model`` if it has one."""
        info = resolve.model(self.runtime, model) if model is not None else None
        return authorize.check(actor, name, info)

    def call(self, info: ModelInfo | None, operation: str, fn: Callable[[], T], transaction: MaybeTransaction = None, *,
             retry: bool = True) -> T:
        """One driver call through the run step (breaker, time bound, retries, translation, metrics)."""
        return run.call(self.runtime, info, operation, fn, transaction, retry=retry)

    def gateway(self, operation: str, *, retry: bool = True) -> Gateway:
        """The gateway (``driver.gateway``) with every call made through ``call`` as ``operation``:
        what a tool (backup, restore, verify) is handed, so its driver calls get the breaker, the
        time bound, retries (unless ``retry=False``), translation and metrics of the run step."""
        return self.runtime.gateway.through(lambda fn: self.call(None, operation, fn, retry=retry))

    def after_write(self, info: ModelInfo, written: Written, *, actor: str) -> None:
        """Announce a write made by a tool (e.g. key rotation) to the write hooks, its change
        records included: the after-write step (step 8), as every write of the service."""
        hooks.after_write(self.runtime, info, written, database=self.runtime.gateway, session=None,
                          transaction=None, actor=actor)

    # --- reads ------------------------------------------------------------------------------

    def find(self, op: Operation) -> Any:
        rt = self.runtime
        opts = op.options
        info, session, guard = self._begin(op)
        filt, options, drop = compile.read(rt, info, guard, op.query, opts)
        coll, where = route.read(rt, info, opts.get("read_preference"), op.transaction)
        docs = self._read(op, info, guard, filt, options, where,
                          partial(run.listed, coll.find, filt, session=session, **options))
        age = stale_age(docs) if opts.get("stale_ok") else None  # only stale_ok answers stale (steps/cache.py)
        return hydrate.many(info, open.documents(rt, info, docs, drop=drop), lean=opts.get("lean", False), age=age)

    def find_one(self, op: Operation) -> Any:
        # ``_begin`` and ``_read`` inlined, and the options looked at with ``in`` (no ``dict.get``
        # call): the same steps with the same arguments, fewer calls on the most frequent read
        rt = self.runtime
        opts = op.options
        transaction = op.transaction
        info, session = resolve.call(rt, op.model, transaction)
        guard = authorize.check(op.actor, op.name, info)
        filt, options, drop = compile.read(rt, info, guard, op.query, opts, one=True)
        coll, where = route.read(rt, info, opts["read_preference"] if "read_preference" in opts else None, transaction)
        stale_ok = opts["stale_ok"] if "stale_ok" in opts else False
        query = partial(coll.find_one, filt, session=session, **options)
        doc = cache.read_through(
            rt, info, op.name, filt, options, cache=opts["cache"] if "cache" in opts else None, transaction=transaction,
            stale_ok=stale_ok, route=where, guard=guard,
            fetch=partial(run.call, rt, info, op.name, query, transaction,
                          query=(filt, options["sort"] if "sort" in options else None)),
        )
        age = stale_age(doc) if stale_ok else None  # only stale_ok answers stale (steps/cache.py)
        return hydrate.one(info, open.document(rt, info, doc, drop=drop), lean=opts["lean"] if "lean" in opts else False,
                           age=age)

    def iter_find(self, op: Operation) -> Iterator[Any]:
        """Steps 1-7 now, up to the first batch (retried like any read); the rest streamed,
        batch by batch, each document checked against the scope, opened and hydrated alone."""
        rt = self.runtime
        info, session, guard = self._begin(op)
        filt = compile.filter(rt, info, guard, op.query, strict=op.options.get("strict", False))
        options = compile.find_options(rt, info, op.options)
        drop = compile.fetch_to_open(rt, info, options)
        coll, _ = route.read(rt, info, op.options.get("read_preference"), op.transaction)

        def first_batch() -> tuple[Any, Any]:
            cursor = coll.find(filt, session=session, **options)
            return cursor, next(cursor, run.END)  # the find command: the first batch

        cursor, head = run.call(rt, info, "iter_find", first_batch, op.transaction, query=(filt, options.get("sort")))
        return self._stream(info, guard, cursor, head, lean=op.options.get("lean", False), drop=drop)

    def _stream(self, info: ModelInfo, guard: Guard, cursor: Any, doc: Any, *, lean: bool, drop: tuple[str, ...]) -> Iterator[Any]:
        rt = self.runtime
        try:
            while doc is not run.END:
                if not guard.admits(doc):
                    raise PermissionDeniedError(f"the server answered iter_find on {info.name} with a document "
                                                "outside the actor's scope")
                yield hydrate.one(info, open.document(rt, info, doc, drop=drop), lean=lean)
                doc = run.read_on(rt, info, "iter_find", cursor)
        finally:
            cursor.close()

    def page(self, op: Operation) -> pages.Page[Any]:
        """One keyset page (``ops.pages``): the filter, then "after the token's document"."""
        rt = self.runtime
        info, session, guard = self._begin(op)
        limit = op.options.get("limit")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= pages.MAX_LIMIT:
            raise QueryError(f"limit must be a whole number from 1 to {pages.MAX_LIMIT}, got {limit!r}")
        filt = compile.filter(rt, info, guard, op.query, strict=op.options.get("strict", False))
        options = compile.find_options(rt, info, {"sort": op.options.get("sort"), "projection": op.options.get("projection")},
                                       verb="page")
        order = pages.page_sort(options.get("sort"))
        pages.refuse_list_keys(info.cls, order)
        found: dict[str, Any] = {"projection": pages.page_projection(options.get("projection"), order)}
        drop = compile.fetch_to_open(rt, info, found) if found["projection"] else ()  # _id, the owner: to open sealed values
        projection = found.get("projection")
        tokens = rt.page_tokens
        context = tokens.context(info.name, filt, order, op.actor.id if op.actor is not None else "")
        sealed = pages.personal_sort(info.cls, order)  # personal values: the token's body encrypted
        after = op.options.get("after")
        last = tokens.open(context, after, len(order), sealed) if after is not None else None
        coll, _ = route.read(rt, info, op.options.get("read_preference"), op.transaction)
        if isinstance(last, pages.LastById):  # sort values too long for the token: read back by its _id
            pinned = last
            doc = run.call(rt, info, "page", lambda: coll.find_one(
                {"$and": [filt, {"_id": pinned.id}]} if filt else {"_id": pinned.id},
                pages.sort_keys_projection(order), session=session), op.transaction)
            last = pinned.values(doc, order)
        query, beyond = filt, None
        if last is not None:
            keyset, beyond = pages.keyset_filter(order, last), pages.beyond_filter(order, last)
            query = {"$and": [filt, keyset]} if filt else keyset

        def ask(query: dict[str, Any], wanted: int) -> list[dict[str, Any]]:
            options: dict[str, Any] = {"sort": order, "limit": wanted}
            if projection:
                options["projection"] = projection
            return run.call(rt, info, "page", lambda: list(coll.find(query, session=session, **options)),
                            op.transaction, query=(query, order))

        docs = ask(query, limit + 1)
        if beyond is not None and len(docs) <= limit:  # the first key's bracket ran out: the brackets after it
            docs += ask({"$and": [filt, beyond]} if filt else beyond, limit + 1 - len(docs))
        if not guard.admits(docs):
            raise PermissionDeniedError(f"the server answered page on {info.name} with a document outside the actor's scope")
        more = len(docs) > limit
        docs = docs[:limit]
        token = tokens.make(context, pages.sort_values(docs[-1], order), sealed) if more and docs else None
        items = hydrate.many(info, open.documents(rt, info, docs, drop=drop), lean=op.options.get("lean", False))
        return pages.Page(list(items), token, len(docs))

    def count(self, op: Operation) -> int:
        rt = self.runtime
        info, session, guard = self._begin(op)
        if session is not None and not rt.capabilities.session_counts:
            session = None  # the backend counts without sessions; it has no isolation to honour
        filt = compile.filter(rt, info, guard, op.query, strict=op.options.get("strict", False))
        coll, where = route.read(rt, info, op.options.get("read_preference"), op.transaction)
        return self._read(op, info, guard, filt, None, where,  # type: ignore[no-any-return]
                          partial(coll.count_documents, filt, session=session))

    def aggregate(self, op: Operation) -> list[dict[str, Any]]:
        rt = self.runtime
        info, session, guard = self._begin(op)
        stages = compile.pipeline(rt, info, guard, op.data)
        coll, _ = route.read(rt, info, op.options.get("read_preference"), op.transaction)
        first = stages[0].get("$match", {}) if stages else {}
        out = run.call(rt, info, "aggregate", lambda: list(coll.aggregate(stages, session=session)),
                       op.transaction, query=(first, None))
        owner = rt.crypto.owners.get(info.name)

        def owners_of(ids: list[Any]) -> list[dict[str, Any]]:  # the owners of output documents that left theirs out
            return run.call(rt, info, "aggregate", lambda: list(coll.find({"_id": {"$in": ids}}, {owner: 1}, session=session)),
                            op.transaction)

        return open.output(rt, info, stages, out, owners_of if owner else None)

    # --- writes -----------------------------------------------------------------------------

    def create(self, op: Operation) -> Any:
        rt = self.runtime  # ``_begin`` and ``_writer`` inlined: the same steps, fewer calls
        transaction = op.transaction
        info, session = resolve.call(rt, op.model, transaction)
        guard = authorize.check(op.actor, op.name, info)
        son = compile.document(info, guard, op.data)
        if rt.config.check_references:  # ``refuse_orphans``' own first look: nothing to check when off
            references.refuse_orphans(rt, info, [son], transaction)
        writer = WriteRunner(rt, info, transaction, session, op.actor)
        if REV_FIELD in son:  # an _id the caller chose: its earlier lives' revisions
            for error in writer.continue_lives([son]).values():
                raise error
        try:
            writer.insert_one(seal.document(rt, info, son))
        except AstroDBError as exc:
            writer.stopped(exc)  # an error after the write was applied says so (``applied``)
            raise
        opts = op.options
        return hydrate.created(info, son, lean=opts["lean"] if "lean" in opts else False)

    def create_many(self, op: Operation) -> CreateManyResult:
        rt = self.runtime
        info, session, guard = self._begin(op)
        sons, failed = compile.documents(info, guard, op.data)
        sons = references.keep_referenced(rt, info, sons, failed, op.transaction)
        writer = self._writer(info, op, session)
        reused = writer.continue_lives([son for _, son in sons])
        if reused:  # keyed by identity(_id): the server's equality, an embedded-document _id included
            kept = []
            for index, son in sons:
                error = reused.get(identity(son["_id"]))
                if error is None:
                    kept.append((index, son))
                else:
                    failed.append((index, error))
            sons = kept
        try:
            refused = writer.insert_many(seal.documents(rt, info, [son for _, son in sons]))
        except AstroDBError as exc:
            writer.stopped(exc)
            raise
        created = []
        for position, (index, son) in enumerate(sons):
            if position in refused:
                failed.append((index, refused[position]))
            else:
                created.append(son)
        failed.sort(key=lambda pair: pair[0])
        if op.options.get("lean", False):
            return CreateManyResult(created, failed)
        return CreateManyResult(created, failed, build=lambda docs: hydrate.many(info, docs, lean=False))

    def upsert_many(self, op: Operation) -> UpsertResult:
        """Insert or replace by a declared unique key (``ops.writes.WriteRunner.upsert_many``):
        needs ``create`` and ``update``; items validated as ``create_many``'s, scoped, sealed."""
        rt = self.runtime
        info, session, guard = self._begin(op)
        authorize.check(op.actor, op.name, info, permission=UPDATE)
        on, sons, failed = compile.upserts(info, guard, op.options.get("on"), op.data,
                                           sealed={f.path for f in rt.crypto.fields.get(info.name, ())}
                                           if rt.crypto.ordered_by_value() else set())
        sons = references.keep_referenced(rt, info, sons, failed, op.transaction)
        writer = self._writer(info, op, session)
        try:
            done, refused = writer.upsert_many([(son, seal.document(rt, info, son)) for _, son in sons], on, guard.filter)
        except AstroDBError as exc:
            writer.stopped(exc)
            raise
        outcomes: dict[int, tuple[str, Any]] = {}
        for position, (index, _) in enumerate(sons):
            if position in refused:
                failed.append((index, refused[position]))
            else:
                outcomes[index] = (done[position].outcome, done[position].id)
        return UpsertResult(outcomes, failed)

    def update(self, op: Operation) -> Any:
        """The updated document, opened and hydrated; with ``returning=False`` only whether one
        was updated: the document is neither opened nor hydrated, and the write reads back of
        it only what its hooks need (``steps.hooks.post_image``; nothing, an ``update`` command,
        when ``steps.hooks.stampless`` says so)."""
        opts = op.options
        returning = opts["returning"] if "returning" in opts else True  # no call: the default path is as before
        if returning is not True:
            if returning is not False:
                raise QueryError(f"update(): returning must be True or False, got {returning!r}")
            if opts.get("lean", False):
                raise QueryError("update(): lean=True asks for the updated document as a dict and returning=False for "
                                 "none; pass one of them")
            info, writer, filt, compiled, expected = self._updating(op)
            try:
                return writer.update_one(filt, compiled, expected_revision=expected, returning=False) is not None
            except AstroDBError as exc:
                writer.stopped(exc)
                raise
        info, writer, filt, compiled, expected = self._updating(op)
        try:
            doc = writer.update_one(filt, compiled, expected_revision=expected)
            return hydrate.one(info, open.document(self.runtime, info, doc), lean=opts.get("lean", False))
        except AstroDBError as exc:
            writer.stopped(exc)  # e.g. the key vault unreachable to open the updated document
            raise

    def update_many(self, op: Operation) -> int:
        _, writer, filt, compiled, _ = self._updating(op, all=op.options.get("all", False))
        try:
            return writer.update_many(filt, compiled)
        except AstroDBError as exc:
            writer.stopped(exc)  # some documents (chunks, or one by one) were updated before it stopped
            raise

    def delete(self, op: Operation) -> bool:
        rt = self.runtime
        info, session, guard = self._begin(op)
        compile.require_target(info, op.query, op.name)
        filt = compile.filter(rt, info, guard, op.query, strict=op.options.get("strict", False))
        expected = compile.revision(op.options.get("expected_revision"))  # still step 3
        writer = self._writer(info, op, session)
        try:
            return writer.delete_one(filt, expected_revision=expected)
        except AstroDBError as exc:
            writer.stopped(exc)
            raise

    def delete_many(self, op: Operation) -> int:
        rt = self.runtime
        info, session, guard = self._begin(op)
        compile.require_target(info, op.query, op.name, all=op.options.get("all", False))
        if not op.query:
            authorize.check(op.actor, op.name, info, permission=DELETE_ALL)
        filt = compile.filter(rt, info, guard, op.query, strict=op.options.get("strict", False))
        writer = self._writer(info, op, session)
        try:
            return writer.delete_many(filt)
        except AstroDBError as exc:
            writer.stopped(exc)  # the chunks deleted before it stopped are deleted
            raise

    # --- the audit trail ----------------------------------------------------------------------

    def audit_trail(self, op: Operation, document_id: Any) -> list[dict[str, Any]]:
        """A document's audit entries; a self-scoped actor sees only its own documents' trails."""
        rt = self.runtime
        info = resolve.model(rt, op.model)
        document_id = q.document_id(info.cls, document_id)  # one value of the model's id type
        guard = authorize.check(op.actor, op.name, info)
        if guard.scope:
            mine = guard.filter({"_id": document_id})
            if run.call(rt, info, "audit_trail", lambda: rt.coll(info).count_documents(mine)) == 0:
                from ..errors import PermissionDeniedError

                who = guard.actor.id if guard.actor is not None else "?"
                raise PermissionDeniedError(
                    f"actor {who} is limited to its own documents; {info.name} {document_id} is not one of them")
        # one run-step call per part (the entries earlier versions wrote, the change records'): each checks the call's deadline
        older = run.call(rt, info, "audit_trail", partial(read_trail, rt.gateway, info.name, document_id, legacy=True))
        return older + run.call(rt, info, "audit_trail", partial(read_trail, rt.gateway, info.name, document_id, legacy=False))

    # --- helpers ----------------------------------------------------------------------------

    def _read(self, op: Operation, info: ModelInfo, guard: Guard, filt: dict[str, Any], options: Any,
              where: str | None, query: Callable[[], Any]) -> Any:
        """Steps 6 and 7 of a read (cache, run) with the compiled filter (validated, sealed and
        scoped) and the routed collection's driver call ``query`` (a ``functools.partial``), made
        through the cache when the call or the model asks for it (an answer from the cache is
        checked against the scope again, ``guard``). The run step is handed to the cache step
        as a partial too: no closure of the executor's is called back from below."""
        rt = self.runtime
        opts = op.options
        sort = options.get("sort") if options else None
        return cache.read_through(
            rt, info, op.name, filt, options, cache=opts.get("cache"), transaction=op.transaction,
            stale_ok=opts.get("stale_ok", False), route=where, guard=guard,
            fetch=partial(run.call, rt, info, op.name, query, op.transaction, query=(filt, sort)),
        )

    def _begin(self, op: Operation) -> tuple[ModelInfo, Any, Guard]:
        """Steps 1 and 2 of every data call: the model, the transaction's session, the Guard."""
        info, session = resolve.call(self.runtime, op.model, op.transaction)
        return info, session, authorize.check(op.actor, op.name, info)

    def _updating(self, op: Operation, *, all: bool | None = None,  # noqa: A002
                  ) -> tuple[ModelInfo, WriteRunner, dict[str, Any], CompiledUpdate, int | None]:
        """Steps 1 to 4 of an update: the filter and the update compiled, scoped and sealed, and
        the writer that runs it. ``all`` (``update_many``): an empty filter needs ``all=True``."""
        rt = self.runtime
        info, session, guard = self._begin(op)
        if all is not None:
            compile.require_target(info, op.query, op.name, all=all)
        opts = op.options
        filt, compiled = compile.filter_and_update(rt, info, guard, op.query, op.data, strict=opts.get("strict", False))
        expected = opts.get("expected_revision")
        if expected is not None:  # still step 3: checked (None, the default, needs no look)
            expected = compile.revision(expected)
        references.refuse_orphan_update(rt, info, compiled.update, op.transaction)
        return info, self._writer(info, op, session), filt, compiled, expected

    def _writer(self, info: ModelInfo, op: Operation, session: Session) -> WriteRunner:
        return WriteRunner(self.runtime, info, op.transaction, session, op.actor)


def options_of(**options: Any) -> Mapping[str, Any]:
    """The options of a call without the ones left at their defaults (``None``)."""
    return {k: v for k, v in options.items() if v is not None}
