"""Generated junk thrown at create / find / update: only AstroDBError comes out, and whatever was
accepted leaves every stored document valid (junk rejected changes nothing)."""

from __future__ import annotations

import uuid

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database, errors

KEYS = st.sampled_from(["email", "name", "status", "energyLevel", "userId", "date", "windows", "positions",
                        "birthData", "birthData.date", "id", "_id", "$where", "$set", "$inc", "$expr",
                        "__proto__", "a.b", "$gt", "recommendations", "nope"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=40), st.binary(max_size=10), st.sampled_from(["0" * 24, "2026-01-01", "Sun"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
JUNK = st.one_of(VALUES, st.dictionaries(KEYS, VALUES, max_size=6))
MODELS = st.sampled_from(["User", "BirthChart", "PlanetaryInsight", "TimingRecommendation"])


@pytest.fixture(scope="module")
def fuzz_db():
    with Database(f"mongomock://localhost/fuzz{uuid.uuid4().hex[:6]}") as db:
        db.create("User", {"email": "keep@example.com", "name": "Keep"})
        yield db


def _snapshot(db):
    return {name: list(db.collection(name).find()) for name in ("User", "BirthChart", "PlanetaryInsight", "TimingRecommendation")}


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=MODELS, junk=JUNK, other=JUNK)
def test_junk_only_raises_astro_errors_and_changes_nothing(fuzz_db, model, junk, other):
    before = _snapshot(fuzz_db)
    for call in (lambda: fuzz_db.find(model, junk), lambda: fuzz_db.count(model, junk),
                 lambda: fuzz_db.update(model, junk, other), lambda: fuzz_db.update_many(model, junk, other),
                 lambda: fuzz_db.delete(model, junk), lambda: fuzz_db.aggregate(model, junk)):
        try:
            call()
        except errors.AstroDBError:
            pass
    try:
        created = fuzz_db.create(model, junk)
    except errors.AstroDBError:
        created = None
    if created is not None:  # junk that happens to be valid is fine: remove it again
        fuzz_db.collection(model).delete_one({"_id": created.id})
    after = _snapshot(fuzz_db)
    assert sum(map(len, after.values())) <= sum(map(len, before.values()))
    from astro_db.models import codec
    from astro_db.registry import default_registry

    for name, docs in after.items():
        cls = default_registry().resolve(name).cls
        for doc in docs:
            codec.hydrate(cls, doc).validate()  # accepted updates kept the document valid
    if not fuzz_db.count("User"):
        fuzz_db.create("User", {"email": "keep@example.com", "name": "Keep"})
