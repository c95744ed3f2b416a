"""Write events: what the service tells its write hooks (the query cache, the change records) after a write.

Every write strategy (``ops.writes``) returns what it wrote, a ``Written``; the after-write step
(``ops.steps.hooks.after_write``) turns it into one ``WriteEvent`` and runs the hooks with it.
Hooks run synchronously, after the write succeeded, with the write's session: inside a
transaction their own writes commit or abort with it. A hook that raises fails the call (a
``ChangeRecordError`` after the other hooks have run: the write stands).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .changes.revision import REV_FIELD

if TYPE_CHECKING:  # pragma: no cover
    from ._types import MaybeTransaction, MongoDB, Session

__all__ = ["Change", "WriteEvent", "WriteHook", "Written"]


class Change(NamedTuple):
    """One document a write changed: its ``_id``, the revision the write gave it (a delete: the
    last revision plus one), when, and its post-image in stored form (None for a delete)."""

    document_id: Any
    rev: int
    time: Any
    image: dict[str, Any] | None


_change = partial(tuple.__new__, Change)  # Change(*fields) without its Python-level __new__
_REV = REV_FIELD


def changes_of(docs: Iterable[dict[str, Any]]) -> tuple[Change, ...]:
    """The change each of ``docs`` (stored form, post-image) made: its ``_id``, the revision it
    carries (0 without one), its ``updatedAt`` and itself; ``writes._created`` of each, made in
    one loop without a Python call per document (a ``create_many``'s thousands)."""
    return tuple([_change((doc["_id"], int(doc[_REV]) if doc.get(_REV) else 0, doc.get("updatedAt"), doc))
                  for doc in docs])


@dataclass(frozen=True, init=False)
class Written:
    """What one write strategy wrote: the after-write step's input.

    ``recorded`` says the change records already went with the write (a create's one-command
    ``bulkWrite``, a delete's confirmed intent), so the change-record hook has nothing to add."""

    action: str  # "create" | "update" | "delete"
    ids: tuple[Any, ...]
    fields: tuple[str, ...]
    changes: tuple[Change, ...] = ()
    documents: tuple[dict[str, Any], ...] | None = None  # stored form after a create or a single update
    recorded: bool = False
    op_id: Any = None  # the operation's id: part of its records' ids (``changes.records.record_id``)

    def __init__(self, action: str, ids: tuple[Any, ...], fields: tuple[str, ...], changes: tuple[Change, ...] = (),
                 documents: tuple[dict[str, Any], ...] | None = None, recorded: bool = False, op_id: Any = None) -> None:
        # the dataclass's own __init__, as one dict update (every write makes one; see WriteEvent)
        self.__dict__.update(action=action, ids=ids, fields=fields, changes=changes, documents=documents,
                             recorded=recorded, op_id=op_id)

    @classmethod
    def one(cls, action: str, doc: dict[str, Any], fields: tuple[str, ...], op_id: Any, recorded: bool = False) -> Written:
        """What a write of the one document ``doc`` (stored form, post-image) wrote: its change
        (its ``_id``, the revision it carries, 0 without one, its ``updatedAt``). A single create
        hands the after-write step the ``partial`` of this, called only if a hook hears of it."""
        return cls(action, (doc["_id"],), fields, changes_of((doc,)), (doc,), recorded, op_id)


@dataclass(frozen=True, init=False)
class WriteEvent:
    """One successful create, update or delete through the service."""

    model: str  # class name, e.g. "BirthChart"
    collection: str  # stored collection name, e.g. "birthCharts"
    action: str  # "create" | "update" | "delete"
    document_ids: tuple[Any, ...]  # ObjectIds of the documents written
    fields: tuple[str, ...]  # stored names of the fields set (all fields for create)
    database: MongoDB  # the PyMongo Database the write went to
    session: Session = None  # the ClientSession of the write's transaction, if any
    transaction: MaybeTransaction = None  # the astro_db Transaction, if any (for after_commit work)
    actor: str | None = None
    request_id: str | None = None
    documents: tuple[dict[str, Any], ...] | None = None  # stored form after a create or a single update
    changes: tuple[Change, ...] = ()  # per document: revision, time, post-image (the change records)
    recorded: bool = False  # the change records went with the write itself
    op_id: Any = None  # the operation's id (its records' ids are made of it)
    time: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))

    def __init__(self, model: str, collection: str, action: str, document_ids: tuple[Any, ...], fields: tuple[str, ...],
                 database: MongoDB, session: Session = None, transaction: MaybeTransaction = None, actor: str | None = None,
                 request_id: str | None = None, documents: tuple[dict[str, Any], ...] | None = None,
                 changes: tuple[Change, ...] = (), recorded: bool = False, op_id: Any = None,
                 time: _dt.datetime | None = None) -> None:
        # the dataclass's own __init__ (same fields, order and defaults; ``time``: now), as one dict
        # update: a frozen dataclass sets each field through object.__setattr__, 15 calls per write
        self.__dict__.update(
            model=model, collection=collection, action=action, document_ids=document_ids, fields=fields,
            database=database, session=session, transaction=transaction, actor=actor, request_id=request_id,
            documents=documents, changes=changes, recorded=recorded, op_id=op_id,
            time=_dt.datetime.now(_dt.timezone.utc) if time is None else time)


class WriteHook(Protocol):
    def __call__(self, event: WriteEvent) -> None: ...


HookList = list[Callable[[WriteEvent], None]]
