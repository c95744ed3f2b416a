"""Database: the service apps call, CRUD keyed by model name.

Each method resolves the model once (``registry``), validates its input (``query``,
``models.codec``) before anything is sent, runs the driver call through the retry policy and the
circuit breaker (``retry``) and translates any failure (``errors.translate``). Writes go through
PyMongo directly, so they can take a transaction's session; reads hydrate with the codec or,
with ``lean=True``, return the stored dicts untouched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Sequence, TypeVar

from . import query as q
from . import workflows
from .config import DatabaseConfig
from .errors import (
    AstroDBError,
    QueryError,
    TransactionError,
    ValidationError,
    translate,
)
from .events import WriteEvent
from .models import codec
from .pipeline import compile_pipeline
from .registry import ModelInfo, default_registry
from .runtime import Runtime, make_config
from .security import access
from .security.audit import ensure_audit_indexes, read_trail
from .security.masking import masked_errors
from .stale import mark, stale_age
from .timeouts import bounded
from .tooling import OperatorMixin
from .transactions import (
    DEFAULT_TIMEOUT_S,
    Transaction,
    run_with_retry,
    transaction_options,
)
from .updates import CompiledUpdate, compile_update
from .writes import WriteRunner, new_document

__all__ = ["Database", "CreateManyResult"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class CreateManyResult(list):
    """The created documents (a list), plus ``failed``: ``[(index, error), ...]`` for the rest."""

    def __init__(self, created: Sequence[Any] = (), failed: Sequence[tuple[int, AstroDBError]] = ()) -> None:
        super().__init__(created)
        self.failed = list(failed)


class Database(OperatorMixin):
    """A MongoDB data layer for the astrology app: ``Database(url | config | dict | None)``."""

    def __init__(self, config: str | DatabaseConfig | Mapping[str, Any] | None = None, *, actor: Any = None,
                 event_listeners: Sequence[Any] = (), **overrides: Any) -> None:
        """``event_listeners``: PyMongo listeners (``pymongo.monitoring``) of your own, registered
        on this Database's client beside the monitor's."""
        self._rt = Runtime(make_config(config, overrides), default_registry(), event_listeners)
        self._actor = access.Actor.of(actor) if actor is not None else None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def config(self) -> DatabaseConfig:
        return self._rt.config

    def connect(self) -> Database:
        """Connect (pinging with retries); returns ``self`` so ``db = Database(url).connect()`` reads."""
        try:
            self._rt.connection.connect()
        except AstroDBError:
            raise
        except Exception as exc:
            raise translate(exc, operation="connect") from exc
        if self.config.ensure_indexes and not self._rt.indexes_ensured:
            self._rt.indexes_ensured = True
            self.sync_indexes()
            if self.config.audit:
                self._run(None, "ensure audit indexes", lambda: ensure_audit_indexes(self.mongo, self.config.audit_retention_days))
        return self

    def disconnect(self) -> None:
        """Close the connection pool; idempotent."""
        self._rt.connection.disconnect()

    close = disconnect

    def is_connected(self) -> bool:
        """Whether the server answers right now (a bounded ping, not a flag)."""
        return self._rt.connection.is_connected()

    def __enter__(self) -> Database:
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self._rt.connection.connected else "not connected"
        return f"<Database {self.config.masked_url} {state}>"

    @property
    def mongo(self) -> Any:
        """The underlying PyMongo ``Database`` (an escape hatch: no validation, no hooks)."""
        return self._rt.connection.database

    def collection(self, model: Any) -> Any:
        """The PyMongo collection of a model (raw access, for tooling)."""
        return self.mongo[self._model(model).collection]

    # --- create ------------------------------------------------------------------------------

    @bounded
    def create(self, model: Any, data: Mapping[str, Any], *, transaction: Transaction | None = None) -> Any:
        """Validate ``data``, insert it, and return the model instance."""
        info = self._model(model)
        son = self._new_son(info, self._guard(info, "create").data(data))
        self._writes(info, transaction).insert_one(self._rt.crypto.seal_document(info, son))
        return codec.hydrate(info.cls, son)

    @bounded
    def create_many(self, model: Any, items: Sequence[Mapping[str, Any]], *, transaction: Transaction | None = None) -> CreateManyResult:
        """Validate every item, insert the valid ones in batches (unordered), report the rest.

        Returns the created instances; ``result.failed`` lists ``(index, error)`` for items that
        failed validation or were refused by the server (e.g. a duplicate email)."""
        info = self._model(model)
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise ValidationError(errors={"items": f"create_many takes a list of dicts, got {type(items).__name__}"})
        guard = self._guard(info, "create_many")
        items = [guard.data(data) for data in items]
        sons: list[tuple[int, dict]] = []
        failed: list[tuple[int, AstroDBError]] = []
        for index, data in enumerate(items):
            try:
                sons.append((index, self._new_son(info, data)))
            except AstroDBError as exc:
                failed.append((index, exc))
        refused = self._writes(info, transaction).insert_many([self._rt.crypto.seal_document(info, son) for _, son in sons])
        created = []
        for position, (index, son) in enumerate(sons):
            if position in refused:
                failed.append((index, refused[position]))
            else:
                created.append(codec.hydrate(info.cls, son))
        failed.sort(key=lambda pair: pair[0])
        return CreateManyResult(created, failed)

    # --- read --------------------------------------------------------------------------------

    @bounded
    def find(
        self,
        model: Any,
        query: Mapping[str, Any] | None = None,
        *,
        sort: Any = None,
        limit: int = 0,
        skip: int = 0,
        projection: Any = None,
        lean: bool = False,
        strict: bool = False,
        batch_size: int | None = None,
        cache: bool | None = None,
        stale_ok: bool = False,
        read_preference: Any = None,
        transaction: Transaction | None = None,
    ) -> list[Any]:
        """Documents matching ``query``: model instances, or stored dicts with ``lean=True``.

        ``timeout_ms`` bounds the call; ``stale_ok=True`` answers from the query cache, marked
        stale, while the server is unavailable (``astro_db.stale``); ``read_preference`` sends it
        to another replica-set member (``astro_db.routing``; only the primary in a transaction)."""
        info = self._model(model)
        filt = self._scope(info, self._guard(info, "find"), q.compile_filter(info.cls, query, strict=strict))
        options = q.find_options(info.cls, sort, limit, skip, projection, batch_size)
        session = self._session(transaction)
        coll, route = self._read_coll(info, read_preference, transaction)
        docs = self._cached(info, "find", filt, options, cache, transaction, lambda: self._run(
            info, "find", lambda: list(coll.find(filt, session=session, **options)), transaction,
            query=(filt, options.get("sort"))), stale_ok, route)
        age = stale_age(docs)
        docs = [self._rt.crypto.open_document(info, d) for d in docs] if self._rt.crypto.fields.get(info.name) else docs
        return mark(docs if lean else codec.hydrate_many(info.cls, docs), age)

    @bounded
    def find_one(
        self,
        model: Any,
        query: Mapping[str, Any] | None = None,
        *,
        sort: Any = None,
        projection: Any = None,
        lean: bool = False,
        strict: bool = False,
        cache: bool | None = None,
        stale_ok: bool = False,
        read_preference: Any = None,
        transaction: Transaction | None = None,
    ) -> Any:
        """The first document matching ``query``, or ``None`` (``timeout_ms``, ``stale_ok``: see ``find``)."""
        info = self._model(model)
        filt = self._scope(info, self._guard(info, "find_one"), q.compile_filter(info.cls, query, strict=strict))
        options = q.find_options(info.cls, sort, 0, 0, projection, None)
        session = self._session(transaction)
        coll, route = self._read_coll(info, read_preference, transaction)
        doc = self._cached(info, "find_one", filt, options, cache, transaction, lambda: self._run(
            info, "find_one", lambda: coll.find_one(filt, session=session, **options), transaction,
            query=(filt, options.get("sort"))), stale_ok, route)
        age = stale_age(doc)
        doc = self._rt.crypto.open_document(info, doc)
        if doc is None or lean:
            return mark(doc, age)
        return mark(codec.hydrate(info.cls, doc), age)

    @bounded
    def count(self, model: Any, query: Mapping[str, Any] | None = None, *, cache: bool | None = None,
              strict: bool = False, stale_ok: bool = False, read_preference: Any = None,
              transaction: Transaction | None = None) -> int:
        """How many documents match ``query`` (``timeout_ms``, ``stale_ok``: see ``find``)."""
        info = self._model(model)
        filt = self._scope(info, self._guard(info, "count"), q.compile_filter(info.cls, query, strict=strict))
        session = self._session(transaction)
        if session is not None and self.config.is_embedded:
            session = None  # mongomock-ng counts without sessions; it has no isolation to honour
        coll, route = self._read_coll(info, read_preference, transaction)
        return self._cached(info, "count", filt, None, cache, transaction, lambda: self._run(
            info, "count", lambda: coll.count_documents(filt, session=session), transaction, query=(filt, None)),
            stale_ok, route)

    @bounded
    def aggregate(self, model: Any, pipeline: Sequence[Mapping[str, Any]], *, read_preference: Any = None,
                  transaction: Transaction | None = None) -> list[dict[str, Any]]:
        """Run a read-only aggregation pipeline (``$match`` stages are validated); a list of dicts.
        Reports should pass ``read_preference="secondaryPreferred"`` (``routing.ANALYTICS``)."""
        info = self._model(model)
        guard = self._guard(info, "aggregate")
        stages = guard.pipeline([
            {"$match": self._rt.crypto.seal_filter(info, s["$match"])} if "$match" in s else s
            for s in compile_pipeline(info.cls, pipeline)
        ])
        session = self._session(transaction)
        coll, _ = self._read_coll(info, read_preference, transaction)
        first = stages[0].get("$match", {}) if stages else {}
        out = self._run(info, "aggregate", lambda: list(coll.aggregate(stages, session=session)), transaction, query=(first, None))
        return self._rt.crypto.open_output(info, stages, out)

    # --- update and delete -------------------------------------------------------------------

    @bounded
    def update(self, model: Any, query: Mapping[str, Any], data: Mapping[str, Any], *, strict: bool = False,
               transaction: Transaction | None = None) -> Any:
        """Validate and apply ``data`` to the first match; the updated instance, or ``None``."""
        info = self._model(model)
        guard = self._guard(info, "update")
        filt = self._scope(info, guard, q.compile_filter(info.cls, query, strict=strict))
        compiled = self._compile_update(info, guard, data)
        doc = self._writes(info, transaction).update_one(filt, compiled)
        return None if doc is None else codec.hydrate(info.cls, self._rt.crypto.open_document(info, doc))

    @bounded
    def update_many(self, model: Any, query: Mapping[str, Any], data: Mapping[str, Any], *, strict: bool = False,
                    transaction: Transaction | None = None) -> int:
        """Validate and apply ``data`` to every match; the number of documents modified."""
        info = self._model(model)
        guard = self._guard(info, "update_many")
        filt = self._scope(info, guard, q.compile_filter(info.cls, query, strict=strict))
        compiled = self._compile_update(info, guard, data)
        return self._writes(info, transaction).update_many(filt, compiled)

    @bounded
    def delete(self, model: Any, query: Mapping[str, Any], *, strict: bool = False, transaction: Transaction | None = None) -> bool:
        """Delete the first match; ``True`` if a document was deleted."""
        info = self._model(model)
        guard = self._guard(info, "delete")
        filt = q.compile_filter(info.cls, query, strict=strict)
        if not filt:
            raise QueryError("delete needs a query naming the document (e.g. {'id': ...})")
        return self._writes(info, transaction).delete_one(self._scope(info, guard, filt))

    @bounded
    def delete_many(self, model: Any, query: Mapping[str, Any], *, all: bool = False, strict: bool = False,
                    transaction: Transaction | None = None) -> int:
        """Delete every match; an empty query is refused unless ``all=True`` (an admin's call)."""
        info = self._model(model)
        guard = self._guard(info, "delete_many")
        filt = q.compile_filter(info.cls, query, strict=strict)
        if not filt and not all:
            raise QueryError(f"delete_many with an empty query would delete every {info.name}; pass all=True to mean it")
        if not filt:
            self._guard(info, access.DELETE_ALL)
        return self._writes(info, transaction).delete_many(self._scope(info, guard, filt))

    # --- transactions ------------------------------------------------------------------------

    def start_transaction(self, **options: Any) -> Transaction:
        """Open a transaction (``read_concern``, ``write_concern``, ``read_preference`` options)."""
        self._rt.breaker.before_call()
        return Transaction(self._rt.connection.client, owner=self._rt, **transaction_options(self.config, options))

    def commit_transaction(self, transaction: Transaction) -> None:
        """Commit; on failure the transaction is aborted and a ``TransactionError`` raised."""
        self._own(transaction).commit()

    def rollback_transaction(self, transaction: Transaction) -> None:
        """Abort: none of the transaction's writes happen."""
        self._own(transaction).abort()

    abort_transaction = rollback_transaction

    @contextlib.contextmanager
    def transaction(self, **options: Any) -> Iterator[Transaction]:
        """``with db.transaction() as tx:`` commits on normal exit, aborts on an exception."""
        tx = self.start_transaction(**options)
        try:
            yield tx
        except BaseException:
            if tx.active:
                tx.abort()
            raise
        if tx.active:
            tx.commit()

    def with_transaction(self, fn: Callable[..., T], *args: Any, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs: Any) -> T:
        """Run ``fn(tx, *args, **kwargs)`` in a transaction, retrying transient failures."""
        return run_with_retry(self.start_transaction, fn, args, kwargs, timeout_s=timeout_s)

    # --- units of work ----------------------------------------------------------------------

    def create_user_with_chart(self, user: Mapping[str, Any], chart: Mapping[str, Any], *, transaction: Transaction | None = None) -> tuple[Any, Any]:
        """Create a user and their birth chart in one transaction; ``(user, chart)``."""
        return workflows.create_user_with_chart(self, user, chart, transaction=transaction)

    def delete_user_cascade(self, user_id: Any, *, transaction: Transaction | None = None) -> dict[str, int]:
        """Delete a user and everything that refers to them in one transaction; counts per model."""
        return workflows.delete_user_cascade(self, user_id, transaction=transaction)

    # --- security ----------------------------------------------------------------------------

    def as_actor(self, actor_id: Any, roles: Any = None, *, request_id: str | None = None) -> Database:
        """A view of this Database acting for ``actor_id`` with ``roles`` (same connection,
        cache and transactions); its calls are checked against the roles and audited as it."""
        view = Database.__new__(Database)
        view.__dict__.update(self.__dict__)
        view._actor = access.Actor.of(actor_id, roles, request_id)
        return view

    @property
    def actor(self) -> access.Actor | None:
        """Who this view acts for (``None``: the trusted app itself)."""
        return self._actor

    def audit_trail(self, model: Any, id: Any) -> list[dict[str, Any]]:
        """A document's audit entries, oldest first: dicts with ``time``, ``actor``, ``action``
        (create / update / delete), ``model``, ``documentId`` (hex string), ``fields``, ``requestId``."""
        info = self._model(model)
        self._guard(info, access.AUDIT)
        oid = q.coerce_id(id)
        return self._run(info, "audit_trail", lambda: read_trail(self.mongo, info.name, oid))

    # --- internals ---------------------------------------------------------------------------

    def _guard(self, info: ModelInfo, operation: str) -> access.Guard:
        """Check the actor may do ``operation`` on the model (before any I/O); its scope."""
        return access.authorize(self._actor, info, operation)

    def _scope(self, info: ModelInfo, guard: access.Guard, filt: dict[str, Any]) -> dict[str, Any]:
        """A compiled filter made to match encrypted values and narrowed to the actor's scope."""
        return guard.filter(self._rt.crypto.seal_filter(info, filt))

    def _compile_update(self, info: ModelInfo, guard: access.Guard, data: Any) -> CompiledUpdate:
        with masked_errors(info.cls):
            compiled = compile_update(info.cls, data)
            for op in ("$set", "$push", "$addToSet"):
                for key, value in compiled.update.get(op, {}).items():
                    q.check_document_keys(value["$each"] if isinstance(value, dict) and "$each" in value else value, key)
        guard.update(compiled.update)
        compiled.update = self._rt.crypto.seal_update(info, compiled.update)
        return compiled

    def _model(self, model: Any) -> ModelInfo:
        return self._rt.registry.resolve(model)

    def _coll(self, info: ModelInfo) -> Any:
        return self._rt.coll(info)

    def _cached(self, info: ModelInfo, kind: str, filt: dict, options: Any, cache: bool | None,
                transaction: Transaction | None, fetch: Callable[[], T], stale_ok: bool = False,
                route: str | None = None) -> T:
        return self._rt.cached(info, kind, filt, options, cache, transaction, fetch, stale_ok, route)

    def _read_coll(self, info: ModelInfo, read_preference: Any, transaction: Transaction | None) -> tuple[Any, str]:
        return self._rt.read_coll(info, read_preference, transaction)

    def _own(self, transaction: Any) -> Transaction:
        if not isinstance(transaction, Transaction):
            raise TransactionError(f"expected a Transaction from start_transaction(), got {type(transaction).__name__}")
        if transaction.owner is not self._rt:
            raise TransactionError("this transaction belongs to another Database")
        return transaction

    def _session(self, transaction: Transaction | None) -> Any:
        if transaction is None:
            return None
        return self._own(transaction).require_active()

    def _new_son(self, info: ModelInfo, data: Any) -> dict[str, Any]:
        return new_document(info, data)

    def _writes(self, info: ModelInfo, transaction: Transaction | None) -> WriteRunner:
        return WriteRunner(self, info, transaction, self._session(transaction))

    def _run(self, info: ModelInfo | None, operation: str, fn: Callable[[], T], transaction: Transaction | None = None, *,
             retry: bool = True, query: tuple[Any, Any] | None = None) -> T:
        """One driver call through the runtime's breaker, bound, retries and translation."""
        return self._rt.run(info, operation, fn, transaction, retry=retry, query=query)

    def _emit(self, event: WriteEvent) -> None:
        self._rt.emit(event)

