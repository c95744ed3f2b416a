"""Key rotation and the upgrade of old envelopes (``astro-db rotate-key``).

Run after making a new key primary (``encryption_key``) and moving the old one to
``encryption_keys`` (or after changing ``kms_master_key``). Two things happen:

- the **data keys** in the key vault are rewrapped under the current master key
  (``KeyVault.rewrap``: libmongocrypt's ``rewrap_many_data_key``); no document is rewritten for
  a value already sealed with field level encryption;
- every **stored value a write would not produce now** is opened and sealed again: envelopes
  (``enc:v2``/``enc:e2`` and the older ``enc:v1``/``enc:d1``) become field level encryption
  ciphertext bound to their document, plaintext from before encryption is sealed, and a
  queryable field's blind index (``security.blind``) missing or under an older key is written in
  the same compare-and-set (so data from before blind indexes is found by equality after one
  run). Each document is rewritten with a compare-and-set on the old value, so a concurrent
  write is never overwritten, and a rerun skips what is done (resumable: a run killed half way
  is finished by running it again).

A document holding a value that does not open (its key is not configured, or it was tampered
with or moved) is left untouched and logged; the others are rotated.
Every rewritten document gets an audit entry (action ``update``, actor ``astro-db:rotate-key``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from ..changes import advance, new_op_id, revision_of
from ..errors import ConfigError, EncryptionError
from ..events import Change, Written
from ..query.order import FROM_START, ids_after

if TYPE_CHECKING:  # pragma: no cover
    from ..database import Database
    from ..driver.gateway import Collection, Gateway
    from ..registry import ModelInfo, ModelRegistry
    from .crypto import FieldCrypto

Run = Callable[[Callable[[], Any]], Any]
"""The run step for one of rotation's driver calls (breaker, time bound, retries, metrics)."""
Announce = Callable[["ModelInfo", Written], None]
"""The after-write step for a document rotation rewrote (its change records, cache invalidation)."""

__all__ = ["rotate_keys", "rotate", "ROTATION_ACTOR", "DATA_KEYS"]

ROTATION_ACTOR = "astro-db:rotate-key"
DATA_KEYS = "dataKeys"  # the report's entry: data keys rewrapped (or to rewrap)
log = logging.getLogger(__name__)


def rotate_keys(db: Database, *, dry_run: bool = False, batch_size: int = 500) -> dict[str, int]:
    """``db.rotate_keys()``: authorized as the Database's actor (an admin's call)."""
    return db.rotate_keys(dry_run=dry_run, batch_size=batch_size)


def rotate(crypto: FieldCrypto, gateway: Gateway, models: ModelRegistry, run: Run, announce: Announce, *,
           dry_run: bool = False, batch_size: int = 500) -> dict[str, int]:
    """Re-encrypt stale values; ``{model: documents rewritten (or to rewrite, dry_run)}``.

    Narrow collaborators, composed by ``Database.rotate_keys``: the field encryption, the gateway,
    the registry, the run step (``run``: every driver call of rotation passes it) and the
    after-write step (``announce``); never the Database, its executor or its runtime."""
    if not crypto.enabled:
        raise ConfigError("rotate-key needs encryption_key (the new key) and encryption_keys (the old ones)", key="encryption_key")
    report: dict[str, int] = {}
    for info in models:
        fields = crypto.fields.get(info.name) or ()
        if not fields:
            continue
        coll = gateway[info.collection]
        projection = {p.split(".")[0]: 1 for f in fields for p in (f.path, f.blind) if p}  # top-level: servers differ on dotted projections
        owner = crypto.owners.get(info.name)
        if owner and owner != "_id":
            projection[owner.split(".")[0]] = 1  # values are sealed under their owner's data key (top-level, as above)
        count = 0
        for doc in _in_batches(run, coll, projection, batch_size):
            rebind = crypto.rebind_stale(info, doc)  # sealed values an earlier release bound to this _id ambiguously
            stale = [f for f in fields if rebind or any(crypto.needs_rotation(v, f) for v in crypto.leaves(doc, f.path))
                     or crypto.blind_stale(info, doc, f)]
            if not stale:
                continue
            if not dry_run:
                try:
                    if not _rewrite(crypto, run, announce, info, coll, doc, stale):
                        continue  # written meanwhile (by a writer using the primary key): nothing to do
                except EncryptionError as exc:
                    log.warning("rotate-key: %s _id=%s left as it is: %s", info.name, doc.get("_id"), exc)
                    continue
            count += 1
        report[info.name] = count
        log.info("rotate-key: %s: %d document(s) %s", info.name, count, "to re-encrypt" if dry_run else "re-encrypted")
    vault = crypto.vault
    if vault is not None:  # the data keys: rewrapped under the current master key, no document rewritten
        report[DATA_KEYS] = vault.rewrap(dry_run=dry_run)  # its own calls pass the run step (security.vault)
        log.info("rotate-key: %d data key(s) %s", report[DATA_KEYS], "to rewrap" if dry_run else "rewrapped")
    return report


def _rewrite(crypto: FieldCrypto, run: Run, announce: Announce, info: ModelInfo, coll: Collection,
             doc: dict[str, Any], stale: list[Any]) -> bool:
    """Re-encrypt one document's stale fields if they still hold what was read; whether it did."""
    top = sorted({p.split(".")[0] if "." in p and _through_list(doc, p) else p for f in stale for p in (f.path, f.blind) if p})
    fresh = crypto.reseal(info, doc)
    cas = {"_id": doc["_id"], **{path: _get(doc, path) for path in top}}
    op_id = new_op_id()
    values = {path: _get(fresh, path) for path in top}
    changes: dict[str, Any] = {"$set": {p: v for p, v in values.items() if v is not None}}
    if any(v is None for v in values.values()):  # a blind index with no value beside it is absent, not null
        changes["$unset"] = {p: "" for p, v in values.items() if v is None}
    update = advance(changes, op_id)
    after = run(lambda: coll.find_one_and_update(cas, update, return_document=ReturnDocument.AFTER))
    if after is not None:
        announce(info, Written("update", (doc["_id"],), tuple(top),
                               (Change(after["_id"], revision_of(after), after.get("updatedAt"), after),),
                               op_id=op_id))
    return after is not None


def _through_list(doc: Any, path: str) -> bool:
    value = doc
    for part in path.split(".")[:-1]:
        value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list):
            return True
    return False


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _in_batches(run: Run, coll: Collection, projection: dict[str, int], batch_size: int) -> Iterator[Any]:
    """Every document of ``coll`` with only ``projection``'s fields, ``batch_size`` at a time in
    ``_id`` order: each batch one read through the run step (retried as any read), starting after
    the last ``_id`` of the one before, so memory stays flat however large the collection."""
    after: Any = FROM_START
    while True:
        filt = ids_after(after)
        batch: list[Any] = run(partial(_read_batch, coll, filt, projection, batch_size))
        yield from batch
        if len(batch) < batch_size:
            return
        after = batch[-1]["_id"]


def _read_batch(coll: Collection, filt: dict[str, Any], projection: dict[str, int], batch_size: int) -> list[Any]:
    return list(coll.find(filt, projection, sort=[("_id", 1)], limit=batch_size))
