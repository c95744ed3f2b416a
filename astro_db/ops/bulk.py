"""Writes and their change records in one command: MongoDB 8.0's client-level ``bulkWrite``.

Deletes (``delete_intended``): the intents of their change records, then the compare-and-set
deletes themselves, in one ordered command (the intents first, so a delete the server applied
always has its intent; ``changes.log`` confirms or settles them).

Creates (``insert_recorded``):

Where the server speaks it (wire version 25 and up: MongoDB 8.0, nx-27017), a create sends each
new document followed by its change record in one ordered ``bulkWrite`` command, across the two
collections, instead of two commands one after the other. Ordered is what keeps the records
exact: the server stops at the first refused operation, so a document it refused never gets a
record. The rest of the batch is then sent again from the operation after the refused one (one
more round trip per refused document; the document's record is skipped with it), so a refused
document does not stop the others, as in an unordered ``insert_many``.

A record the server refuses as a duplicate key is already there (a retry met it): success. A
record refused for any other reason leaves its document written without a record, which the
caller reports under the change log's failure policy (``changes.log``). A command that fails as a
whole (network, timeout, write concern) raises the driver's error for the run step to retry or
translate; the caller's retry skips what its first attempt already wrote.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from pymongo import DeleteOne, InsertOne
from pymongo import errors as pm

from ..changes import CHANGES_COLLECTION

if TYPE_CHECKING:  # pragma: no cover
    from .._types import Session

__all__ = ["WIRE_VERSION", "CLEAN", "Outcome", "supported", "insert_recorded", "delete_intended"]

WIRE_VERSION = 25  # MongoDB 8.0: the first to have the client-level bulkWrite command
DUPLICATE_KEY = 11000
COMMAND_NOT_FOUND = 59


@dataclass
class Outcome:
    """What the server refused: ``refused`` maps a document's position to the server's write
    error (the document was not written, nor its record); ``unrecorded`` lists the positions of
    documents that were written but whose record was refused."""

    refused: dict[int, dict[str, Any]] = field(default_factory=dict)
    unrecorded: list[int] = field(default_factory=list)


class _Clean(Outcome):
    """``CLEAN``: an ``Outcome`` that cannot change (a read-only mapping and a tuple; its
    attributes cannot be set), since every command the server takes whole returns this one."""

    def __init__(self) -> None:
        object.__setattr__(self, "refused", MappingProxyType({}))
        object.__setattr__(self, "unrecorded", ())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"bulk.CLEAN is shared and cannot change ({name})")


CLEAN: Outcome = _Clean()  # nothing refused: what a command the server took whole returns


def supported(client: Any) -> bool | None:
    """Whether every server the client knows speaks the client-level ``bulkWrite`` command;
    None while it knows none (e.g. just after a network error marked them unknown)."""
    servers = [s for s in client.topology_description.server_descriptions().values() if s.is_server_type_known]
    if not servers:
        return None
    return all((s.max_wire_version or 0) >= WIRE_VERSION for s in servers)


def not_supported(exc: BaseException) -> bool:
    """Whether ``exc`` says the server has no ``bulkWrite`` command (then nothing was written)."""
    return isinstance(exc, pm.OperationFailure) and exc.code == COMMAND_NOT_FOUND


def insert_recorded(client: Any, database: str, collection: str, sons: Sequence[dict[str, Any]],
                    records: Sequence[dict[str, Any]], *, session: Session = None, written: Collection[int] = (),
                    recorded: Collection[str] = ()) -> Outcome:
    """Insert ``sons[i]`` and then ``records[i]`` for every ``i``, ordered, in as few commands as
    the refusals allow (see the module docstring). ``written`` (positions) and ``recorded``
    (record ids) are left out: what an earlier attempt of the same call already wrote.

    The command is built here and sent as it is (``Gateway.bulk_write_command``: one document,
    encoded in C), not through PyMongo's ``MongoClient.bulk_write``, which builds it in Python op
    by op (``ops`` are each a few bytes beside their documents; ``sizes.large`` sends a large
    create as two commands anyway): what that costs a small create's client CPU is in
    docs/performance.md. What the driver's method would add is added here: the client's write
    concern (outside a transaction), and its errors: a write concern error raises
    ``WriteConcernError``. Not its retry of a retryable error: the run step's policy retries the
    call, and ``written`` and ``recorded`` leave out what the first attempt wrote."""
    ns_info = _namespaces(database, collection)
    ops: list[dict[str, Any]] = []
    places: list[tuple[int, bool]] = []  # for each op: (position, is it the record?)
    for position, (son, record) in enumerate(zip(sons, records, strict=True)):
        if position not in written:
            ops.append({"insert": 0, "document": son})
            places.append((position, False))
        if record["_id"] not in recorded:
            ops.append({"insert": 1, "document": record})
            places.append((position, True))
    concern = _concern(client, session)
    outcome = CLEAN  # an Outcome of its own once the server refuses something
    start = 0
    while start < len(ops):
        error = _first_error(client.bulk_write_command(_command(ops[start:] if start else ops, ns_info, concern),
                                                       session=session))
        if error is None:
            break
        if outcome is CLEAN:
            outcome = Outcome()
        at = start + int(error["idx"])
        position, is_record = places[at]
        start = at + 1
        if is_record:
            if error.get("code") != DUPLICATE_KEY:
                outcome.unrecorded.append(position)
            continue
        outcome.refused[position] = error
        if start < len(places) and places[start] == (position, True):
            start += 1  # the refused document's record is not written
    return outcome


def _namespaces(database: str, collection: str) -> list[dict[str, str]]:
    """A command's ``nsInfo``: the model's collection (index 0), then the change collection (1)."""
    return [{"ns": f"{database}.{collection}"}, {"ns": f"{database}.{CHANGES_COLLECTION}"}]


def _write_failure(error: Mapping[str, Any]) -> pm.OperationFailure:
    """A delete command's write error (an intent refused) as the driver's error."""
    return pm.OperationFailure(error.get("errmsg", "bulkWrite failed"), error.get("code"), dict(error))


def _concern(client: Any, session: Session) -> dict[str, Any] | None:
    """The write concern a command sent whole carries: the client's, unless it is the server's
    default or the command runs in a transaction (whose commit carries it)."""
    concern = client.write_concern
    if concern.is_server_default or (session is not None and session.in_transaction):
        return None
    return cast("dict[str, Any]", concern.document)


def _command(ops: list[dict[str, Any]], ns_info: list[dict[str, str]], concern: dict[str, Any] | None) -> dict[str, Any]:
    """An ordered ``bulkWrite`` command of ``ops`` that answers with its errors only."""
    command = {"bulkWrite": 1, "ops": ops, "nsInfo": ns_info, "ordered": True, "errorsOnly": True}
    if concern is not None:
        command["writeConcern"] = concern
    return command


def _first_error(reply: Mapping[str, Any]) -> dict[str, Any] | None:
    """The write error of an ordered, errors-only ``bulkWrite`` reply (it stops at the first, so
    there is at most one, in its cursor's first batch), or None; a write concern error raises
    ``WriteConcernError``, as the driver's own method does."""
    concern_error = reply.get("writeConcernError")
    if concern_error:
        raise pm.WriteConcernError(concern_error.get("errmsg", "write concern error"), concern_error.get("code"),
                                   dict(reply))
    if not reply.get("nErrors"):
        return None
    for entry in reply["cursor"]["firstBatch"]:
        if not entry.get("ok"):
            return dict(entry)
    raise pm.OperationFailure(f"bulkWrite reported {reply.get('nErrors')} error(s) its reply does not list",
                              details=dict(reply))


def delete_intended(client: Any, database: str, collection: str, intents: Sequence[dict[str, Any]],
                    filters: Sequence[dict[str, Any]], *, session: Session = None, intended: Collection[str] = ()) -> list[bool]:
    """Insert the ``intents`` (but those whose ids are in ``intended``: an earlier attempt wrote
    them) into the change collection, then delete by each of ``filters``, ordered, in one
    command; for each filter, whether it deleted a document. A write error (an intent refused:
    then nothing after it ran) raises the driver's error.

    One filter (a ``delete``: the common case) sends the command whole, as ``insert_recorded``
    does, errors only: the reply's ``nDeleted`` is its one delete's count. Several (a chunk of
    ``delete_many``) go through ``MongoClient.bulk_write``, whose results give each delete's
    count: the server lists them in a cursor, whose batches past the first a ``getMore`` in the
    same session would have to read, which the driver's method does."""
    if len(filters) == 1:
        ns_info = _namespaces(database, collection)
        whole = [{"insert": 1, "document": intent} for intent in intents if intent["_id"] not in intended]
        whole.append({"delete": 0, "filter": filters[0], "multi": False})
        reply = client.bulk_write_command(_command(whole, ns_info, _concern(client, session)), session=session)
        refused = _first_error(reply)
        if refused is not None:
            raise _write_failure(refused)
        return [bool(reply.get("nDeleted"))]
    ops: list[Any] = [InsertOne(intent, namespace=f"{database}.{CHANGES_COLLECTION}")
                      for intent in intents if intent["_id"] not in intended]
    first = len(ops)
    ops.extend(DeleteOne(filt, namespace=f"{database}.{collection}") for filt in filters)
    try:
        result = client.client_bulk_write(ops, ordered=True, session=session, verbose_results=True)
    except pm.ClientBulkWriteException as exc:
        if exc.error is not None and isinstance(exc.error, BaseException):
            raise exc.error from exc
        raise _write_failure(cast("dict[str, Any]", exc.write_errors[0]) if exc.write_errors else {}) from exc
    deleted = result.delete_results
    return [bool(deleted[first + i].deleted_count) if first + i in deleted else False for i in range(len(filters))]
