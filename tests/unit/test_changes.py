"""Change records on the embedded backend: exactly once, attributed, ordered, never a silent gap.

Races are driven by injected hooks at fixed points of the write path (``WriteRunner._ids``,
``ChangeLog.insertion``), never by timing. The live tier repeats the ordering race with a PyMongo
command listener and a second process (tests/live/test_changes_live.py).
"""

from __future__ import annotations

import logging

import pytest
from backup_helpers import instant_after_last_write, state
from bson.errors import InvalidDocument
from pymongo import errors as pm

from astro_db import backup
from astro_db.changes import CHANGES_COLLECTION, ChangeLog
from astro_db.changes import log as change_log
from astro_db.changes.records import PACK_FROM, images, unpack
from astro_db.errors import ChangeRecordError, DatabaseConnectionError, PermissionDeniedError, QueryError, ValidationError
from astro_db.ops.writes import WriteRunner

from .security_data import new_db, user_data


def records(db, **filt) -> list[dict]:
    """The change records in the order they were written (the embedded backend returns
    insertion order), never by their millisecond timestamp: two records written in the same
    millisecond would otherwise come back in any order."""
    return list(db.mongo[CHANGES_COLLECTION].find(filt))


def users(db, n: int) -> list:
    return list(db.create_many("User", [user_data(name=f"U{i}") for i in range(n)]))


def run_first(monkeypatch, when, action) -> None:
    """Make ``action()`` run inside the first ``WriteRunner._ids`` call for which ``when(runner)``
    holds, after that caller has listed its documents and before it writes (a fixed interleaving)."""
    original = WriteRunner._ids
    fired = []

    def ids(self, filt):
        listed = original(self, filt)
        if not fired and when(self):
            fired.append(True)
            action()
        return listed

    monkeypatch.setattr(WriteRunner, "_ids", ids)


# --- exactly once, attributed to the caller that changed the document ---------------------------

def test_racing_delete_many_records_each_deleted_document_once_for_the_caller_that_deleted_it(db, monkeypatch):
    docs = users(db, 20)
    ids = [u.id for u in docs]
    alice, bob = db.as_actor("alice", roles=["admin"]), db.as_actor("bob", roles=["admin"])
    deleted_by = {}
    # alice lists the 20 documents; before she deletes any, bob deletes them all
    run_first(monkeypatch, lambda runner: runner.actor.id == "alice",
              lambda: deleted_by.__setitem__("bob", bob.delete_many("User", {"id": {"$in": ids}})))
    deleted_by["alice"] = alice.delete_many("User", {"id": {"$in": ids}})
    assert deleted_by == {"bob": 20, "alice": 0}
    deletes = records(db, action="delete")
    assert len(deletes) == 20 and {r["documentId"] for r in deletes} == set(ids)
    assert {r["actor"] for r in deletes} == {"bob"}


def test_update_many_racing_a_delete_records_only_the_documents_it_changed(db, monkeypatch):
    docs = users(db, 10)
    gone = [u.id for u in docs[:4]]
    run_first(monkeypatch, lambda runner: runner.actor and runner.actor.id == "carol",
              lambda: db.delete_many("User", {"id": {"$in": gone}}))
    carol = db.as_actor("carol", roles=["admin"])
    assert carol.update_many("User", {"name": {"$in": [f"U{i}" for i in range(10)]}}, {"status": "inactive"}) == 6
    updates = records(db, action="update")
    assert len(updates) == 6 and not {r["documentId"] for r in updates} & set(gone)
    assert all(r["actor"] == "carol" and r["doc"]["status"] == "inactive" and r["rev"] == 1 for r in updates)


def test_update_many_racing_update_many_records_each_revision_once(db, monkeypatch):
    docs = users(db, 5)
    run_first(monkeypatch, lambda runner: runner.actor and runner.actor.id == "dave",
              lambda: db.update_many("User", {"name": {"$in": [f"U{i}" for i in range(5)]}}, {"status": "inactive"}))
    dave = db.as_actor("dave", roles=["admin"])
    assert dave.update_many("User", {"name": {"$in": [f"U{i}" for i in range(5)]}}, {"name": "Dave'd"}) == 5
    for user in docs:
        trail = db.audit_trail("User", user.id)
        assert [(e["action"], e["revision"], e["actor"]) for e in trail] == [
            ("create", 0, None), ("update", 1, None), ("update", 2, "dave")]


def test_records_carry_no_service_fields_a_caller_could_forge(db):
    user = db.create("User", user_data())
    for data in ({"_rev": 99}, {"_op": "mine"}, {"$inc": {"_rev": 1}}):
        with pytest.raises((ValidationError, QueryError)):
            db.update("User", {"id": user.id}, data)
    with pytest.raises((ValidationError, QueryError)):
        db.create("User", user_data(_rev=5))
    assert [r["rev"] for r in records(db)] == [0]
    assert "_rev" not in db.mongo.users.find_one({"_id": user.id})


# --- ordering by revision ------------------------------------------------------------------------

def test_a_record_written_late_still_loses_to_the_later_revision_in_a_restore(db, tmp_path, monkeypatch):
    [user] = users(db, 1)
    backup.backup(db, tmp_path / "repo")
    other = db.as_actor("other", roles=["admin"])
    original = ChangeLog.insertion
    held = []

    def insertion(self, database, recs, **kw):
        # the first update's records wait until a second update has been applied and recorded
        if not held and recs and recs[0]["action"] == "update":
            held.append(True)
            other.update("User", {"id": user.id}, {"name": "Applied second"})
        return original(self, database, recs, **kw)

    monkeypatch.setattr(ChangeLog, "insertion", insertion)
    db.update("User", {"id": user.id}, {"name": "Applied first"})
    instant = instant_after_last_write()
    assert db.find_one("User", {"id": user.id}).name == "Applied second"
    first, second = sorted(records(db, action="update"), key=lambda r: r["rev"])
    assert (first["doc"]["name"], first["rev"]) == ("Applied first", 1)
    assert (second["doc"]["name"], second["rev"]) == ("Applied second", 2)
    backup.backup(db, tmp_path / "repo")
    for until in (None, instant):
        target = new_db()
        backup.restore(tmp_path / "repo", target, until=until)
        assert target.find_one("User", {"id": user.id}).name == "Applied second"
        assert state(target) == state(db)


# --- the failure policy ----------------------------------------------------------------------------

def failing_inserts(monkeypatch, times: int) -> list:
    """The next ``times`` record inserts fail as a lost connection would."""
    calls = []
    original = change_log._insert

    def insert(coll, recs, session):
        calls.append(len(recs))
        if len(calls) <= times:
            raise pm.AutoReconnect("connection closed")
        return original(coll, recs, session)

    monkeypatch.setattr(change_log, "_insert", insert)
    return calls


def test_a_record_insert_that_fails_once_is_retried_under_the_write_bound(monkeypatch):
    db = new_db(retry_attempts=3, backoff_base_s=0.001, backoff_max_s=0.002)
    user = db.create("User", user_data())
    calls = failing_inserts(monkeypatch, 1)
    assert db.update("User", {"id": user.id}, {"name": "Retried"}).name == "Retried"
    assert calls == [1, 1]
    assert [r["action"] for r in records(db)] == ["create", "update"]


def test_records_that_cannot_be_written_raise_saying_the_write_was_applied_then_catch_up(monkeypatch, caplog, tmp_path):
    db = new_db(retry_attempts=2, backoff_base_s=0.001, backoff_max_s=0.002)
    user, friend = users(db, 2)
    backup.backup(db, tmp_path / "repo")
    failing_inserts(monkeypatch, 2)
    with caplog.at_level(logging.ERROR, logger="astro_db"), pytest.raises(ChangeRecordError) as err:
        db.update("User", {"id": user.id}, {"name": "Stored anyway"})
    assert isinstance(err.value, DatabaseConnectionError) and err.value.applied is True
    assert err.value.missing == [user.id] and "was applied" in str(err.value)
    assert any("was applied but its change record" in r.getMessage() for r in caplog.records)
    assert db.find_one("User", {"id": user.id}).name == "Stored anyway"
    assert db.executor.runtime.changes.pending == 1 and len(records(db, action="update")) == 0
    db.update("User", {"id": friend.id}, {"name": "Next write"})  # writes the missing record too
    assert db.executor.runtime.changes.pending == 0
    assert {r["documentId"] for r in records(db, action="update")} == {user.id, friend.id}
    backup.backup(db, tmp_path / "repo")  # the incremental sees the late record: nothing undone
    target = new_db()
    backup.restore(tmp_path / "repo", target)
    assert target.find_one("User", {"id": user.id}).name == "Stored anyway"


def test_reconcile_rebuilds_records_a_crash_lost(monkeypatch, tmp_path):
    db = new_db(retry_attempts=1)
    user = users(db, 1)[0]
    backup.backup(db, tmp_path / "repo")
    failing_inserts(monkeypatch, 1)
    with pytest.raises(ChangeRecordError):
        db.update("User", {"id": user.id}, {"name": "Lost record"})
    db.executor.runtime.changes = ChangeLog(audit=True, journal=True)  # the process died: its memory is gone
    with pytest.raises(PermissionDeniedError, match="may not reconcile_changes"):
        db.as_actor("w", roles=["writer"]).reconcile_changes()
    assert db.reconcile_changes() == {"pending": 0, "intents": {"confirmed": 0, "dropped": 0},
                                      "rebuilt": {"User": 1, "BirthChart": 0, "PlanetaryInsight": 0,
                                                  "TimingRecommendation": 0},
                                      "erasures": {"finished": 0, "scrubbed": 0}}
    [rebuilt] = records(db, action="update")
    assert rebuilt["rev"] == 1 and rebuilt["doc"]["name"] == "Lost record" and rebuilt["actor"] == "astro-db:reconcile"
    assert db.reconcile_changes()["rebuilt"]["User"] == 0  # idempotent
    backup.backup(db, tmp_path / "repo")
    target = new_db()
    backup.restore(tmp_path / "repo", target)
    assert target.find_one("User", {"id": user.id}).name == "Lost record"


def test_inside_a_transaction_a_record_failure_fails_the_transaction(db, monkeypatch):
    user = users(db, 1)[0]
    failing_inserts(monkeypatch, 99)
    with pytest.raises(DatabaseConnectionError) as err:
        with db.transaction() as tx:
            db.update("User", {"id": user.id}, {"name": "Never"}, transaction=tx)
    assert not isinstance(err.value, ChangeRecordError)
    assert db.find_one("User", {"id": user.id}).name == "U0" and db.executor.runtime.changes.pending == 0


def test_a_late_record_whose_document_moved_on_keeps_its_audit_but_not_its_image(monkeypatch):
    db = new_db(retry_attempts=1)
    user = users(db, 1)[0]
    failing_inserts(monkeypatch, 1)
    with pytest.raises(ChangeRecordError):
        db.update("User", {"id": user.id}, {"name": "Then"})
    db.delete("User", {"id": user.id})  # its records carry the late one along
    late = records(db, action="update")[0]
    assert late["late"] is True and "doc" not in late and late["audit"] is True
    assert [r["action"] for r in records(db, journal=True)] == ["create", "delete"]


def test_a_records_image_is_the_document_sent_until_the_record_is_kept_then_its_own_copy(monkeypatch):
    """A create's record carries the very document it sent (no copy per document: a create_many
    of 5,000 built 5,000 for nothing); a record kept for later gets its own copy, so a hook that
    changes the event's documents afterwards cannot change what the journal will say."""
    db = new_db(retry_attempts=1)
    sent = {}

    def build(self, **kwargs):
        records = original(self, **kwargs)
        sent.update((r["documentId"], (r["doc"], image)) for r, (_, _, _, image) in zip(records, kwargs["changes"]))
        return records

    original = ChangeLog.build
    monkeypatch.setattr(ChangeLog, "build", build)
    [user] = users(db, 1)
    assert all(doc is image for doc, image in sent.values())  # shared, and inserted as is
    assert records(db)[0]["doc"]["name"] == "U0"
    failing_inserts(monkeypatch, 1)
    db.executor.runtime.hooks.append(lambda event: event.documents[0].update(name="Changed by a hook"))
    with pytest.raises(ChangeRecordError):
        db.update("User", {"id": user.id}, {"name": "Journaled"})
    db.executor.runtime.hooks.pop()
    db.reconcile_changes()
    [late] = records(db, action="update")
    assert late["late"] is True and late["doc"]["name"] == "Journaled"


@pytest.mark.parametrize("n", [PACK_FROM - 1, PACK_FROM + 8])
def test_create_many_without_a_key_sends_each_document_once_and_its_records_carry_it(db, n):
    """A create_many of many documents (two commands: documents, then records) with no key:
    the documents sent are the validated ones, not copies made for sealing; the lean result is
    those same documents. Nothing else changed: one insert of the documents, one of the
    records, in order. Below ``PACK_FROM`` each record's image is the document sent, uncopied;
    from it on, one packed record holds every document's id and its image as stored."""
    inserted: list[tuple[str, list]] = []

    class Spy:  # in place of the gateway's collection handle (Gateway.collections)
        def __init__(self, real, name):
            self.real, self.name = real, name

        def insert_many(self, docs, **kwargs):
            inserted.append((self.name, list(docs)))
            return self.real.insert_many(docs, **kwargs)

        def insert_one(self, doc, **kwargs):
            inserted.append((self.name, [doc]))
            return self.real.insert_one(doc, **kwargs)

        def __getattr__(self, attr):
            return getattr(self.real, attr)

    gateway = db.executor.runtime.gateway
    for name in ("users", CHANGES_COLLECTION):
        gateway.collections[name] = Spy(gateway[name], name)
    result = db.create_many("User", [user_data(name=f"U{i}", email=f"u{i}@example.com") for i in range(n)], lean=True)
    assert not result.failed and len(result) == n
    assert [name for name, _ in inserted] == ["users", CHANGES_COLLECTION]
    (_, docs), (_, recs) = inserted
    assert all(sent is made for sent, made in zip(docs, result))
    if n < PACK_FROM:
        assert all(r["doc"] is d and r["documentId"] == d["_id"] for r, d in zip(recs, docs))
    else:
        [pack] = recs
        assert pack["documentId"] == [d["_id"] for d in docs] and pack["owners"] == pack["documentId"]
        assert images(pack) == docs  # decoded as the service's client decodes: aware UTC dates
    assert [r["doc"]["name"] for rec in records(db) for r in unpack(rec)] == [f"U{i}" for i in range(n)]


def test_records_keep_their_format(db):
    """Every field of a create's and an update's record, as the readers (trail, backups,
    reconcile) read them."""
    [user] = users(db, 1)
    db.as_actor("eve", roles=["admin"]).update("User", {"id": user.id}, {"name": "Two"})
    stored = db.mongo.users.find_one({"_id": user.id})
    create, update = records(db)
    op = stored["_op"]
    assert create == {
        "_id": f"users/{user.id}/0/{create['_id'].rsplit('/', 1)[1]}", "model": "User", "coll": "users",
        "documentId": user.id, "rev": 0, "action": "create", "time": create["time"], "t": create["t"], "audit": True,
        "actor": None, "requestId": None, "fields": sorted(k for k in create["doc"] if k != "_id"),
        "journal": True, "doc": create["doc"]}
    assert list(create["doc"])[0] == "_id" and create["doc"]["name"] == "U0"
    assert create["t"] == int(create["time"].timestamp() * 1000) and create["time"].microsecond % 1000 == 0
    assert update["_id"] == f"users/{user.id}/1/{op}" and update["actor"] == "eve" and update["fields"] == ["name"]
    assert list(update["doc"])[0] == "_id" and update["doc"]["name"] == "Two" and update["doc"]["_rev"] == 1
    when = stored["updatedAt"]  # the server's clock (the embedded backend keeps microseconds)
    assert update["time"] == when.replace(microsecond=when.microsecond // 1000 * 1000)
    assert update["t"] == int(when.timestamp() * 1000)


# --- configuration switches -------------------------------------------------------------------------

def test_audit_without_journal_keeps_no_images_and_journal_without_audit_keeps_no_actor():
    audit_only = new_db(journal=False)
    audit_only.as_actor("eve", roles=["writer"]).create("User", user_data())
    [rec] = records(audit_only)
    assert rec["actor"] == "eve" and "doc" not in rec and "journal" not in rec
    journal_only = new_db(audit=False)
    journal_only.as_actor("eve", roles=["writer"]).create("User", user_data())
    [rec] = records(journal_only)
    assert rec["doc"]["name"] == "Ann Example" and "actor" not in rec and "audit" not in rec
    neither = new_db(audit=False, journal=False)
    neither.create("User", user_data())
    assert records(neither) == []


def test_legacy_audit_log_entries_stay_readable(db):
    user = db.create("User", user_data())
    db.mongo["auditLog"].insert_one({"time": user.created_at if hasattr(user, "created_at") else None, "actor": "old",
                                     "action": "update", "model": "User", "documentId": user.id, "fields": ["name"]})
    trail = db.audit_trail("User", user.id)
    assert [(e["actor"], e["action"]) for e in trail] == [("old", "update"), (None, "create")]


def test_the_cli_reconciles_records(monkeypatch):
    import json

    from click.testing import CliRunner

    from astro_db.cli import CliContext, cli

    url = "mongomock://localhost/cli_reconcile"
    db = new_db(url, retry_attempts=1)
    user = users(db, 1)[0]
    failing_inserts(monkeypatch, 1)
    with pytest.raises(ChangeRecordError):
        db.update("User", {"id": user.id}, {"name": "Lost"})
    monkeypatch.undo()
    db.executor.runtime.changes = ChangeLog(audit=True, journal=True)  # a crash lost the pending record
    monkeypatch.setattr(CliContext, "database", lambda self, **options: db)  # embedded data lives in this process
    out = CliRunner().invoke(cli, ["--url", url, "--json", "reconcile-changes"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["rebuilt"]["User"] == 1
    assert [r["rev"] for r in records(db, action="update")] == [1]
    human = CliRunner().invoke(cli, ["--url", url, "reconcile-changes"])
    assert "0 change record(s) written" in human.output


def test_advance_moves_the_revision_in_the_same_update_and_takes_the_servers_clock():
    from astro_db.changes import advance

    op = object()
    out = advance({"$set": {"name": "x", "updatedAt": "client"}, "$inc": {"energyLevel": 1}}, op)
    assert out == {"$set": {"name": "x", "_op": op}, "$inc": {"energyLevel": 1, "_rev": 1},
                   "$currentDate": {"updatedAt": True}}
    assert advance({"$push": {"tags": 1}}, op)["$inc"] == {"_rev": 1}


@pytest.mark.parametrize("same_millisecond", [False, True], ids=["clock", "one_millisecond"])
def test_every_write_path_advances_the_revision_once(db, monkeypatch, same_millisecond):
    """With ``same_millisecond`` every record carries the same time, as fast writes on a busy
    machine may: the order checked is the order written, never the timestamp's."""
    if same_millisecond:
        import datetime as dt

        from astro_db.changes import records as change_records

        instant = dt.datetime(2026, 12, 6, 7, 0, tzinfo=dt.timezone.utc)
        monkeypatch.setattr(change_records, "ms_time", lambda value: instant)
    [user] = users(db, 1)
    chart = db.create("BirthChart", {"userId": str(user.id), "birthData": {
        "date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
        "location": {"name": "London", "coordinates": [-0.1276, 51.5072]}}})
    db.update("User", {"id": user.id}, {"name": "One"})
    db.update_many("User", {"id": user.id}, {"name": "Two"})
    db.update("BirthChart", {"id": chart.id}, {"$push": {"positions": {"body": "Sun", "sign": "Aries", "degree": 1.0}}})
    assert [(r["coll"], r["action"], r["rev"]) for r in records(db)] == [
        ("users", "create", 0), ("birthCharts", "create", 0), ("users", "update", 1), ("users", "update", 2),
        ("birthCharts", "update", 1)]
    assert db.mongo.users.find_one({"_id": user.id})["_rev"] == 2
    db.delete("User", {"id": user.id})
    assert records(db, action="delete")[0]["rev"] == 3


@pytest.mark.parametrize("n", [1, 3])
def test_a_record_already_there_is_success_one_record_or_many(n):
    """One record goes as ``insert_one``, several as one unordered ``insert_many``: either way a
    record the server already has (a retry met its own) is success, and the others still go in."""
    db = new_db()
    coll = db.mongo[CHANGES_COLLECTION]
    batch = [{"_id": f"users/x{i}/1", "documentId": f"x{i}"} for i in range(n)]
    coll.insert_one(dict(batch[0]))
    change_log._insert(coll, batch, None)
    assert sorted(r["_id"] for r in coll.find()) == sorted(r["_id"] for r in batch)
    with pytest.raises(InvalidDocument):  # anything but a duplicate key still fails the call
        change_log._insert(coll, [{"_id": f"users/y{i}/1", "$bad": 1} for i in range(n)], None)


def test_a_date_as_the_driver_decodes_it_is_taken_as_utc_without_converting_it():
    """An update's post-image carries ``updatedAt`` with PyMongo's own UTC tzinfo: the record's
    time is the same instant, in ``timezone.utc``, with no conversion (``astimezone``); a date
    off the millisecond is still cut."""
    import datetime

    from bson.tz_util import FixedOffset, utc

    from astro_db.changes.records import ms_time

    class Decoded(datetime.datetime):
        def astimezone(self, tz=None):  # noqa: ANN001, ANN202
            raise AssertionError("converted")

    stored = datetime.datetime(2026, 12, 6, 21, 0, 0, 123000, tzinfo=utc)
    when = ms_time(Decoded(2026, 12, 6, 21, 0, 0, 123000, tzinfo=utc))
    assert when == stored and when.tzinfo is datetime.timezone.utc
    assert ms_time(stored.replace(microsecond=123456)) == stored
    assert ms_time(datetime.datetime(2026, 12, 6, 22, 0, 0, 123000, tzinfo=FixedOffset(60, "+01"))) == stored


def test_a_writes_own_records_go_straight_to_their_insert_when_nothing_is_pending():
    """The insertion of a write's records settles nothing when nothing was left pending: the
    call is the insert itself; with a record pending, it settles and writes it too."""
    from functools import partial

    changes = change_log.ChangeLog(audit=True, journal=True)
    database = {change_log.CHANGES_COLLECTION: object()}
    insert, late = changes.insertion(database, [{"_id": "r"}], session=None, in_transaction=False)
    assert isinstance(insert, partial) and insert.func is change_log._insert and late == []
    changes._keep([({"_id": "kept", "coll": "users", "documentId": 1, "rev": 1, "t": 0}, change_log.INSERT)])
    insert, late = changes.insertion(database, [{"_id": "r"}], session=None, in_transaction=False)
    assert insert.func is change_log._write_late and [r["_id"] for r, _ in late] == ["kept"]
