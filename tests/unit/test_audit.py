"""The audit trail: one change record per written document, in the write's transaction, field names only."""

from __future__ import annotations

import datetime as dt

import pytest

from astro_db.errors import DuplicateKeyError, ValidationError
from astro_db.changes import CHANGES_COLLECTION
from astro_db.security import request_context

from .security_data import new_db, user_data


@pytest.fixture
def db():
    database = new_db()
    yield database
    database.disconnect()


def entries(db):
    return list(db.mongo[CHANGES_COLLECTION].find({"audit": True}, sort=[("t", 1), ("_id.r", 1)]))


def test_each_write_leaves_one_entry_per_document(db):
    user = db.create("User", user_data())
    many = db.create_many("User", [user_data(), user_data()])
    db.update("User", {"id": user.id}, {"name": "Annie"})
    assert db.update_many("User", {"id": {"$in": [u.id for u in many]}}, {"status": "inactive"}) == 2
    db.delete("User", {"id": many[0].id})
    db.delete_many("User", {"id": many[1].id})
    actions = [(e["action"], e["documentId"]) for e in entries(db)]
    assert actions == [
        ("create", user.id), ("create", many[0].id), ("create", many[1].id),
        ("update", user.id), ("update", many[0].id), ("update", many[1].id),
        ("delete", many[0].id), ("delete", many[1].id),
    ]


def test_audit_trail_reads_back_oldest_first_with_field_names_only(db):
    actor = db.as_actor("svc-onboarding", roles=["writer"], request_id="req-1")
    user = actor.create("User", user_data(email="secret.person@example.com", name="Secret Person"))
    actor.update("User", {"id": user.id}, {"name": "Another Secret"})
    trail = db.audit_trail("User", str(user.id))
    assert [e["action"] for e in trail] == ["create", "update"]
    first, second = trail
    assert set(first) >= {"time", "actor", "action", "model", "documentId", "fields"}
    assert first["actor"] == "svc-onboarding" and first["requestId"] == "req-1"
    assert first["model"] == "User" and first["documentId"] == str(user.id)
    assert "email" in first["fields"] and second["fields"] == ["name"]
    assert isinstance(first["time"], dt.datetime) and first["time"] <= second["time"]
    raw = repr([{k: v for k, v in e.items() if k != "doc"} for e in entries(db)])  # the audit part
    assert "secret.person" not in raw and "Secret" not in raw


def test_a_request_context_tags_entries(db):
    with request_context("req-77"):
        user = db.create("User", user_data())
    assert db.audit_trail("User", user.id)[0]["requestId"] == "req-77"


def test_a_failed_write_leaves_no_entry(db):
    user = db.create("User", user_data(email="dup@example.com"))
    count = len(entries(db))
    with pytest.raises(ValidationError):
        db.create("User", {"email": "not-an-email", "name": "X"})
    with pytest.raises(DuplicateKeyError):
        db.create("User", user_data(email="dup@example.com"))
    with pytest.raises(ValidationError):
        db.update("User", {"id": user.id}, {"status": "bogus"})
    assert db.update("User", {"name": "nobody"}, {"name": "x"}) is None
    assert db.delete("User", {"name": "nobody"}) is False
    assert len(entries(db)) == count


def test_create_many_audits_only_the_documents_written(db):
    db.create("User", user_data(email="taken@example.com"))
    result = db.create_many("User", [user_data(), {"email": "bad"}, user_data(email="taken@example.com")])
    assert len(result) == 1 and len(result.failed) == 2
    assert [e["documentId"] for e in entries(db)][1:] == [result[0].id]


def test_an_aborted_transaction_leaves_no_entry(db):
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            db.create("User", user_data(), transaction=tx)
            raise RuntimeError("abort")
    assert entries(db) == []
    with db.transaction() as tx:
        user = db.create("User", user_data(), transaction=tx)
    assert [e["documentId"] for e in entries(db)] == [user.id]


def test_audit_cannot_be_skipped_per_call_but_can_be_turned_off_in_config():
    quiet = new_db(audit=False)
    user = quiet.create("User", user_data())
    assert entries(quiet) == [] and quiet.audit_trail("User", user.id) == []
    quiet.disconnect()


def test_retention_becomes_a_ttl_index_on_time(db):
    indexes = db.mongo[CHANGES_COLLECTION].index_information()
    ttl = [i for i in indexes.values() if i.get("expireAfterSeconds") is not None]
    assert ttl and ttl[0]["key"] == [("time", 1)]
    assert ttl[0]["expireAfterSeconds"] == db.config.audit_retention_days * 86400


def test_no_retention_means_no_ttl_index():
    keep = new_db(audit_retention_days=None)
    indexes = keep.mongo[CHANGES_COLLECTION].index_information()
    assert not [i for i in indexes.values() if "expireAfterSeconds" in i]
    keep.disconnect()
