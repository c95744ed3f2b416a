"""The after-write step and the identity of change records, on the embedded backend.

1. Re-created documents: create X, delete X, create X again under the same ``_id``, update X:
   the trail shows all four writes in order, the second life continues X's revisions, and a
   full + incremental restore (or a point-in-time one) returns the edited second life. Records
   of the older ``_id`` format stay readable.
2. A delete writes its record first as an intent and confirms it after; a process that dies in
   between (simulated here by an exception no handler catches, with the process's memory
   dropped; tests/live/test_changes_crash_live.py does it with a real SIGKILL) leaves an intent
   that ``reconcile_changes()`` confirms (the document is gone) or drops (it is not).
3. ``update_many`` with a list change keeps the caller's filter in its compare-and-set: a
   document changed by someone else between the read and the write, so that it no longer
   matches, is left alone (an injected hook makes the change at that exact point).
4. A write whose outcome is unknown (the first attempt's reply lost after the server applied
   it, the retry run out of its time bound) is read back by its client-made ``_id``: reported
   as done and recorded, as failed if it did not land, or as ``WriteOutcomeUnknown`` with its
   records queued when the read fails too.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from backup_helpers import instant_after_last_write, state
from bson import ObjectId
from pymongo import errors as pm

from astro_db import Database, backup
from astro_db.changes import CHANGES_COLLECTION, ChangeLog
from astro_db.changes import log as change_log
from astro_db.driver import timeouts
from astro_db.errors import DatabaseConnectionError, OperationTimeoutError, WriteOutcomeUnknown
from astro_db.ops.writes import WriteRunner

from .security_data import chart_data, new_db, user_data


def records(db, **filt) -> list[dict]:
    return list(db.mongo[CHANGES_COLLECTION].find(filt, sort=[("rev", 1), ("t", 1)]))


def trail(db, model, doc_id) -> list[tuple[str, int]]:
    return [(e["action"], e["revision"]) for e in db.audit_trail(model, doc_id)]


def restored(tmp_path, until=None) -> Database:
    target = new_db()
    backup.restore(tmp_path / "repo", target, until=until)
    return target


# --- 0. the after-write step: one event per write, the records a write hook -----------------------

def test_the_change_records_are_a_write_hook_that_gets_the_writes_session(db):
    from astro_db.ops.steps.hooks import ChangeRecords

    rt = db.executor.runtime
    [records_hook] = [h for h in rt.hooks if isinstance(h, ChangeRecords)]
    assert rt.hooks.index(records_hook) == rt.hooks.index(rt.cache.on_write) + 1
    seen = []
    rt.hooks[rt.hooks.index(records_hook)] = lambda event: (seen.append(event), records_hook(event))
    user = db.create("User", user_data())
    with db.transaction() as tx:
        db.update("User", {"id": user.id}, {"name": "In a transaction"}, transaction=tx)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        db.update("User", {"id": user.id}, {"name": "Aborted"}, transaction=tx)
        raise RuntimeError("abort")
    create, committed, aborted = seen
    assert (create.action, create.session, [c.rev for c in create.changes]) == ("create", None, [0])
    assert committed.session is not None and committed.transaction is not None
    assert [c.rev for c in committed.changes] == [1] and aborted.changes[0].rev == 2
    assert trail(db, "User", user.id) == [("create", 0), ("update", 1)]  # the aborted one's record aborted with it


def test_without_the_hook_no_record_is_written(db):
    from astro_db.ops.steps.hooks import ChangeRecords

    rt = db.executor.runtime
    rt.hooks[:] = [h for h in rt.hooks if not isinstance(h, ChangeRecords)]
    user = db.create("User", user_data())
    db.update("User", {"id": user.id}, {"name": "Unrecorded"})
    assert records(db) == []


def test_a_record_failure_is_raised_after_the_other_hooks_heard_of_the_write(db, monkeypatch):
    heard = []
    db.executor.runtime.hooks.append(lambda event: heard.append(event.action))
    user = db.create("User", user_data())
    monkeypatch.setattr(change_log, "_insert", lambda *a: (_ for _ in ()).throw(pm.OperationFailure("refused", 121)))
    from astro_db.errors import ChangeRecordError

    with pytest.raises(ChangeRecordError):
        db.update("User", {"id": user.id}, {"name": "Applied"})
    assert heard == ["create", "update"]


# --- 1. a re-created _id ----------------------------------------------------------------------------

def test_a_document_created_again_under_its_id_continues_its_trail_and_survives_a_restore(db, tmp_path):
    first = db.create("User", user_data(name="First life"))
    x = first.id
    backup.backup(db, tmp_path / "repo")  # full: the first life
    db.delete("User", {"id": x})
    second = db.create("User", user_data(_id=x, name="Second life"))
    assert second.id == x
    db.update("User", {"id": x}, {"name": "Second life, edited"})
    instant = instant_after_last_write()
    assert trail(db, "User", x) == [("create", 0), ("delete", 1), ("create", 2), ("update", 3)]
    ids = [r["_id"] for r in records(db, documentId=x)]
    assert len(ids) == len(set(ids)) == 4
    backup.backup(db, tmp_path / "repo")  # incremental: delete, create again, update
    for until in (None, instant):
        target = restored(tmp_path, until)
        assert target.find_one("User", {"id": x}).name == "Second life, edited"
        assert state(target) == state(db)


def test_a_second_life_deleted_again_stays_deleted_in_a_restore(db, tmp_path):
    x = db.create("User", user_data()).id
    backup.backup(db, tmp_path / "repo")
    db.delete("User", {"id": x})
    db.create("User", user_data(_id=x))
    db.delete("User", {"id": x})
    assert trail(db, "User", x) == [("create", 0), ("delete", 1), ("create", 2), ("delete", 3)]
    backup.backup(db, tmp_path / "repo")
    assert restored(tmp_path).find_one("User", {"id": x}) is None


def test_create_many_continues_chosen_ids_and_leaves_fresh_ones_alone(db):
    x = db.create("User", user_data()).id
    db.delete("User", {"id": x})
    fresh = ObjectId()
    result = db.create_many("User", [user_data(_id=x), user_data(_id=fresh), user_data()])
    assert not result.failed
    assert db.mongo.users.find_one({"_id": x})["_rev"] == 2
    assert "_rev" not in db.mongo.users.find_one({"_id": fresh})  # a first life is stored exactly as before
    assert trail(db, "User", x) == [("create", 0), ("delete", 1), ("create", 2)]


def test_a_fresh_create_makes_no_lookup_of_earlier_lives(db, monkeypatch):
    looked = []
    original = change_log.last_revisions
    monkeypatch.setattr("astro_db.ops.writes.last_revisions", lambda *a, **k: looked.append(a) or original(*a, **k))
    db.create("User", user_data())
    db.create_many("User", [user_data(), user_data()])
    assert looked == []
    db.create("User", user_data(_id=ObjectId()))
    assert len(looked) == 1


def test_records_of_the_older_id_format_are_still_read(db, tmp_path):
    """Records written before record ids named their operation (``<coll>/<id>/<rev>``) are read by
    the trail, the incremental backup and a point-in-time restore as before."""
    user = db.create("User", user_data(name="Old"))
    backup.backup(db, tmp_path / "repo")
    db.update("User", {"id": user.id}, {"name": "Older format"})
    coll = db.mongo[CHANGES_COLLECTION]
    for record in records(db, documentId=user.id):
        coll.delete_one({"_id": record["_id"]})
        coll.insert_one({**record, "_id": f"users/{user.id}/{record['rev']}"})
    assert {r["_id"] for r in records(db, documentId=user.id)} == {f"users/{user.id}/0", f"users/{user.id}/1"}
    instant = instant_after_last_write()
    db.update("User", {"id": user.id}, {"name": "New format"})
    assert trail(db, "User", user.id) == [("create", 0), ("update", 1), ("update", 2)]
    backup.backup(db, tmp_path / "repo")
    assert restored(tmp_path).find_one("User", {"id": user.id}).name == "New format"
    assert restored(tmp_path, instant).find_one("User", {"id": user.id}).name == "Older format"


def test_a_retried_record_write_makes_one_record_per_write(db, monkeypatch):
    """The record id is made once per operation: a retry meets its own, and two writes of the
    same document never share one."""
    user = db.create("User", user_data())
    calls = []
    original = change_log._insert

    def insert(coll, recs, session):
        calls.append(1)
        original(coll, recs, session)
        if len(calls) == 1:
            raise pm.AutoReconnect("reply lost after the record was stored")

    monkeypatch.setattr(change_log, "_insert", insert)
    db.update("User", {"id": user.id}, {"name": "Once"})
    assert len(calls) == 2
    assert [r["action"] for r in records(db, documentId=user.id)] == ["create", "update"]


# --- 2. deletes: intent, confirmation, a crash in between -------------------------------------------

class Killed(BaseException):
    """Stands for the process dying at this point (no handler of the library catches it)."""


def die_at(monkeypatch, name: str) -> None:
    monkeypatch.setattr(ChangeLog, name, lambda self, *a, **k: (_ for _ in ()).throw(Killed()))


def restart(db) -> None:
    """What survives a killed process: the server's data, not the process's memory."""
    db.executor.runtime.changes = ChangeLog(audit=True, journal=True)


def test_a_delete_costs_an_intent_and_a_confirmation_and_leaves_one_record(db):
    user = db.create("User", user_data())
    assert db.delete("User", {"id": user.id}) is True
    [rec] = records(db, action="delete")
    assert rec["audit"] is True and rec["journal"] is True and "intent" not in rec
    assert rec["rev"] == 1 and rec["_id"].startswith(f"users/{user.id}/1/")
    assert db.delete("User", {"id": user.id}) is False
    assert records(db, intent={"$exists": True}) == []


def test_a_confirmation_that_fails_raises_applied_drops_the_cached_reads_and_catches_up(monkeypatch):
    db = new_db(retry_attempts=1, cache_ttl_s=60)
    user = db.create("User", user_data())
    assert db.find_one("User", {"id": user.id}, cache=True) is not None  # cached
    monkeypatch.setattr(change_log, "_replace", lambda *a: (_ for _ in ()).throw(pm.AutoReconnect("lost")))
    from astro_db.errors import ChangeRecordError

    with pytest.raises(ChangeRecordError) as caught:
        db.delete("User", {"id": user.id})
    assert caught.value.applied is True and caught.value.missing == [user.id]
    assert db.find_one("User", {"id": user.id}, cache=True) is None  # the cache heard of the delete
    monkeypatch.undo()
    assert db.reconcile_changes()["pending"] == 1
    assert trail(db, "User", user.id) == [("create", 0), ("delete", 1)]
    assert records(db, intent={"$exists": True}) == []


def test_a_process_killed_between_its_delete_and_the_confirmation_is_reconciled(db, monkeypatch, tmp_path):
    user = db.create("User", user_data())
    backup.backup(db, tmp_path / "repo")
    die_at(monkeypatch, "confirm")
    with pytest.raises(Killed):
        db.delete("User", {"id": user.id})
    monkeypatch.undo()
    restart(db)
    assert db.mongo.users.find_one({"_id": user.id}) is None
    assert trail(db, "User", user.id) == [("create", 0)]  # the intent is not a record yet
    report = db.reconcile_changes()
    assert report["intents"] == {"confirmed": 1, "dropped": 0}
    assert trail(db, "User", user.id) == [("create", 0), ("delete", 1)]
    assert db.reconcile_changes()["intents"] == {"confirmed": 0, "dropped": 0}
    backup.backup(db, tmp_path / "repo")
    assert restored(tmp_path).find_one("User", {"id": user.id}) is None


def test_a_process_killed_before_its_delete_leaves_an_intent_reconcile_drops(db, monkeypatch):
    user = db.create("User", user_data())
    monkeypatch.setattr(WriteRunner, "_cas_delete", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        db.delete("User", {"id": user.id})
    monkeypatch.undo()
    restart(db)
    assert len(records(db, intent={"$exists": True})) == 1
    assert db.reconcile_changes()["intents"] == {"confirmed": 0, "dropped": 1}
    assert db.find_one("User", {"id": user.id}) is not None
    assert trail(db, "User", user.id) == [("create", 0)] and records(db, intent={"$exists": True}) == []


def test_an_intent_for_a_revision_another_write_took_is_dropped(db, monkeypatch):
    """Killed before its delete while an update moved the document on: the document exists past
    the intent's revision, but a record of that revision by another write says the delete never
    happened."""
    user = db.create("User", user_data())
    monkeypatch.setattr(WriteRunner, "_cas_delete", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        db.delete("User", {"id": user.id})
    monkeypatch.undo()
    restart(db)
    db.update("User", {"id": user.id}, {"name": "Moved on"})
    db.update("User", {"id": user.id}, {"name": "And on"})
    assert db.reconcile_changes()["intents"] == {"confirmed": 0, "dropped": 1}
    assert trail(db, "User", user.id) == [("create", 0), ("update", 1), ("update", 2)]


def test_a_delete_many_killed_half_way_is_reconciled_exactly(db, monkeypatch, tmp_path):
    users = [db.create("User", user_data(name="Many")) for _ in range(6)]
    backup.backup(db, tmp_path / "repo")
    original, deleted = WriteRunner._cas_delete, []

    def cas_delete(self, operation, filt, doc):
        if len(deleted) == 3:
            raise Killed()
        deleted.append(doc["_id"])
        return original(self, operation, filt, doc)

    monkeypatch.setattr(WriteRunner, "_cas_delete", cas_delete)
    with pytest.raises(Killed):
        db.delete_many("User", {"name": "Many"})
    monkeypatch.undo()
    restart(db)
    assert db.count("User", {"name": "Many"}) == 3
    assert db.reconcile_changes()["intents"] == {"confirmed": 3, "dropped": 3}  # 3 deleted, 3 never tried
    assert {r["documentId"] for r in records(db, action="delete")} == set(deleted)
    for user in users:
        assert trail(db, "User", user.id)[-1][0] == ("delete" if user.id in deleted else "create")
    backup.backup(db, tmp_path / "repo")
    assert state(restored(tmp_path)) == state(db)


def test_a_reconcile_racing_a_live_delete_cannot_lose_its_record(db, monkeypatch):
    """A reconcile that runs between a live process's intent and its delete drops the intent
    (the document is still there); the confirmation then writes the record anyway."""
    user = db.create("User", user_data())
    original = WriteRunner._cas_delete

    def cas_delete(self, operation, filt, doc):
        assert db.reconcile_changes()["intents"] == {"confirmed": 0, "dropped": 1}
        return original(self, operation, filt, doc)

    monkeypatch.setattr(WriteRunner, "_cas_delete", cas_delete)
    assert db.delete("User", {"id": user.id}) is True
    assert trail(db, "User", user.id) == [("create", 0), ("delete", 1)]


def test_in_a_transaction_a_delete_and_its_record_commit_together_without_an_intent(db, monkeypatch):
    user = db.create("User", user_data())
    intents = []
    monkeypatch.setattr(ChangeLog, "intend", lambda self, *a, **k: intents.append(a))
    with db.transaction() as tx:
        db.delete("User", {"id": user.id}, transaction=tx)
    assert intents == [] and trail(db, "User", user.id) == [("create", 0), ("delete", 1)]


# --- 3. update_many with a list change keeps the caller's filter ------------------------------------

def charts(db, n: int) -> list:
    user = db.create("User", user_data())
    return [db.create("BirthChart", chart_data(user.id, houseSystem="placidus")) for _ in range(n)]


PUSH = {"$push": {"positions": {"body": "Sun", "sign": "Aries", "degree": 1.0}}}


@pytest.mark.parametrize("where", ["after listing", "after reading the document"])
def test_update_many_list_change_skips_a_document_that_stopped_matching(db, monkeypatch, where):
    first, second, third = charts(db, 3)
    other = db.as_actor("other", roles=["admin"])  # a second caller, through its own view
    fired = []

    def move_second() -> None:
        if not fired:
            fired.append(True)
            other.update("BirthChart", {"id": second.id}, {"houseSystem": "whole-sign"})

    if where == "after listing":
        original_ids = WriteRunner._ids

        def ids(self, filt):
            listed = original_ids(self, filt)
            move_second()
            return listed

        monkeypatch.setattr(WriteRunner, "_ids", ids)
    else:
        original_check = WriteRunner._checked_post_image

        def checked(self, current, update):
            if current["_id"] == second.id:
                move_second()  # between the compare-and-set's read and its write
            return original_check(self, current, update)

        monkeypatch.setattr(WriteRunner, "_checked_post_image", checked)
    assert db.update_many("BirthChart", {"houseSystem": "placidus"}, PUSH) == 2
    assert fired
    stored = {c.id: c for c in db.find("BirthChart", {})}
    assert len(stored[first.id].positions) == len(stored[third.id].positions) == 1
    assert stored[second.id].positions == [] and stored[second.id].house_system == "whole-sign"
    assert [a for a, _ in trail(db, "BirthChart", second.id)] == ["create", "update"]


# --- 4. a write whose outcome is unknown --------------------------------------------------------------

class Script:
    """Stands in for a model's collection: the n-th call of each scripted method does what its
    script says ("land": run it for real, then lose the reply; "lose": lose it before it runs;
    "expire": wait out the call's time bound, then time out; "pass" or past the end: run it)."""

    def __init__(self, real: Any, **scripts: list[str]) -> None:
        self.real, self.scripts, self.calls = real, scripts, {name: 0 for name in scripts}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name not in self.scripts:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            step = self.scripts[name][self.calls[name] - 1] if self.calls[name] <= len(self.scripts[name]) else "pass"
            if step == "land":
                attr(*args, **kwargs)
                raise pm.AutoReconnect("connection lost after the server applied the write")
            if step == "lose":
                raise pm.AutoReconnect("connection lost before the write was sent")
            if step == "expire":
                bound = timeouts.current_bound(None)
                assert bound is not None, "the call runs under a time bound"
                while not bound.expired():
                    time.sleep(0.001)
                raise pm.NetworkTimeout("timed out")
            return attr(*args, **kwargs)

        return call


#: The scripted calls' budget: an "expire" step waits it out, so it is short, but the steps before
#: it (a first attempt, the retry policy) must start within it on a loaded CI machine too (200 ms
#: left a stall of that length nowhere to go).
BUDGET_MS = 600


def script(db, model: str, **scripts: list[str]) -> Script:
    rt = db.executor.runtime
    info = rt.registry.resolve(model)
    fake = Script(rt.coll(info), **scripts)
    rt.gateway.collections[info.collection] = fake
    return fake


@pytest.fixture
def fast():
    database = Database(f"mongomock://localhost/u{uuid.uuid4().hex[:8]}", retry_attempts=3, backoff_base_s=0.001,
                        backoff_max_s=0.002, allow_plaintext_sensitive=True).connect()
    database.executor.runtime.retry.sleep = lambda s: None  # the policy's waits are not the point here
    yield database
    database.disconnect()


def user_of(db, email: str) -> dict | None:
    return db.mongo.users.find_one({"email": email})


def test_a_create_stored_while_its_retry_ran_out_of_time_is_reported_done_and_recorded(fast):
    fake = script(fast, "User", insert_one=["land", "expire"])
    user = fast.create("User", user_data(email="stored@x.test"), timeout_ms=BUDGET_MS)
    assert fake.calls["insert_one"] == 2
    assert user_of(fast, "stored@x.test")["_id"] == user.id
    assert trail(fast, "User", user.id) == [("create", 0)]
    assert fast.executor.runtime.changes.pending == 0


def test_a_create_that_never_landed_is_reported_failed_and_leaves_nothing(fast):
    script(fast, "User", insert_one=["lose", "expire"])
    with pytest.raises(OperationTimeoutError):
        fast.create("User", user_data(email="never@x.test"), timeout_ms=BUDGET_MS)
    assert user_of(fast, "never@x.test") is None
    assert records(fast) == [] and fast.executor.runtime.changes.pending == 0


def test_when_the_read_back_fails_too_the_outcome_is_unknown_and_the_record_is_queued(fast):
    script(fast, "User", insert_one=["land", "expire"], find=["lose", "lose", "lose"])
    with pytest.raises(WriteOutcomeUnknown) as caught:
        fast.create("User", user_data(email="unknown@x.test"), timeout_ms=BUDGET_MS)
    stored = user_of(fast, "unknown@x.test")
    assert isinstance(caught.value, DatabaseConnectionError) and caught.value.applied is None
    assert caught.value.ids == [stored["_id"]] and "reconcile_changes()" in str(caught.value)
    assert records(fast) == [] and fast.executor.runtime.changes.pending == 1
    assert fast.reconcile_changes()["pending"] == 1
    assert trail(fast, "User", stored["_id"]) == [("create", 0)]


def test_an_unknown_create_that_did_not_land_has_its_queued_record_dropped(fast):
    script(fast, "User", insert_one=["lose", "expire"], find=["lose", "lose", "lose"])
    with pytest.raises(WriteOutcomeUnknown):
        fast.create("User", user_data(email="gone@x.test"), timeout_ms=BUDGET_MS)
    assert fast.executor.runtime.changes.pending == 1
    assert fast.reconcile_changes()["pending"] == 0
    assert records(fast) == [] and fast.executor.runtime.changes.pending == 0


def test_create_many_stored_while_its_retry_ran_out_is_reported_done(fast):
    script(fast, "User", insert_many=["land", "expire"])
    result = fast.create_many("User", [user_data(name="Batch") for _ in range(3)], timeout_ms=BUDGET_MS)
    assert len(result) == 3 and not result.failed
    assert len(records(fast, action="create")) == 3


def test_a_delete_whose_outcome_is_unknown_keeps_its_intent_for_reconcile(fast, tmp_path):
    user = fast.create("User", user_data())
    backup.backup(fast, tmp_path / "repo")
    script(fast, "User", delete_one=["land", "expire"], find_one=["pass", "lose", "lose", "lose"])
    with pytest.raises(WriteOutcomeUnknown):
        fast.delete("User", {"id": user.id}, timeout_ms=BUDGET_MS)
    assert fast.mongo.users.find_one({"_id": user.id}) is None
    assert fast.reconcile_changes()["intents"] == {"confirmed": 1, "dropped": 0}
    assert trail(fast, "User", user.id) == [("create", 0), ("delete", 1)]
    backup.backup(fast, tmp_path / "repo")
    assert restored(tmp_path).find_one("User", {"id": user.id}) is None


def test_a_delete_stored_while_its_retry_ran_out_is_reported_done_and_recorded(fast):
    user = fast.create("User", user_data())
    script(fast, "User", delete_one=["land", "expire"])
    assert fast.delete("User", {"id": user.id}, timeout_ms=BUDGET_MS) is True
    assert trail(fast, "User", user.id) == [("create", 0), ("delete", 1)]


def test_a_list_change_whose_reply_was_lost_is_found_by_its_op_id_not_replayed(fast):
    """A list change is never retried (a second $push would push twice): when its reply is lost
    its outcome is read back by the op id it stamped, and the call reports the stored result."""
    user = fast.create("User", user_data())
    chart = fast.create("BirthChart", chart_data(user.id))
    fake = script(fast, "BirthChart", find_one_and_update=["land"])
    updated = fast.update("BirthChart", {"id": chart.id}, PUSH)
    assert fake.calls["find_one_and_update"] == 1 and len(updated.positions) == 1
    assert len(fast.find_one("BirthChart", {"id": chart.id}).positions) == 1
    assert [a for a, _ in trail(fast, "BirthChart", chart.id)] == ["create", "update"]


def test_a_write_that_never_left_the_client_is_reported_failed_without_a_read_back(fast):
    """An open breaker (or a bound already run out) means the write was never sent: its failure
    is known, so nothing is read back and nothing is queued."""
    fake = script(fast, "User", insert_one=["lose"] * 10, find=[])
    breaker = fast.executor.runtime.breaker
    for _ in range(fast.config.breaker_threshold):
        breaker.record_failure(pm.AutoReconnect("down"))
    with pytest.raises(DatabaseConnectionError) as caught:
        fast.create("User", user_data())
    assert not isinstance(caught.value, WriteOutcomeUnknown)
    assert fake.calls == {"insert_one": 0, "find": 0}
    assert fast.executor.runtime.changes.pending == 0


def test_update_many_cut_off_by_its_bound_records_and_reports_what_it_updated(fast):
    for i in range(3):
        fast.create("User", user_data(name=f"Batch{i}", status="active"))

    class HalfThenExpire:
        """update_many applies to the first document only, loses the reply, then times out."""

        def __init__(self, real):
            self.real, self.calls = real, 0

        def __getattr__(self, name):
            attr = getattr(self.real, name)
            if name != "update_many":
                return attr

            def update_many(filt, update, **kw):
                self.calls += 1
                if self.calls == 1:
                    first = self.real.find_one(filt, {"_id": 1})
                    self.real.update_one({"_id": first["_id"]}, update, **kw)
                    raise pm.AutoReconnect("connection lost mid-way")
                bound = timeouts.current_bound(None)
                while not bound.expired():
                    time.sleep(0.001)
                raise pm.NetworkTimeout("timed out")

            return update_many

    rt = fast.executor.runtime
    info = rt.registry.resolve("User")
    rt.gateway.collections[info.collection] = HalfThenExpire(rt.coll(info))
    with pytest.raises(OperationTimeoutError, match="1 document\\(s\\) were updated before it failed"):
        fast.update_many("User", {"status": "active"}, {"status": "inactive"}, timeout_ms=BUDGET_MS)
    [changed] = list(fast.mongo.users.find({"status": "inactive"}))
    assert trail(fast, "User", changed["_id"]) == [("create", 0), ("update", 1)]
    assert len(records(fast, action="update")) == 1


def test_reconcile_tells_the_caches_of_a_delete_the_killed_writer_never_announced(monkeypatch):
    """The process killed between its delete and the confirmation announced nothing: another
    process's cache (here, the cache that outlives the simulated restart) still answered with the
    deleted user. Reconcile, confirming the delete, announces the model as changed."""
    db = new_db(cache_ttl_s=60)
    user = db.create("User", user_data())
    assert db.find_one("User", {"id": user.id}, cache=True) is not None  # cached
    die_at(monkeypatch, "confirm")
    with pytest.raises(Killed):
        db.delete("User", {"id": user.id})
    monkeypatch.undo()
    restart(db)
    assert db.find_one("User", {"id": user.id}, cache=True) is not None  # nobody heard of the delete
    assert db.reconcile_changes()["intents"] == {"confirmed": 1, "dropped": 0}
    assert db.find_one("User", {"id": user.id}, cache=True) is None


def test_reconcile_tells_the_caches_of_a_write_whose_record_it_rebuilt(monkeypatch):
    db = new_db(cache_ttl_s=60)
    user = db.create("User", user_data())
    assert db.find("User", {"name": "Renamed"}, cache=True) == []  # cached
    db.mongo.users.update_one({"_id": user.id}, {"$set": {"name": "Renamed"}, "$inc": {"_rev": 1}})  # its record lost
    assert db.find("User", {"name": "Renamed"}, cache=True) == []
    assert db.reconcile_changes()["rebuilt"]["User"] == 1
    assert [u.id for u in db.find("User", {"name": "Renamed"}, cache=True)] == [user.id]
