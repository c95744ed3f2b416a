"""Bad input never gets through and never changes data, on both backends.

What is broken: the input. ``tests/data/bad_inputs.json`` holds bad calls of every public
method (unknown models, malformed ids, forbidden operators, invalid values, duplicate keys,
bad options, transaction misuse); a few cases that need live objects are built below.
What must hold: each raises the named ``astro_db.errors`` type (``create_many`` reports every
item in ``result.failed`` instead), and a snapshot of every collection is the same afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from astro_db import errors

CORPUS = json.loads((Path(__file__).resolve().parent.parent / "data" / "bad_inputs.json").read_text())["cases"]


def snapshot(db) -> dict[str, list[Any]]:
    """Every document of every collection (audit trail and journal included), in _id order."""
    database = db.mongo
    return {name: sorted(database[name].find({}), key=lambda d: str(d["_id"]))
            for name in sorted(database.list_collection_names())}


@pytest.fixture
def seeded(db):
    """Data the bad calls could damage: two users (one's email is the duplicate-key target)."""
    user = db.create("User", {"email": "seed@bad.test", "name": "Seed"})
    db.create("User", {"email": "other@bad.test", "name": "Other"})
    db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-01-01T00:00:00Z", "energyLevel": 50,
                                   "recommendations": ["Rest"], "summary": "calm"})
    db.seed = {"SEED_ID": str(user.id), "SEED_EMAIL": user.email}
    return db


def fill(value: Any, seed: dict[str, str]) -> Any:
    if isinstance(value, str):
        return seed.get(value, value)
    if isinstance(value, list):
        return [fill(v, seed) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, seed) for k, v in value.items()}
    return value


def test_the_corpus_covers_every_public_method():
    methods = {case["method"] for case in CORPUS}
    assert {"create", "create_many", "find", "find_one", "update", "update_many", "delete", "delete_many",
            "count", "aggregate", "start_transaction", "commit_transaction", "rollback_transaction"} <= methods


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_bad_input_raises_an_astro_db_error_and_changes_nothing(seeded, case):
    db = seeded
    if db.test_backend in case.get("skip", {}):
        pytest.skip(case["skip"][db.test_backend])
    args = fill(case["args"], db.seed)
    kwargs = fill(case.get("kwargs", {}), db.seed)
    before = snapshot(db)
    if "failed" in case:
        result = getattr(db, case["method"])(*args, **kwargs)
        assert list(result) == [] and len(result.failed) == case["failed"]
        assert all(isinstance(error, errors.AstroDBError) for _, error in result.failed)
    else:
        with pytest.raises(getattr(errors, case["error"])) as raised:
            getattr(db, case["method"])(*args, **kwargs)
        assert str(raised.value), "an error a person can act on has a message"
    assert snapshot(db) == before


def test_a_finished_transaction_cannot_be_used_again(seeded):
    db = seeded
    tx = db.start_transaction()
    db.commit_transaction(tx)
    before = snapshot(db)
    with pytest.raises(errors.TransactionError):
        db.create("User", {"email": "late@b.co", "name": "Late"}, transaction=tx)
    with pytest.raises(errors.TransactionError):
        db.commit_transaction(tx)
    assert snapshot(db) == before


def test_a_transaction_of_another_database_is_refused(seeded):
    from astro_db import Database

    db = seeded
    with Database("mongomock://localhost/other_db") as other:
        tx = other.start_transaction()
        before = snapshot(db)
        with pytest.raises(errors.TransactionError, match="another Database"):
            db.create("User", {"email": "x@b.co", "name": "X"}, transaction=tx)
        other.rollback_transaction(tx)
    assert snapshot(db) == before
