"""Small things a user meets on day one: reprs, a model given as None, what stats counts."""

from __future__ import annotations

import datetime as _dt

import pytest
from click.testing import CliRunner

from astro_db import Database
from astro_db.changes import CHANGES_COLLECTION
from astro_db.cli import cli
from astro_db.errors import UnknownModelError
from astro_db.models import BirthChart, User
from astro_db.monitoring.storage import INTERNAL_COLLECTIONS
from astro_db.security.audit import AUDIT_COLLECTION


@pytest.fixture
def db():
    with Database("mongomock://localhost/day_one") as database:
        yield database


def test_a_user_repr_shows_model_id_and_masked_identity(db):
    user = db.create("User", {"email": "ann@example.com", "name": "Annabel"})
    text = repr(user)
    assert text == f"<User {user.id} email='a***@example.com' status='active'>"
    assert "Annabel" not in text and str(user) == text


def test_an_unsaved_or_child_document_repr_is_still_informative(db):
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    insight = db.create("PlanetaryInsight", {"userId": user.id, "date": _dt.datetime(2025, 1, 2, tzinfo=_dt.timezone.utc),
                                             "energyLevel": 70, "recommendations": ["rest"]})
    assert repr(insight) == f"<PlanetaryInsight {insight.id} userId={user.id} date=2025-01-02T00:00:00+00:00 energyLevel=70>"
    assert repr(User(email="b@example.com", name="B")).startswith("<User (unsaved) email='b***@example.com'")
    assert repr(BirthChart()) == "<BirthChart (unsaved) houseSystem='placidus'>"


@pytest.mark.parametrize(("model", "expected"), [
    (None, "no model given; name one of User, BirthChart"),
    (42, "a model is a name or a model class, got int 42"),
    (dict, "dict is not an astro_db model"),
    ("Horoscope", "unknown model 'Horoscope'"),
])
def test_a_model_that_is_not_a_name_says_what_it_got(db, model, expected):
    with pytest.raises(UnknownModelError) as info:
        db.find(model, {})
    assert str(info.value).startswith(expected) and "User" in str(info.value) and "NoneType" not in str(info.value)


def test_stats_lists_the_audit_log_and_journal_apart_from_the_models(db):
    db.create("User", {"email": "ann@example.com", "name": "Ann"})
    data = db.storage_stats()
    assert [c["collection"] for c in data["collections"]] == ["users", "birthCharts", "planetaryInsights", "timingRecommendations"]
    internal = {c["collection"]: c["count"] for c in data["internal"]}
    assert internal == {CHANGES_COLLECTION: 1}  # one change record: the audit and journal parts together


def test_stats_lists_the_migration_ledger_as_internal(db):
    db.mongo["astroMigrations"].insert_one({"_id": 1, "version": 1, "status": "applied"})
    data = db.storage_stats()
    assert "astroMigrations" not in [c["collection"] for c in data["collections"]]
    assert {c["collection"]: c["count"] for c in data["internal"]}["astroMigrations"] == 1


def test_the_internal_collections_are_the_ones_the_service_writes():
    assert set(INTERNAL_COLLECTIONS) == {CHANGES_COLLECTION, AUDIT_COLLECTION, "changeJournal",  # + the legacy two
                                         "astroErasures", "astroMigrations"}  # the erasure and migration ledgers


def test_stats_command_marks_internal_rows_and_says_what_the_total_covers(monkeypatch):
    report = {"database": "astro", "backend": "server", "db": {"objects": 7, "dataSize": 700},
              "collections": [{"model": "User", "collection": "users", "count": 3}],
              "internal": [{"model": None, "collection": "auditLog", "count": 4}],
              "notes": ["the database totals include astro_db's own auditLog (listed under internal)"]}
    monkeypatch.setattr(Database, "storage_stats", lambda db: report)
    result = CliRunner().invoke(cli, ["--url", "mongomock://localhost/day_one_cli", "stats"])
    assert result.exit_code == 0, result.output
    assert [line.split()[:3] for line in result.output.splitlines() if "auditLog" in line][0] == ["(internal)", "auditLog", "4"]
    assert "total, every collection: 7 documents" in result.output
    assert "note: the database totals include astro_db's own auditLog" in result.output
