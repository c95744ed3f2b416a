"""``db.update(..., returning=False)``: whether a document was updated, without its post-image.

Must hold: True when a document was updated, False when none matched; the guarantees of an
update unchanged (expected revision, guards, validation, the change records, a lost reply read
back); the write reads back only ``hooks.STAMP`` unless a hook needs the post-image (the journal,
an app's hook: they still get all of it); the query cache judges a write without post-images by
the fields it set. Spied at the gateway's collection (both backends); what goes on the wire is
checked with a command listener in tests/live/test_update_returning_live.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from spies import spy_updates

from astro_db import Database
from astro_db.errors import ConflictError, QueryError, ValidationError
from astro_db.ops.steps.hooks import STAMP

from .conftest import insight_data

spy = spy_updates


@pytest.fixture(params=["hooks off", "audit only", "default"])
def records(request):
    return request.param


@pytest.fixture
def rdb(db, records):
    """A Database with the change records as ``records`` says, on each backend in turn."""
    url = db.config.url  # the service tier's backend (embedded, then live)
    if url.startswith("mongomock://"):
        url = f"mongomock://localhost/r{uuid.uuid4().hex[:8]}"
    options = {"hooks off": {"audit": False, "journal": False}, "audit only": {"journal": False}, "default": {}}[records]
    database = Database(url, server_selection_timeout_ms=5000, allow_plaintext_sensitive=True, **options)
    database.connect()
    database.executor.runtime.retry.sleep = lambda s: None  # no real waiting before a retry
    yield database
    database.disconnect()


def _user(db: Database, name: str = "Ann") -> Any:
    return db.create("User", {"email": f"u{uuid.uuid4().hex[:8]}@example.com", "name": name})


def _trail(db: Database, doc_id: Any) -> list[tuple[str, int]]:
    return [(e["action"], e["revision"]) for e in db.audit_trail("User", doc_id)]


def test_true_when_a_document_was_updated_false_when_none_matched(rdb):
    user = _user(rdb)
    assert rdb.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True
    stored = rdb.find_one("User", {"id": user.id})
    assert stored.name == "Bea" and stored.revision == 1
    assert rdb.update("User", {"email": "nobody@example.com"}, {"name": "Bea"}, returning=False) is False
    assert rdb.update("User", {"id": user.id}, {"name": "Cy"}, returning=True).name == "Cy"  # the default form


def test_only_the_stamp_is_read_back_unless_the_journal_needs_the_post_image(rdb, records):
    """With the hooks off and no cache holding the model, nothing is read back at all: an
    ``update`` command (the other tests of that path are in test_update_command.py)."""
    user = _user(rdb)
    watched = spy(rdb, "User")
    rdb.update("User", {"id": user.id}, {"name": "Bea"}, returning=False)
    rdb.update("User", {"id": user.id}, {"name": "Cy"})
    first = {"default": ("findAndModify", None), "audit only": ("findAndModify", STAMP), "hooks off": "update"}
    assert watched.sent == [first[records], ("findAndModify", None)]  # returning=True reads it all, as before
    if records != "hooks off":
        assert _trail(rdb, user.id) == [("create", 0), ("update", 1), ("update", 2)]


def test_an_app_hook_gets_the_post_image(rdb):
    user = _user(rdb)
    seen: list[Any] = []
    rdb.executor.runtime.hooks.append(lambda event: seen.append(event.documents))
    watched = spy(rdb, "User")
    assert rdb.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True
    assert watched.projections == [None]
    [(image,)] = seen
    assert image["_id"] == user.id and image["name"] == "Bea" and image["email"] == user.email


def test_the_hooks_are_told_no_post_image_when_none_was_read(rdb, records, monkeypatch):
    """The cache's hook, and the records' one with the revision and time of the write (an
    app's hook would make it read the post-image: the event the after-write step builds is
    watched instead)."""
    if records == "default":
        pytest.skip("the journal reads the post-image")
    from astro_db.ops.steps import hooks

    user = _user(rdb)
    events: list[Any] = []
    real_emit = hooks.emit
    monkeypatch.setattr(hooks, "emit", lambda rt, event: (events.append(event), real_emit(rt, event)))
    rev = 1
    # no cache holds anything of User: no event is built (unless a cache of the process holds some),
    # and the records, if on, are written straight from what was written
    caches = [ref() for ref in rdb.executor.runtime.cache.peers._alive]
    held = any(c is not None and "User" in c._by_model for c in caches)
    assert rdb.update("User", {"id": user.id}, {"name": "Bo"}, returning=False) is True
    assert len(events) == (1 if held else 0)
    if records == "audit only":
        record = rdb.mongo["astroChanges"].find_one({"documentId": user.id, "rev": 1})
        assert (record["action"], record["fields"], record["audit"]) == ("update", ["name"], True)
        assert "doc" not in record and record["time"] is not None
    events.clear()
    rdb.find_one("User", {"id": user.id}, cache=True)  # an entry of the model: the write is judged with its event
    rev = 2
    rdb.update("User", {"id": user.id}, {"name": "Bea"}, returning=False)
    [event] = events
    assert event.documents is None and event.document_ids == (user.id,) and event.fields == ("name",)
    [change] = event.changes
    assert change.document_id == user.id and change.rev == rev and change.image is None and change.time is not None
    assert rdb.find_one("User", {"id": user.id}, cache=True).name == "Bea"


def test_an_expected_revision_conflict_still_raises_and_writes_nothing(rdb):
    user = _user(rdb)
    assert rdb.update("User", {"id": user.id}, {"name": "Bea"}, expected_revision=0, returning=False) is True
    with pytest.raises(ConflictError) as caught:
        rdb.update("User", {"id": user.id}, {"name": "Cy"}, expected_revision=0, returning=False)
    assert caught.value.current_revision == 1
    assert rdb.find_one("User", {"id": user.id}).name == "Bea"
    assert rdb.update("User", {"email": "nobody@example.com"}, {"name": "Cy"}, expected_revision=0, returning=False) is False


def test_a_lost_reply_after_the_write_landed_returns_true_and_records_it_once(rdb, records):
    user = _user(rdb)
    watched = spy(rdb, "User", lose=1)
    assert rdb.update("User", {"id": user.id}, {"name": "Bea"}, returning=False) is True
    assert len(watched.sent) == 2  # a $set is idempotent: the run step retried it (as returning=True does)
    stored = rdb.find_one("User", {"id": user.id})
    assert stored.name == "Bea" and stored.revision == 2
    if records != "hooks off":  # one record, of the revision the call's write left
        assert _trail(rdb, user.id) == [("create", 0), ("update", 2)]


def test_a_lost_inc_reply_is_read_back_by_its_op_id_and_recorded_once(rdb, records):
    user = _user(rdb)
    day = rdb.create("PlanetaryInsight", insight_data(user.id))
    watched = spy(rdb, "PlanetaryInsight", lose=1)
    assert rdb.update("PlanetaryInsight", {"id": day.id}, {"$inc": {"energyLevel": 5}}, returning=False) is True
    assert len(watched.sent) == 1  # never replayed: found landed by its op id
    assert rdb.find_one("PlanetaryInsight", {"id": day.id}).energy_level == 55
    if records != "hooks off":
        trail = [(e["action"], e["revision"]) for e in rdb.audit_trail("PlanetaryInsight", day.id)]
        assert trail == [("create", 0), ("update", 1)]


def test_a_retried_update_at_an_expected_revision_that_had_landed_is_its_own_write(rdb, records):
    user = _user(rdb)
    spy(rdb, "User", lose=1)
    assert rdb.update("User", {"id": user.id}, {"name": "Bea"}, expected_revision=0, returning=False) is True
    assert rdb.find_one("User", {"id": user.id}).revision == 1
    if records != "hooks off":
        assert _trail(rdb, user.id) == [("create", 0), ("update", 1)]


def test_validation_and_guards_are_unchanged(rdb):
    user = _user(rdb)
    day = rdb.create("PlanetaryInsight", insight_data(user.id, energyLevel=98))
    with pytest.raises(ValidationError):
        rdb.update("User", {"id": user.id}, {"email": "not an email"}, returning=False)
    with pytest.raises(ValidationError, match="outside the field's range"):
        rdb.update("PlanetaryInsight", {"id": day.id}, {"$inc": {"energyLevel": 5}}, returning=False)
    assert rdb.find_one("PlanetaryInsight", {"id": day.id}).energy_level == 98


def test_a_list_change_by_compare_and_set_returns_whether_it_was_updated(rdb):
    user = _user(rdb)
    day = rdb.create("PlanetaryInsight", insight_data(user.id))
    assert rdb.update("PlanetaryInsight", {"id": day.id}, {"$push": {"recommendations": "Walk"}}, returning=False) is True
    assert rdb.find_one("PlanetaryInsight", {"id": day.id}).recommendations == ["Rest", "Walk"]
    assert rdb.update("PlanetaryInsight", {"summary": "nothing"}, {"$push": {"recommendations": "Walk"}},
                      returning=False) is False


def test_lean_with_returning_false_is_refused_before_anything_is_written(db):
    user = _user(db)
    with pytest.raises(QueryError, match="lean=True .* returning=False"):
        db.update("User", {"id": user.id}, {"name": "Bea"}, lean=True, returning=False)
    with pytest.raises(QueryError, match="returning must be True or False"):
        db.update("User", {"id": user.id}, {"name": "Bea"}, returning="no")  # type: ignore[call-overload]
    assert db.find_one("User", {"id": user.id}).name == "Ann"


def test_an_actor_and_a_transaction_forward_it(db):
    from astro_db.errors import TransactionNotSupportedError

    user = _user(db)
    me = db.as_actor(str(user.id), ["self"])
    assert me.update("User", {"id": user.id}, {"name": "Me"}, returning=False) is True
    try:
        with db.transaction() as tx:
            assert db.update("User", {"id": user.id}, {"name": "Tx"}, returning=False, transaction=tx) is True
    except TransactionNotSupportedError:
        pytest.skip("the server cannot run transactions")
    assert db.find_one("User", {"id": user.id}).name == "Tx"


# --- the query cache --------------------------------------------------------------------------

def test_the_cache_drops_what_the_update_changed_and_keeps_the_rest(rdb, records):
    if records == "default":
        pytest.skip("with the journal on the post-image is read: tests/unit/test_cache_selective.py")
    a, b = _user(rdb, "A"), _user(rdb, "B")
    reads = {
        "a by id": ("find_one", {"id": a.id}),
        "b by id": ("find_one", {"id": b.id}),
        "b by email": ("find_one", {"email": b.email}),  # names a field the update does not set
        "by name": ("find", {"name": "A"}),  # names the field it sets
    }
    for call, filt in reads.values():
        getattr(rdb, call)("User", filt, lean=True, cache=True)
    rdb.update("User", {"id": a.id}, {"name": "Z"}, returning=False)
    cache = rdb.executor.runtime.cache
    kept = {}
    for what, (call, filt) in reads.items():
        hits = cache.stats()["hits"]
        answer = getattr(rdb, call)("User", filt, lean=True, cache=True)
        assert answer == getattr(rdb, call)("User", filt, lean=True, cache=False)  # never a stale answer
        kept[what] = cache.stats()["hits"] == hits + 1
    assert kept == {"a by id": False, "b by id": True, "b by email": True, "by name": False}


def test_the_record_of_an_update_without_its_image_has_its_revision_and_time(rdb, records):
    """An audit record's time is the post-image's ``updatedAt`` (the server's clock): read back
    in the narrow projection, it is the same as the stored one."""
    if records == "hooks off":
        pytest.skip("no records")
    import datetime as dt

    user = _user(rdb)
    rdb.update("User", {"id": user.id}, {"name": "Bea"}, returning=False)
    stored = rdb.find_one("User", {"id": user.id}, lean=True)
    last = rdb.audit_trail("User", user.id)[-1]
    assert (last["action"], last["revision"]) == ("update", 1)

    def utc(t: dt.datetime) -> dt.datetime:
        return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)

    assert abs(utc(last["time"]) - utc(stored["updatedAt"])) < dt.timedelta(milliseconds=1)
