"""The gateway: the one module of astro_db that holds PyMongo database and collection objects
and calls the driver.

Everything else reaches the server through the handles it gives out: ``Gateway`` (one database:
``gateway[name]``, ``command``, ``list_collection_names``, the ``bulkWrite`` command, client-level ``bulk_write``,
sessions...), ``Collection`` (one collection: named operations, ``find`` ... ``watch``, index
operations) and ``Cursor`` (a cursor, iterated here). Each method is the driver call of the same
name, made from this module, so a test that wraps PyMongo's methods and notes their callers
(tests/unit/test_gateway.py) finds this module only. The handles carry no policy: the run step
(``ops.steps.run.call``) still puts every call under the breaker, the time bound, retries,
translation and metrics, by being handed a lambda that calls a handle.

``Database.mongo`` is the raw escape hatch outside the gateway (docs/service.md): the caller's
own code, with none of the service's guarantees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import mongoengine

if TYPE_CHECKING:  # pragma: no cover
    from pymongo.client_session import ClientSession
    from pymongo.database import Database
    from pymongo.mongo_client import MongoClient

    PyMongoDatabase: TypeAlias = Database[Any]
    PyMongoClient: TypeAlias = MongoClient[Any]

__all__ = ["Gateway", "Collection", "Cursor", "ChangeStream", "ping", "close", "disconnect", "database_of", "start_session",
           "start_transaction", "commit_transaction", "abort_transaction", "end_session"]

Filter = Mapping[str, Any]
T = TypeVar("T")
#: How a ``Gateway.through`` view makes each call: ``run(fn)`` calls ``fn`` once (or retries it).
Runner = Callable[[Callable[[], Any]], Any]


class Cursor:
    """A driver cursor (``find``, ``aggregate``, ``list_indexes``...), read through this module."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __iter__(self) -> Iterator[Any]:
        yield from self._cursor

    def __next__(self) -> Any:
        return next(self._cursor)

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cursor.close()

    def close(self) -> None:
        self._cursor.close()


class ChangeStream:
    """A change stream (``watch``), read through this module."""

    __slots__ = ("_stream",)

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __enter__(self) -> ChangeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stream.close()

    @property
    def alive(self) -> bool:
        return bool(self._stream.alive)

    def try_next(self) -> Any:
        """The next change, or None when none is waiting (after ``max_await_time_ms``)."""
        return self._stream.try_next()

    def close(self) -> None:
        self._stream.close()


class Collection:
    """One collection of the gateway's database: the driver's collection operations by name."""

    __slots__ = ("_coll", "database", "_run")

    def __init__(self, coll: Any, database: Gateway) -> None:
        self._coll = coll
        self.database = database  # the gateway it belongs to
        self._run = database.run

    def _do(self, fn: Callable[[], T]) -> T:
        """Make one driver call: directly, or through the runner of a ``Gateway.through`` view.
        The data calls below do the same in place: without a runner (the pipeline's handles,
        whose calls the run step makes) the driver method is called from the method itself, with
        no closure and no ``_do`` frame; with one, the runner gets the call as a closure."""
        return fn() if self._run is None else self._run(fn)

    @property
    def name(self) -> str:
        return str(self._coll.name)

    @property
    def read_preference(self) -> Any:
        """What this collection reads with (``driver.routing`` remembers it per handle)."""
        return self._coll.read_preference

    def with_options(self, **options: Any) -> Collection:
        """The same collection with other options (read preference, codec, write concern)."""
        return Collection(self._coll.with_options(**options), self.database)

    # --- reads ----------------------------------------------------------------------------------

    def find(self, filter: Filter | None = None, *args: Any, **kwargs: Any) -> Cursor:  # noqa: A002
        if self._run is None:
            return Cursor(self._coll.find(filter, *args, **kwargs))
        return Cursor(self._run(lambda: self._coll.find(filter, *args, **kwargs)))

    def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:  # noqa: A002
        if self._run is None:
            return self._coll.find_one(filter, *args, **kwargs)
        return self._run(lambda: self._coll.find_one(filter, *args, **kwargs))

    def count_documents(self, filter: Filter, **kwargs: Any) -> int:  # noqa: A002
        if self._run is None:
            return int(self._coll.count_documents(filter, **kwargs))
        return int(self._run(lambda: self._coll.count_documents(filter, **kwargs)))

    def estimated_document_count(self, **kwargs: Any) -> int:
        if self._run is None:
            return int(self._coll.estimated_document_count(**kwargs))
        return int(self._run(lambda: self._coll.estimated_document_count(**kwargs)))

    def distinct(self, key: str, filter: Filter | None = None, **kwargs: Any) -> list[Any]:  # noqa: A002
        if self._run is None:
            return list(self._coll.distinct(key, filter, **kwargs))
        return list(self._run(lambda: self._coll.distinct(key, filter, **kwargs)))

    def aggregate(self, pipeline: Sequence[Mapping[str, Any]], **kwargs: Any) -> Cursor:
        if self._run is None:
            return Cursor(self._coll.aggregate(pipeline, **kwargs))
        return Cursor(self._run(lambda: self._coll.aggregate(pipeline, **kwargs)))

    def watch(self, pipeline: Sequence[Mapping[str, Any]] | None = None, **kwargs: Any) -> ChangeStream:
        if self._run is None:
            return ChangeStream(self._coll.watch(pipeline, **kwargs))
        return ChangeStream(self._run(lambda: self._coll.watch(pipeline, **kwargs)))

    # --- writes ---------------------------------------------------------------------------------

    def insert_one(self, document: Any, **kwargs: Any) -> Any:
        if self._run is None:
            return self._coll.insert_one(document, **kwargs)
        return self._run(lambda: self._coll.insert_one(document, **kwargs))

    def insert_many(self, documents: Any, **kwargs: Any) -> Any:
        if self._run is None:
            return self._coll.insert_many(documents, **kwargs)
        return self._run(lambda: self._coll.insert_many(documents, **kwargs))

    def update_one(self, filter: Filter, update: Any, **kwargs: Any) -> Any:  # noqa: A002
        if self._run is None:
            return self._coll.update_one(filter, update, **kwargs)
        return self._run(lambda: self._coll.update_one(filter, update, **kwargs))

    def update_many(self, filter: Filter, update: Any, **kwargs: Any) -> Any:  # noqa: A002
        if self._run is None:
            return self._coll.update_many(filter, update, **kwargs)
        return self._run(lambda: self._coll.update_many(filter, update, **kwargs))

    def replace_one(self, filter: Filter, replacement: Any, **kwargs: Any) -> Any:  # noqa: A002
        if self._run is None:
            return self._coll.replace_one(filter, replacement, **kwargs)
        return self._run(lambda: self._coll.replace_one(filter, replacement, **kwargs))

    def delete_one(self, filter: Filter, **kwargs: Any) -> Any:  # noqa: A002
        if self._run is None:
            return self._coll.delete_one(filter, **kwargs)
        return self._run(lambda: self._coll.delete_one(filter, **kwargs))

    def delete_many(self, filter: Filter, **kwargs: Any) -> Any:  # noqa: A002
        if self._run is None:
            return self._coll.delete_many(filter, **kwargs)
        return self._run(lambda: self._coll.delete_many(filter, **kwargs))

    def find_one_and_update(self, filter: Filter, update: Any, **kwargs: Any) -> Any:  # noqa: A002
        if self._run is None:
            return self._coll.find_one_and_update(filter, update, **kwargs)
        return self._run(lambda: self._coll.find_one_and_update(filter, update, **kwargs))

    def find_one_and_delete(self, filter: Filter, **kwargs: Any) -> Any:  # noqa: A002
        if self._run is None:
            return self._coll.find_one_and_delete(filter, **kwargs)
        return self._run(lambda: self._coll.find_one_and_delete(filter, **kwargs))

    def bulk_write(self, requests: Sequence[Any], **kwargs: Any) -> Any:
        if self._run is None:
            return self._coll.bulk_write(requests, **kwargs)
        return self._run(lambda: self._coll.bulk_write(requests, **kwargs))

    # --- indexes and options --------------------------------------------------------------------

    def create_index(self, keys: Any, **kwargs: Any) -> str:
        return str(self._do(lambda: self._coll.create_index(keys, **kwargs)))

    def create_indexes(self, indexes: Sequence[Any], **kwargs: Any) -> list[str]:
        return list(self._do(lambda: self._coll.create_indexes(indexes, **kwargs)))

    def drop_index(self, index: Any, **kwargs: Any) -> None:
        self._do(lambda: self._coll.drop_index(index, **kwargs))

    def list_indexes(self, **kwargs: Any) -> list[Any]:
        return list(self._do(lambda: self._coll.list_indexes(**kwargs)))

    def options(self, **kwargs: Any) -> dict[str, Any]:
        return dict(self._do(lambda: self._coll.options(**kwargs)))


class Gateway:
    """One database of one client: the collections (``gateway[name]``, built once each) and the
    database- and client-level calls. ``through(run)`` is a view of it whose every call is made
    by ``run`` (a tool's ``Executor.call``: breaker, time bound, retries, translation, metrics)."""

    __slots__ = ("_database", "_admin", "collections", "run")

    def __init__(self, database: PyMongoDatabase, run: Runner | None = None) -> None:
        self._database = database
        self._admin: PyMongoDatabase | None = None  # the client's admin database, made on first use (``bulk_write_command``)
        #: the collection handles built so far, by name (a test may put a proxy in place of one)
        self.collections: dict[str, Collection] = {}
        self.run = run  # None: calls are made directly (the pipeline's steps wrap them in the run step)

    def through(self, run: Runner) -> Gateway:
        """This database with every call made by ``run(fn)`` (cursors: the call that opens them)."""
        return Gateway(self._database, run)

    def _do(self, fn: Callable[[], T]) -> T:
        return fn() if self.run is None else self.run(fn)

    @property
    def name(self) -> str:
        return str(self._database.name)

    @property
    def codec_options(self) -> Any:
        """How this database encodes and decodes documents (the client's options)."""
        return self._database.codec_options

    def __getitem__(self, name: str) -> Collection:
        coll = self.collections.get(name)
        if coll is None:
            coll = self.collections[name] = Collection(self._database[name], self)
        return coll

    def get_collection(self, name: str, **options: Any) -> Collection:
        """A collection with options of its own (e.g. ``codec_options=RAW`` for raw BSON reads)."""
        return Collection(self._database.get_collection(name, **options), self) if options else self[name]

    def command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        return self._do(lambda: self._database.command(command, *args, **kwargs))

    def admin_command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        """A command on the ``admin`` database (``buildInfo``, ``ping``...)."""
        return self._do(lambda: self._database.client.admin.command(command, *args, **kwargs))

    def list_collection_names(self, **kwargs: Any) -> list[str]:
        return self._do(lambda: list(self._database.list_collection_names(**kwargs)))

    def list_collections(self, **kwargs: Any) -> list[Any]:
        return self._do(lambda: list(self._database.list_collections(**kwargs)))

    def drop_collection(self, name: str, **kwargs: Any) -> None:
        self._do(lambda: self._database.drop_collection(name, **kwargs))

    def watch(self, pipeline: Sequence[Mapping[str, Any]] | None = None, **kwargs: Any) -> ChangeStream:
        return ChangeStream(self._do(lambda: self._database.watch(pipeline, **kwargs)))

    # --- the client ------------------------------------------------------------------------------

    def bulk_write_command(self, command: MutableMapping[str, Any], session: ClientSession | None = None) -> Any:
        """MongoDB 8.0's ``bulkWrite`` command as it is (on ``admin``; ``ops.bulk`` builds it and
        reads its reply): encoded in C in one message, where ``client_bulk_write`` builds it in
        Python op by op. Its reply as the server gave it (a command error raises)."""
        admin = self._admin
        if admin is None:  # ``client.admin`` makes a new Database object each time: made once
            admin = self._admin = self._database.client.admin
        if self.run is None:  # the pipeline's gateway: the driver called from here, no closure
            return admin.command(command, session=session)
        return self.run(lambda: admin.command(command, session=session))

    @property
    def write_concern(self) -> Any:
        """The write concern this database's writes are sent with (the client's)."""
        return self._database.write_concern

    def client_bulk_write(self, models: Sequence[Any], **kwargs: Any) -> Any:
        """MongoDB 8.0's client-level ``bulkWrite`` (several collections in one command)."""
        if self.run is None:  # the pipeline's gateway: the driver called from here, no closure
            return self._database.client.bulk_write(models, **kwargs)
        return self.run(lambda: self._database.client.bulk_write(models, **kwargs))

    @property
    def topology_description(self) -> Any:
        return self._database.client.topology_description

    def sibling(self, name: str) -> Gateway:
        """Another database of the same client (verify's scratch databases), made the same way."""
        return Gateway(self._database.client[name], self.run)

    def drop_database(self, name: str) -> None:
        self._do(lambda: self._database.client.drop_database(name))


# --- the client's life and sessions (driver.connection, driver.transactions) ----------------------


def database_of(client: PyMongoClient, name: str) -> PyMongoDatabase:
    """The client's PyMongo database ``name`` (held by the connection for ``Database.mongo``)."""
    return client[name]


def ping(client: PyMongoClient) -> None:
    client.admin.command("ping")


def ping_any(client: PyMongoClient) -> None:
    """A ping any data-bearing server may answer (``primaryPreferred``): waits for one to be found."""
    from pymongo.read_preferences import ReadPreference

    client.admin.command("ping", read_preference=ReadPreference.PRIMARY_PREFERRED)


def close(client: PyMongoClient) -> None:
    client.close()


def disconnect(alias: str, client: PyMongoClient) -> None:
    """Close the client MongoEngine registered under ``alias`` (and forget the alias)."""
    try:
        mongoengine.disconnect(alias=alias)
    except Exception:  # pragma: no cover - mongoengine already forgot it
        client.close()


def start_session(client: PyMongoClient, **kwargs: Any) -> ClientSession:
    return client.start_session(**kwargs)


def start_transaction(session: ClientSession, **kwargs: Any) -> None:
    session.start_transaction(**kwargs)


def commit_transaction(session: ClientSession) -> None:
    session.commit_transaction()


def abort_transaction(session: ClientSession) -> None:
    session.abort_transaction()


def end_session(session: ClientSession) -> None:
    session.end_session()
