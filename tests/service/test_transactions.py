"""Transactions: explicit, context manager and retried units, on the embedded backend and live.

Neither the embedded backend nor nx-27017 isolates concurrent sessions; isolation (a second
client does not see uncommitted writes) is shown in the mongodb tier below.
"""

from __future__ import annotations

import os

import pytest
from pymongo.errors import OperationFailure

from astro_db import Database, errors

from .conftest import chart_data, insight_data


def new_user(db, tx=None, email="tx@example.com"):
    return db.create("User", {"email": email, "name": "Tx"}, transaction=tx)


def test_committed_writes_are_visible(db):
    tx = db.start_transaction()
    user = new_user(db, tx)
    db.create("BirthChart", chart_data(user.id), transaction=tx)
    db.commit_transaction(tx)
    assert db.count("User") == 1 and db.count("BirthChart", {"userId": user.id}) == 1


def test_rolled_back_writes_are_gone(db):
    tx = db.start_transaction()
    new_user(db, tx)
    db.rollback_transaction(tx)
    assert db.count("User") == 0


def test_a_transaction_reads_its_own_writes(db):
    with db.transaction() as tx:
        user = new_user(db, tx)
        assert db.find_one("User", {"id": user.id}, transaction=tx).email == "tx@example.com"
        assert db.count("User", {}, transaction=tx) == 1
        db.update("User", {"id": user.id}, {"name": "Renamed"}, transaction=tx)
        assert db.find_one("User", {"id": user.id}, transaction=tx).name == "Renamed"


def test_context_manager_aborts_on_an_exception_mid_way_through_several_models(db, user):
    with pytest.raises(RuntimeError, match="boom"):
        with db.transaction() as tx:
            db.create("BirthChart", chart_data(user.id), transaction=tx)
            db.create("PlanetaryInsight", insight_data(user.id), transaction=tx)
            db.update("User", {"id": user.id}, {"name": "Changed"}, transaction=tx)
            db.delete("User", {"id": user.id}, transaction=tx)
            raise RuntimeError("boom")
    assert db.count("BirthChart") == 0 and db.count("PlanetaryInsight") == 0
    assert db.find_one("User", {"id": user.id}).name == "Ann"


def test_a_failed_write_inside_aborts_everything(db, user):
    with pytest.raises(errors.ValidationError):
        with db.transaction() as tx:
            db.create("BirthChart", chart_data(user.id), transaction=tx)
            db.create("PlanetaryInsight", insight_data(user.id, energyLevel=500), transaction=tx)
    assert db.count("BirthChart") == 0


def test_with_transaction_returns_the_result(db):
    user, chart = db.with_transaction(lambda tx: (new_user(db, tx), "done"))
    assert chart == "done" and db.count("User", {"id": user.id}) == 1


def test_with_transaction_retries_transient_errors(db):
    calls = []

    def unit(tx, email):
        calls.append(tx)
        user = new_user(db, tx, email=email)
        if len(calls) == 1:
            exc = OperationFailure("WriteConflict", 112)
            exc._error_labels = {"TransientTransactionError"}
            raise errors.TransactionError("conflict") from exc
        return user

    user = db.with_transaction(unit, "retry@example.com")
    assert len(calls) == 2 and calls[0].state == "aborted"
    assert db.count("User") == 1 and user.email == "retry@example.com"


def test_with_transaction_gives_up_on_other_errors_at_once(db):
    calls = []

    def unit(tx):
        calls.append(1)
        new_user(db, tx)
        raise ValueError("not transient")

    with pytest.raises(ValueError):
        db.with_transaction(unit)
    assert calls == [1] and db.count("User") == 0


def test_unit_of_work_create_user_with_chart(db):
    user, chart = db.create_user_with_chart({"email": "pair@example.com", "name": "P"}, chart_data("0" * 24))
    assert chart.user_id == user.id
    with pytest.raises(errors.ValidationError):
        db.create_user_with_chart({"email": "pair2@example.com", "name": "P"},
                                  chart_data("0" * 24, birthData={"date": "2999-01-01", "timezone": "UTC"}))
    assert db.count("User", {"email": "pair2@example.com"}) == 0


def test_unit_of_work_delete_user_cascade(db, user):
    other = db.create("User", {"email": "other@example.com", "name": "O"})
    for owner in (user, other):
        db.create("BirthChart", chart_data(owner.id))
        db.create("PlanetaryInsight", insight_data(owner.id))
    counts = db.delete_user_cascade(str(user.id))
    assert counts == {"BirthChart": 1, "PlanetaryInsight": 1, "TimingRecommendation": 0, "User": 1}
    assert db.count("BirthChart") == 1 and db.count("User") == 1
    with pytest.raises(errors.ValidationError):
        db.delete_user_cascade("not-an-id")


# --- misuse ------------------------------------------------------------------------------------


def test_using_a_finished_transaction_is_an_error(db):
    tx = db.start_transaction()
    db.commit_transaction(tx)
    with pytest.raises(errors.TransactionError, match="already committed"):
        db.commit_transaction(tx)
    with pytest.raises(errors.TransactionError, match="already committed"):
        db.create("User", {"email": "late@example.com", "name": "L"}, transaction=tx)
    with pytest.raises(errors.TransactionError):
        db.rollback_transaction(tx)
    assert db.count("User") == 0


def test_a_transaction_from_another_database_is_refused(db):
    with Database("mongomock://localhost/other") as other:
        tx = other.start_transaction()
        with pytest.raises(errors.TransactionError, match="another Database"):
            db.create("User", {"email": "x@example.com", "name": "X"}, transaction=tx)
        other.rollback_transaction(tx)


def test_not_a_transaction_is_refused(db):
    with pytest.raises(errors.TransactionError):
        db.commit_transaction("tx")


def test_secondary_reads_are_refused_in_a_transaction(db):
    with pytest.raises(errors.TransactionError, match="primary"):
        db.start_transaction(read_preference="secondary")


def test_standalone_servers_code_20_is_transaction_not_supported(db, monkeypatch):
    """A standalone mongod answers the first operation of a transaction with code 20."""
    tx = db.start_transaction()
    coll_cls = type(db.collection("User"))

    def standalone_reply(self, *args, **kwargs):
        raise OperationFailure("Transaction numbers are only allowed on a replica set member or mongos", 20,
                               {"ok": 0, "code": 20, "codeName": "IllegalOperation"})

    monkeypatch.setattr(coll_cls, "insert_one", standalone_reply)
    with pytest.raises(errors.TransactionNotSupportedError, match="replica set"):
        db.create("User", {"email": "s@example.com", "name": "S"}, transaction=tx)
    monkeypatch.undo()
    db.rollback_transaction(tx)
    assert db.count("User") == 0


@pytest.mark.mongodb
def test_a_second_client_does_not_see_uncommitted_writes():
    """A write made in a transaction is invisible to a second client until the commit, then
    visible: the service really sends every call with the transaction's session.

    Needs a real replica set (ASTRO_DB_TEST_URI; see docs/testing.md): the embedded backend
    and nx-27017 commit and abort atomically but do not isolate concurrent sessions.
    """
    import uuid

    base = os.environ["ASTRO_DB_TEST_URI"]
    name = f"astro_iso_{uuid.uuid4().hex[:6]}"
    with Database(base, database=name) as a, Database(base, database=name) as b:
        try:
            tx = a.start_transaction()
            a.create("User", {"email": "iso@example.com", "name": "I"}, transaction=tx)
            assert b.count("User") == 0
            a.commit_transaction(tx)
            assert b.count("User") == 1
        finally:
            a.mongo.client.drop_database(name)
