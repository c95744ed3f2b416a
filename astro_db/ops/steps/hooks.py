"""Step 8, hooks: the after-write step. What a write strategy wrote becomes one ``WriteEvent``.

Every write strategy (``ops.writes``) returns what it wrote (``events.Written``: the action,
ids, revisions and post-images); ``after_write`` is the one place that turns it into an event
and runs the write hooks, in order, synchronously, with the write's session: the query cache's
invalidation, then the change records (``ChangeRecords``: the audit trail and the journal in
one, ``astro_db.changes``), then any hook the app added. Inside a transaction their own writes
commit or abort with it, and the cache is invalidated only on commit. A ``ChangeRecordError``
(the write stands, its records are pending) is raised after the other hooks have run. With the
runtime's own two hooks only, outside a transaction, a write no cache can hear of
(``QueryCache.unseen_write``) makes no event: its records, if any, are written straight from
what was written (``ChangeRecords.record``, the one place records are built and sent).

``post_image`` is the one rule of what an update that does not return its document
(``db.update(..., returning=False)``) fetches back: the whole post-image when a hook needs it,
else only what the write step itself reads; ``stampless`` says when it needs nothing back at all
(a plain ``update`` command is sent): when nothing but a cache would hear of the write and none
holds the model. Such a write reaches ``after_write`` without ids (it does not know them); if a
cache began to hold the model meanwhile, the event names no document and every cache drops the
model's entries (``QueryCache.notice``: a write of unknown ids).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ...changes import OP_FIELD, REV_FIELD, new_op_id
from ...errors import AstroDBError, ChangeRecordError
from ...events import Change, WriteEvent, Written
from ...security.audit import current_request_id
from . import run

if TYPE_CHECKING:  # pragma: no cover
    from ..._types import MaybeActor, MaybeTransaction, MongoDB, Session
    from ...registry import ModelInfo
    from ..runtime import Runtime

__all__ = ["ChangeRecords", "STAMP", "after_write", "emit", "post_image", "stampless"]

# What an update that does not return its document reads back when no hook needs its post-image:
# its ``_id``, the revision it made and its op id (the lost-reply and own-write checks compare
# them), and ``updatedAt`` (a change record's time, when the audit trail alone is on).
STAMP: dict[str, int] = {"_id": 1, REV_FIELD: 1, OP_FIELD: 1, "updatedAt": 1}


def post_image(rt: Runtime) -> dict[str, int] | None:
    """What of an updated document the write hooks need back when the caller does not want it:
    ``None``, the whole post-image, when the journal is on (its records carry it) or when a hook
    the app added may read ``WriteEvent.documents``; else ``STAMP``, and the event carries no
    post-image. The query cache needs none (a write without post-images is judged by the fields
    it set: ``cache.store.QueryCache.apply``), nor do audit-only records (id, revision, time)."""
    if rt.changes.journal:
        return None
    on_write = rt.cache.on_write
    for hook in rt.hooks:
        if not (hook == on_write or isinstance(hook, ChangeRecords)):
            return None
    return STAMP


def stampless(rt: Runtime, info: ModelInfo, transaction: MaybeTransaction) -> bool:
    """Whether an update that does not return its document may send a plain ``update`` command,
    reading nothing back (not even ``STAMP``): outside a transaction, change records off, the
    runtime's own two hooks only, and no cache that could hear of the write holds anything of
    the model now (``QueryCache.quiet``: only looked at). These are the conditions under which
    ``after_write`` builds no event; it asks the cache again after the write
    (``QueryCache.unseen_write``), and a write this hint got wrong (a cache stored an entry of
    the model while the write was under way) is announced with no ids: every cache drops the
    model's entries."""
    if transaction is not None:
        return False
    hooks = rt.hooks
    if len(hooks) != 2:
        return False
    log = rt.changes
    cache = rt.cache
    return (not (log.audit or log.journal) and type(hooks[1]) is ChangeRecords and hooks[0] == cache.on_write
            and cache.quiet(info.name))


def after_write(rt: Runtime, info: ModelInfo, written: Written | Callable[[], Written | None], *, database: MongoDB,
                session: Session, transaction: MaybeTransaction, actor: MaybeActor | str) -> None:
    """The after-write step: announce ``written`` to every write hook (records included).

    When the hooks are the runtime's own two and the write is outside a transaction, the query
    cache is asked first whether anyone could hear of the write (``QueryCache.unseen_write``: if
    no cache holds anything of the model, that is all it needs). If so, no event is built: with
    the change records off (or already sent with the write, a create's one-command
    ``bulkWrite``) nothing is left to do (nor, for a single create, which passes the
    ``functools.partial`` that makes its ``Written``, is what it wrote made); otherwise the
    change records, the one hook left, are written from what was written
    (``ChangeRecords.record``: the same records, session and run-step call the event would
    give). In every other case the event is made and every hook runs, as always.
    ``written`` has no ids after an update sent without reading anything back (``stampless``):
    its event names no document, so the query cache drops every entry of the model."""
    hooks = rt.hooks
    if transaction is None and len(hooks) == 2:
        records = hooks[1]
        cache = rt.cache
        if type(records) is ChangeRecords and hooks[0] == cache.on_write and cache.unseen_write(info.name):
            log = rt.changes
            if not (log.audit or log.journal):
                return
            quiet: Written | None = written() if written.__class__ is partial else written  # type: ignore[assignment]
            if quiet is not None and not quiet.recorded and quiet.changes:
                records.record(info, quiet.action, quiet.changes, quiet.fields, quiet.op_id, database, session, None,
                               *_who(actor))
            return
    # a single create's ``Written`` comes as the ``partial`` that makes it (``WriteRunner.insert_one``): made only now
    made: Written | None = written() if written.__class__ is partial else written  # type: ignore[assignment]
    if made is None:
        return
    who, request_id = _who(actor)
    emit(rt, WriteEvent(
        model=info.name, collection=info.collection, action=made.action, document_ids=made.ids,
        fields=made.fields, database=database, session=session, transaction=transaction,
        actor=who, request_id=request_id,
        documents=made.documents, changes=made.changes, recorded=made.recorded, op_id=made.op_id,
    ))


def _who(actor: MaybeActor | str) -> tuple[str | None, str | None]:
    """The actor's id and request id as a write's event and its records name them."""
    if isinstance(actor, str) or actor is None:
        return actor, None
    return actor.id, actor.request_id


def emit(rt: Runtime, event: WriteEvent) -> None:
    """Run every write hook of the runtime for ``event``. A hook that raises fails the call; a
    ``ChangeRecordError`` (the write was applied) only once every other hook has heard of it."""
    failure: ChangeRecordError | None = None
    for hook in rt.hooks:
        try:
            hook(event)
        except ChangeRecordError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class ChangeRecords:
    """The write hook that writes the change records of every write, in the write's session,
    through the run step (the write's retry and time bound; ``changes.log`` for the failure
    policy). Records that went with the write itself (``event.recorded``) are not written again."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def __call__(self, event: WriteEvent) -> None:
        if event.recorded or not event.changes:
            return
        self.record(self.rt.registry.resolve(event.model), event.action, event.changes, event.fields, event.op_id,
                    event.database, event.session, event.transaction, event.actor, event.request_id)

    def record(self, info: ModelInfo, action: str, changes: tuple[Change, ...], fields: tuple[str, ...], op_id: Any,
               database: MongoDB, session: Session, transaction: MaybeTransaction, actor: str | None,
               request_id: str | None) -> None:
        """Write the records of ``changes`` (the one place they are built and sent): the hook's
        own work, and what ``after_write`` asks of it directly when it is the only hook left."""
        log = self.rt.changes
        if not (log.audit or log.journal):  # ``log.enabled``, read in place
            return
        records = log.build(
            model=info.name, collection=info.collection, action=action, changes=changes, fields=fields, actor=actor,
            request_id=request_id or current_request_id(), op=op_id if op_id is not None else new_op_id(),
            owner=info.declaration.owner, database=database,
        )
        in_transaction = transaction is not None
        insert, late = log.insertion(database, records, session=session, in_transaction=in_transaction)
        try:
            run.call(self.rt, info, f"record {action}", insert, transaction)
        except AstroDBError as exc:
            failure = log.failed(records, f"{action} on {info.name}", exc, late=late, in_transaction=in_transaction)
            if failure is exc:
                raise
            raise failure from exc

