"""Database: the service apps call, CRUD keyed by model, as typed one-line declarations.

Each method states an ``Operation`` (its name, the model, the actor, the transaction and the
arguments) and hands it to the executor (``astro_db.ops``), which runs every call through the
same steps: resolve → authorize → compile → seal → route → cache → run → hooks → open →
hydrate. A model is named by its class (``db.find(User, q) -> list[User]``) or by any spelling
of its name (``"User"``, ``"birth_chart"``, ``"birthCharts"``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, Union, Unpack, overload

from .changes import ensure_change_indexes
from .config import DatabaseConfig
from .driver import timeouts
from .driver.timeouts import CALL_BOUND, under_call_bound
from .driver.transactions import DEFAULT_TIMEOUT_S, Transaction, run_with_retry, transaction_options
from .errors import AstroDBError, translate
from .indexes import list_model_indexes
from .models.base import AstroDocument
from .ops import CreateManyResult, Executor, Operation, Runtime, UpsertResult, make_config
from .ops.pages import Page
from .ops.steps import resolve
from .registry import registry_for
from .security import access
from .tooling import OperatorMixin
from .workflows import create_user_with_chart, delete_user_cascade

if TYPE_CHECKING:  # pragma: no cover
    from ._types import MaybeActor
    from .registry import ModelInfo

__all__ = ["Database", "CreateManyResult", "Page", "UpsertResult"]

log = logging.getLogger(__name__)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
D = TypeVar("D", bound=AstroDocument)
ModelRef = Union[str, type[AstroDocument], "ModelInfo"]
Query = Mapping[str, Any] | None


class WriteOptions(TypedDict, total=False):
    """Options every write takes."""

    transaction: Transaction | None
    timeout_ms: float | None


class FilterOptions(WriteOptions, total=False):
    strict: bool  # operator objects in values (and $or, $text) are a QueryError: values are literals


class ReadOptions(FilterOptions, total=False):
    cache: bool | None  # this call through the query cache (None: as the model is configured)
    stale_ok: bool  # answer from the cache, marked stale, while the server is unavailable
    read_preference: Any  # e.g. "secondaryPreferred" (astro_db.driver.routing); primary in a transaction


class FindOneOptions(ReadOptions, total=False):
    sort: Any
    projection: Any


class FindOptions(FindOneOptions, total=False):
    limit: int
    skip: int
    batch_size: int | None


class IterOptions(FilterOptions, total=False):
    read_preference: Any
    sort: Any
    projection: Any
    limit: int
    skip: int
    batch_size: int | None


class PageOptions(FilterOptions, total=False):
    sort: Any
    projection: Any
    read_preference: Any


class AggregateOptions(WriteOptions, total=False):
    read_preference: Any


def bounded(method: F) -> F:
    """Give a public ``Database`` method a keyword-only ``timeout_ms=None`` bounding the call
    (``driver.timeouts.under_call_bound``: the one place a call's bound is set); without it, the
    call is bounded by ``operation_timeout_ms`` as a whole (``Runtime.call_budget``, started by its
    first driver call), never each of its driver calls by a budget of its own. Defined here, in
    the public face, so the wrapper's frame is this module's: the run step's look at the bound
    (``timeouts.enter``) is then a call down, never back into a module up the stack."""

    @functools.wraps(method)
    def wrapper(*args: Any, timeout_ms: float | None = None, **kwargs: Any) -> Any:
        if timeout_ms is not None:
            with under_call_bound(timeout_ms):
                return method(*args, **kwargs)
        budget = args[0]._executor.runtime.call_budget  # operation_timeout_ms for the whole call (None: no budget)
        if budget is None or CALL_BOUND.get() is not None:  # no budget, or a nested call: its caller's bound
            return method(*args, **kwargs)
        token = CALL_BOUND.set(budget)  # its first driver call starts it (timeouts.enter); every later one shares it
        try:
            return method(*args, **kwargs)
        finally:
            CALL_BOUND.reset(token)

    signature = inspect.signature(method)
    extra = inspect.Parameter("timeout_ms", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="float | None")
    params = list(signature.parameters.values())
    at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    wrapper.__signature__ = signature.replace(parameters=[*params[:at], extra, *params[at:]])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


class Database(OperatorMixin):
    """A MongoDB data layer for the astrology app: ``Database(url | config | dict | None)``."""

    def __init__(self, config: str | DatabaseConfig | Mapping[str, Any] | None = None, *, actor: MaybeActor = None,
                 event_listeners: Sequence[Any] = (), models: Sequence[type[AstroDocument]] = (),
                 builtin_models: bool = True, **overrides: Any) -> None:
        """``event_listeners``: PyMongo listeners (``pymongo.monitoring``) of your own, registered
        on this Database's client beside the monitor's. ``models``: the app's own ``AstroDocument``
        subclasses, served beside the four built-in models (or instead of them with
        ``builtin_models=False``) with every guarantee they get (docs/service.md, "Your own
        models"); a model registered twice or a collection two models share is a ``ConfigError``."""
        registry = registry_for(models, builtin_models=builtin_models)
        self._executor = Executor(Runtime(make_config(config, overrides), registry, event_listeners))
        self._actor = access.Actor.of(actor) if actor is not None else None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def config(self) -> DatabaseConfig:
        return self._executor.runtime.config

    @property
    def executor(self) -> Executor:
        """The executor every call runs through (``astro_db.ops``): for tools and tests."""
        self._check("executor")
        return self._executor

    def connect(self) -> Database:
        """Connect (pinging with retries); returns ``self`` so ``db = Database(url).connect()`` reads."""
        self._check("connect")
        rt = self._executor.runtime
        try:
            rt.connection.connect()
        except AstroDBError:
            raise
        except Exception as exc:
            raise translate(exc, operation="connect") from exc
        rt.cache.open(rt.gateway, (rt.monitor.calls_started, rt.monitor.calls_finished))  # the cache bus (ConfigError: no change streams)
        if self.config.ensure_indexes and not rt.indexes_ensured:
            rt.indexes_ensured = True
            Database.sync_indexes(self._trusted())
            if rt.changes.enabled:
                self._executor.call(None, "ensure change record indexes",
                                    lambda: ensure_change_indexes(rt.gateway, self.config.change_records.audit_retention_days))
        elif not self.config.ensure_indexes and not rt.indexes_ensured:
            rt.indexes_ensured = True  # looked at once per Database
            self._warn_missing_unique()
        return self

    def _warn_missing_unique(self) -> None:
        """With ``ensure_indexes=False``: a WARNING for each unique index a model declares that
        the server lacks (one ``listIndexes`` per model). Without it nothing keeps the value
        unique (two users with one email can both be created); ``upsert_many`` refuses such a
        key, and every other write relies on the index."""
        ex = self._executor
        for info in ex.runtime.registry:
            try:
                listed = ex.call(None, "check indexes", functools.partial(list_model_indexes, ex.runtime.gateway, info))
            except AstroDBError as exc:  # not allowed to list, or no answer: nothing is known to be missing
                log.info("could not check the indexes of %s: %s", info.collection, exc)
                continue
            for row in listed["declared"]:
                if row.get("unique") and row["on_server"] is None and "note" not in row:
                    log.warning("%s: the unique index %s the model declares is not on the server (ensure_indexes="
                                "False): nothing keeps (%s) unique; create it with db.sync_indexes() or "
                                "`astro-db indexes sync`", info.collection, row["name"], ", ".join(k for k, _ in row["key"]))

    def disconnect(self) -> None:
        """Close the connection pool; idempotent."""
        self._check("disconnect")
        self._executor.runtime.cache.close()  # stop the cache bus's subscriber; connect() starts it again
        self._executor.runtime.connection.disconnect()

    def close(self) -> None:
        """The same as ``disconnect()``."""
        self._check("close")
        self._executor.runtime.cache.close()
        self._executor.runtime.connection.disconnect()

    def is_connected(self) -> bool:
        """Whether the server answers right now (a bounded ping, not a flag)."""
        self._check("is_connected")
        return self._executor.runtime.connection.is_connected()

    def __enter__(self) -> Database:
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self._executor.runtime.connection.connected else "not connected"
        return f"<Database {self.config.masked_url} {state}>"

    @property
    def mongo(self) -> Any:
        """The underlying PyMongo ``Database``: the raw escape hatch for admins, with none of the
        service's guarantees (no validation, no scope, no encryption, no change records, no cache
        invalidation, no breaker or retries; docs/service.md). astro_db itself never uses it: its
        driver calls all go through ``astro_db.driver.gateway``."""
        self._check("mongo")
        return self._executor.runtime.connection.database

    def collection(self, model: ModelRef) -> Any:
        """The PyMongo collection of a model: raw access, the same escape hatch as ``mongo``."""
        self._check("collection")
        return self._executor.runtime.connection.database[self._executor.model(model).collection]

    # --- create ------------------------------------------------------------------------------

    @overload
    def create(self, model: type[D], data: Mapping[str, Any], *, lean: Literal[False] = False,
               **options: Unpack[WriteOptions]) -> D: ...
    @overload
    def create(self, model: ModelRef, data: Mapping[str, Any], *, lean: Literal[True],
               **options: Unpack[WriteOptions]) -> dict[str, Any]: ...
    @overload
    def create(self, model: str | ModelInfo, data: Mapping[str, Any], *, lean: bool = False,
               **options: Unpack[WriteOptions]) -> Any: ...

    @bounded
    def create(self, model: Any, data: Mapping[str, Any], *, lean: bool = False, **options: Any) -> Any:
        """Validate ``data``, insert it, and return the model instance (the stored dict with
        ``lean=True``, which skips building an instance nobody reads)."""
        if not options:  # ``_op``'s own short way, inlined (the most frequent write names no option)
            return self._executor.create(Operation("create", model, self._actor, None, None, data, {"lean": lean}))
        return self._executor.create(self._op("create", model, data=data, options=options, allowed=WriteOptions, lean=lean))

    @bounded
    def create_many(self, model: ModelRef, items: Sequence[Mapping[str, Any]], *, lean: bool = False,
                    **options: Unpack[WriteOptions]) -> CreateManyResult:
        """Validate every item, insert the valid ones in batches (unordered), report the rest.

        Returns the created instances (stored dicts with ``lean=True``: no instances built);
        ``result.failed`` lists ``(index, error)`` for items that failed validation or were
        refused by the server (e.g. a duplicate email)."""
        return self._executor.create_many(self._op("create_many", model, data=items, options=options, allowed=WriteOptions,
                                                   lean=lean))

    @bounded
    def upsert_many(self, model: ModelRef, items: Sequence[Mapping[str, Any]], *, on: str | Sequence[str],
                    **options: Unpack[WriteOptions]) -> UpsertResult:
        """Insert or replace each item by the unique key ``on`` (the fields of a unique index the
        model declares, e.g. ``("userId", "date")``; or ``"id"``: each item's own ``id``, the
        ``_id`` index its unique key): a new key is inserted, a stored document
        whose content differs is replaced (next revision, one change record), an identical one
        is left alone (no record, no new revision). Items are validated as ``create_many``'s;
        ``result.failed`` lists ``(index, error)`` for the rest (an item whose key another item
        also gives is refused, both of them). One find and one bulk write per batch of 1,000.
        Needs ``create`` and ``update`` on the model; a ``self`` actor upserts its own documents."""
        return self._executor.upsert_many(self._op("upsert_many", model, data=items, options=options, allowed=WriteOptions,
                                                   on=on))

    # --- read --------------------------------------------------------------------------------

    @overload
    def find(self, model: type[D], query: Query = None, *, lean: Literal[False] = False,
             **options: Unpack[FindOptions]) -> list[D]: ...
    @overload
    def find(self, model: ModelRef, query: Query = None, *, lean: Literal[True],
             **options: Unpack[FindOptions]) -> list[dict[str, Any]]: ...
    @overload
    def find(self, model: str | ModelInfo, query: Query = None, *, lean: bool = False,
             **options: Unpack[FindOptions]) -> list[Any]: ...

    @bounded
    def find(self, model: Any, query: Query = None, *, lean: bool = False, **options: Any) -> list[Any]:
        """Documents matching ``query``: model instances, or stored dicts with ``lean=True``.

        ``sort``, ``limit``, ``skip``, ``projection``, ``batch_size``; ``timeout_ms`` bounds the
        call; ``stale_ok=True`` answers from the query cache, marked stale, while the server is
        unavailable (``astro_db.stale``); ``read_preference`` sends it to another replica-set
        member (``astro_db.driver.routing``; only the primary in a transaction)."""
        return self._executor.find(self._op("find", model, query, options=options, allowed=FindOptions, lean=lean))  # type: ignore[no-any-return]

    @overload
    def find_one(self, model: type[D], query: Query = None, *, lean: Literal[False] = False,
                 **options: Unpack[FindOneOptions]) -> D | None: ...
    @overload
    def find_one(self, model: ModelRef, query: Query = None, *, lean: Literal[True],
                 **options: Unpack[FindOneOptions]) -> dict[str, Any] | None: ...
    @overload
    def find_one(self, model: str | ModelInfo, query: Query = None, *, lean: bool = False,
                 **options: Unpack[FindOneOptions]) -> Any: ...

    @bounded
    def find_one(self, model: Any, query: Query = None, *, lean: bool = False, **options: Any) -> Any:
        """The first document matching ``query``, or ``None`` (options: see ``find``)."""
        if not options:  # ``_op``'s own short way, inlined (the most frequent read names no option)
            return self._executor.find_one(Operation("find_one", model, self._actor, None, query, None, {"lean": lean}))
        return self._executor.find_one(self._op("find_one", model, query, options=options, allowed=FindOneOptions, lean=lean))

    @overload
    def iter_find(self, model: type[D], query: Query = None, *, lean: Literal[False] = False,
                  **options: Unpack[IterOptions]) -> Iterator[D]: ...
    @overload
    def iter_find(self, model: ModelRef, query: Query = None, *, lean: Literal[True],
                  **options: Unpack[IterOptions]) -> Iterator[dict[str, Any]]: ...
    @overload
    def iter_find(self, model: str | ModelInfo, query: Query = None, *, lean: bool = False,
                  **options: Unpack[IterOptions]) -> Iterator[Any]: ...

    def iter_find(self, model: Any, query: Query = None, *, lean: bool = False, **options: Any) -> Iterator[Any]:
        """Documents matching ``query``, streamed batch by batch at flat memory (``batch_size``
        documents at a time): model instances, or stored dicts with ``lean=True``.

        Validation, authorization and the first batch happen now (retried as any read is, and
        bounded by ``timeout_ms``); later batches are read as the caller iterates and are never
        retried (the server has moved the cursor on), as PyMongo's retryable reads specify.
        Never through the query cache. Close the iterator (or exhaust it) to free the cursor."""
        bound = options.pop("timeout_ms", None)
        op = self._op("iter_find", model, query, options=options, allowed=IterOptions, lean=lean)
        return _bounded_call(self, functools.partial(self._executor.iter_find, op), timeout_ms=bound)  # type: ignore[call-arg]

    @overload
    def page(self, model: type[D], query: Query = None, *, limit: int, after: str | None = None,
             lean: Literal[False] = False, **options: Unpack[PageOptions]) -> Page[D]: ...
    @overload
    def page(self, model: ModelRef, query: Query = None, *, limit: int, after: str | None = None,
             lean: Literal[True], **options: Unpack[PageOptions]) -> Page[dict[str, Any]]: ...
    @overload
    def page(self, model: str | ModelInfo, query: Query = None, *, limit: int, after: str | None = None,
             lean: bool = False, **options: Unpack[PageOptions]) -> Page[Any]: ...

    @bounded
    def page(self, model: Any, query: Query = None, *, limit: int, after: str | None = None, lean: bool = False,
             **options: Any) -> Page[Any]:
        """One keyset page of the documents matching ``query`` in ``sort`` order (``_id`` breaks
        ties): ``page.items`` and ``page.next``, the opaque token of the page after it (``None``
        at the end), to pass back as ``after=``. A page deep in the order costs what the first
        does (no ``skip``); a token altered or used with another query, sort or actor is a
        ``QueryError`` (``astro_db.ops.pages``)."""
        return self._executor.page(self._op("page", model, query, options=options, allowed=PageOptions, lean=lean,
                                            limit=limit, after=after))

    @bounded
    def count(self, model: ModelRef, query: Query = None, **options: Unpack[ReadOptions]) -> int:
        """How many documents match ``query`` (options: see ``find``)."""
        return self._executor.count(self._op("count", model, query, options=options, allowed=ReadOptions))

    @bounded
    def aggregate(self, model: ModelRef, pipeline: Sequence[Mapping[str, Any]],
                  **options: Unpack[AggregateOptions]) -> list[dict[str, Any]]:
        """Run a read-only aggregation pipeline (checked at every depth); a list of dicts.
        Reports should pass ``read_preference="secondaryPreferred"`` (``routing.ANALYTICS``)."""
        return self._executor.aggregate(self._op("aggregate", model, data=pipeline, options=options, allowed=AggregateOptions))

    # --- update and delete -------------------------------------------------------------------

    @overload
    def update(self, model: type[D], query: Mapping[str, Any], data: Mapping[str, Any], *, lean: Literal[False] = False,
               expected_revision: int | None = None, returning: Literal[True] = True,
               **options: Unpack[FilterOptions]) -> D | None: ...
    @overload
    def update(self, model: ModelRef, query: Mapping[str, Any], data: Mapping[str, Any], *, lean: Literal[True],
               expected_revision: int | None = None, returning: Literal[True] = True,
               **options: Unpack[FilterOptions]) -> dict[str, Any] | None: ...
    @overload
    def update(self, model: ModelRef, query: Mapping[str, Any], data: Mapping[str, Any], *, lean: Literal[False] = False,
               expected_revision: int | None = None, returning: Literal[False],
               **options: Unpack[FilterOptions]) -> bool: ...
    @overload
    def update(self, model: str | ModelInfo, query: Mapping[str, Any], data: Mapping[str, Any], *, lean: bool = False,
               expected_revision: int | None = None, returning: bool = True, **options: Unpack[FilterOptions]) -> Any: ...

    @bounded
    def update(self, model: Any, query: Mapping[str, Any], data: Mapping[str, Any], *, lean: bool = False,
               expected_revision: int | None = None, returning: bool = True, **options: Any) -> Any:
        """Validate and apply ``data`` to the first match; the updated instance (the stored
        dict with ``lean=True``), or ``None``. With ``expected_revision`` (a revision read
        earlier: ``instance.revision``, ``_rev`` of a lean dict), only if the document is still
        at it; else ``ConflictError`` carrying ``current_revision``, nothing written. With
        ``returning=False``: ``True`` if a document was updated, ``False`` if none matched, and
        the document is not sent back unless a write hook needs it (``lean=True`` with it is a
        ``QueryError``)."""
        return self._executor.update(self._op("update", model, query, data, options=options, allowed=FilterOptions, lean=lean,
                                              expected_revision=expected_revision, returning=returning))

    @bounded
    def update_many(self, model: ModelRef, query: Mapping[str, Any], data: Mapping[str, Any], *,
                    all: bool = False, **options: Unpack[FilterOptions]) -> int:  # noqa: A002
        """Validate and apply ``data`` to every match; the number of documents modified. An empty
        query is refused unless ``all=True``, as for ``delete_many``."""
        return self._executor.update_many(self._op("update_many", model, query, data, options=options, allowed=FilterOptions,
                                                   all=all))

    @bounded
    def delete(self, model: ModelRef, query: Mapping[str, Any], *, expected_revision: int | None = None,
               **options: Unpack[FilterOptions]) -> bool:
        """Delete the first match; ``True`` if a document was deleted. With ``expected_revision``,
        only if it is still at that revision (``ConflictError`` otherwise)."""
        return self._executor.delete(self._op("delete", model, query, options=options, allowed=FilterOptions,
                                              expected_revision=expected_revision))

    @bounded
    def delete_many(self, model: ModelRef, query: Mapping[str, Any], *, all: bool = False,  # noqa: A002
                    **options: Unpack[FilterOptions]) -> int:
        """Delete every match; an empty query is refused unless ``all=True`` (an admin's call)."""
        return self._executor.delete_many(self._op("delete_many", model, query, options=options, allowed=FilterOptions, all=all))

    # --- transactions ------------------------------------------------------------------------

    def start_transaction(self, **options: Any) -> Transaction:
        """Open a transaction (``read_concern``, ``write_concern``, ``read_preference`` options)."""
        self._check("start_transaction")
        rt = self._executor.runtime
        rt.breaker.before_call()
        return Transaction(rt.connection.client, owner=rt, timeout_ms=rt.config.timeouts.operation_timeout_ms,
                           **transaction_options(self.config.topology, options))

    def commit_transaction(self, transaction: Transaction) -> None:
        """Commit; on failure the transaction is aborted and a ``TransactionError`` raised."""
        self._check("commit_transaction")
        resolve.own(self._executor.runtime, transaction).commit()

    def rollback_transaction(self, transaction: Transaction) -> None:
        """Abort: none of the transaction's writes happen."""
        self._check("rollback_transaction")
        resolve.own(self._executor.runtime, transaction).abort()

    def abort_transaction(self, transaction: Transaction) -> None:
        """The same as ``rollback_transaction``."""
        self._check("abort_transaction")
        resolve.own(self._executor.runtime, transaction).abort()

    @contextlib.contextmanager
    def transaction(self, **options: Any) -> Iterator[Transaction]:
        """``with db.transaction() as tx:`` commits on normal exit, aborts on an exception."""
        self._check("transaction")
        tx = self.start_transaction(**options)
        try:
            yield tx
        except BaseException:
            if tx.active:
                tx.abort()
            raise
        if tx.active:
            tx.commit()

    def with_transaction(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None, **kwargs: Any) -> T:
        """Run ``fn(tx, *args, **kwargs)`` in a transaction, retrying transient failures with a
        backoff, as the drivers' convenient transaction API does. The whole call, ``fn``'s own
        calls, the commit and every retry included, is bounded by ``timeout_s`` if given, else by
        the call budget (``operation_timeout_ms``: 30 s by default, 3 s in the web integrations),
        as the drivers bound it by ``timeoutMS``; with no budget (``operation_timeout_ms=None``),
        retries stop after 120 s (the drivers' bound without ``timeoutMS``)."""
        self._check("with_transaction")
        if timeout_s is None:
            budget = self._executor.runtime.call_budget
            if budget is None:
                return run_with_retry(self.start_transaction, fn, args, kwargs, timeout_s=DEFAULT_TIMEOUT_S)
            timeout_s = budget.ms / 1000.0
        with under_call_bound(timeout_s * 1000.0):
            bound = CALL_BOUND.get()  # this one, or a caller's nearer deadline
            left = bound.deadline - timeouts.time.monotonic() if bound is not None else timeout_s
            return run_with_retry(self.start_transaction, fn, args, kwargs, timeout_s=left)

    # --- units of work ----------------------------------------------------------------------

    def create_user_with_chart(self, user: Mapping[str, Any], chart: Mapping[str, Any], *,
                               transaction: Transaction | None = None) -> tuple[Any, Any]:
        """Create a user and their birth chart in one transaction; ``(user, chart)``."""
        models = self._executor.runtime.registry
        self._check("create_user_with_chart", models.users())
        return create_user_with_chart(self, user, chart, models=models, transaction=transaction)

    def delete_user_cascade(self, user_id: Any, *, transaction: Transaction | None = None) -> dict[str, int]:
        """Delete a user and every document a model declares as theirs (``meta["owner"]``) in one
        transaction; counts per model."""
        models = self._executor.runtime.registry
        self._check("delete_user_cascade", models.users())
        return delete_user_cascade(self, user_id, models=models, transaction=transaction)

    # --- personal data ----------------------------------------------------------------------

    @bounded
    def export_user(self, user_id: Any) -> dict[str, Any]:
        """Everything stored about one user, as one JSON-ready document (GDPR arts. 15 and 20):
        every registered model's documents of the user and the change records about them,
        decrypted, in stored field names, as relaxed Extended JSON (``astro_db.personal``). The
        user may export her own data (a ``self`` actor); anyone else needs ``audit`` too: an admin."""
        from . import personal

        return personal.export_user(self, self._executor, user_id)  # authorized there, for every path

    def erase_user(self, user_id: Any) -> dict[str, Any]:
        """Erase one user (GDPR art. 17), exactly once and resumable (``astro_db.personal``): the
        live documents deleted, the change records' post-images scrubbed, the user's data keys
        shredded, the erasure recorded without personal data. Needs ``delete`` on the users: an
        admin's call. Counts per model; a rerun finishes an interrupted erasure."""
        from . import personal

        return personal.erase_user(self._trusted(), self._executor, user_id, actor=self._actor)  # authorized there

    # --- security ----------------------------------------------------------------------------

    def as_actor(self, actor_id: Any, roles: Any = None, *, request_id: str | None = None) -> Database:
        """A view of this Database acting for ``actor_id`` with ``roles`` (same connection,
        cache and transactions); its calls are checked against the roles and audited as it."""
        self._check("as_actor")
        view = Database.__new__(Database)
        view._executor = self._executor
        view._actor = access.Actor.of(actor_id, roles, request_id)
        return view

    @property
    def actor(self) -> access.Actor | None:
        """Who this view acts for (``None``: the trusted app itself)."""
        return self._actor

    @bounded
    def audit_trail(self, model: ModelRef, id: Any) -> list[dict[str, Any]]:  # noqa: A002
        """A document's audit entries, oldest first: dicts with ``time``, ``actor``, ``action``
        (create / update / delete), ``model``, ``documentId`` (an ObjectId's hex string; a model's own
        id as a string, a compound one as its JSON), ``fields``, ``requestId``
        and ``revision`` (absent on entries an earlier version wrote to ``auditLog``)."""
        return self._executor.audit_trail(self._op("audit_trail", model), id)

    # --- internals ---------------------------------------------------------------------------

    def _op(self, name: str, model: Any, query: Any = None, data: Any = None, *, options: Mapping[str, Any] = {},  # noqa: B006
            allowed: type = WriteOptions, **fixed: Any) -> Operation:
        """The Operation of one call; an unknown keyword is a TypeError, as Python would say."""
        if not options:  # nearly every call names no option: nothing to check or copy
            return Operation(name, model, self._actor, None, query, data, fixed)
        unknown = set(options) - allowed.__optional_keys__ - allowed.__required_keys__  # type: ignore[attr-defined]
        if unknown:
            raise TypeError(f"{name}() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        opts = dict(options)
        transaction = opts.pop("transaction", None)
        opts.pop("timeout_ms", None)
        return Operation(name, model, self._actor, transaction, query, data, {**opts, **fixed})

    def _check(self, name: str, model: Any = None) -> None:
        """Authorize a call that has no data step of its own (lifecycle, tooling, units of work)."""
        if self._actor is not None:
            self._executor.authorize(self._actor, name, model)

    def _trusted(self) -> Database:
        """This Database acting as the app itself (for work the service does on its own behalf)."""
        if self._actor is None:
            return self
        view = Database.__new__(Database)
        view._executor = self._executor
        view._actor = None
        return view


def _call(db: Database, fn: Callable[[], T]) -> T:
    """``fn()``, as a method of ``db`` (the form ``bounded`` wraps)."""
    return fn()


#: ``fn()`` under the bound a public call gets (``bounded``: ``timeout_ms=``, else the call
#: budget): ``iter_find``'s steps up to its first batch; the iteration after it is not under that
#: bound (a stream lasts as long as its reader).
_bounded_call = bounded(_call)
