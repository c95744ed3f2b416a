"""Change records of documents whose ``_id`` values print alike, against the server's own count.

Documents another client (the Node service, a script) stored under ``_id`` values that are not
ObjectIds may print alike: ``1`` and ``"1"``, an ObjectId and its hex string, ``2.5`` and
``"2.5"``. A record's ``_id`` names the document by that text, its revision and the writing
operation's id, so before, an ``update_many`` or ``delete_many`` over two such documents (one
operation, one op id, the same revision) built one record ``_id`` for both: the second record
met the first's duplicate key, which the service takes for its own retried insert, and was
silently never written (and ``reconcile_changes()`` rebuilt it under a colliding ``_id`` too).
Every write must leave exactly one record per document it changed, found by the server by the
document's ``_id``."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from bson import Int64, ObjectId
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database

UTC = dt.timezone.utc
_OID = ObjectId("6b1640000000000000000001")
_UUID = uuid.UUID("00000000-0000-4000-8000-000000000001")
# values that print alike in pairs (no two of them one _id to the server: 1 and 1.0 would be;
# no document _id, which the embedded backend cannot update)
ALIKE = [1, "1", 2.5, "2.5", _OID, str(_OID), Int64(7), "7", _UUID, str(_UUID),
         "x/1", "x", '"1"', '{"$numberInt": "1"}', "None", None]
_runs = itertools.count()


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=st.lists(st.sampled_from(range(len(ALIKE))), min_size=1, max_size=8, unique=True), delete=st.booleans())
def test_every_document_a_write_changed_has_its_own_record(ids, delete):
    values = [ALIKE[n] for n in ids]
    with Database(f"mongomock://localhost/record_ids_{next(_runs)}") as db:
        owner = ObjectId()
        db.mongo["planetaryInsights"].insert_many([
            {"_id": value, "userId": owner, "date": dt.datetime(2026, 12, 1, tzinfo=UTC) + dt.timedelta(days=n),
             "energyLevel": 10, "recommendations": ["Rest"], "__v": 0} for n, value in enumerate(values)])
        assert db.update_many("PlanetaryInsight", {"userId": owner}, {"energyLevel": 20}) == len(values)
        if delete:
            assert db.delete_many("PlanetaryInsight", {"userId": owner}) == len(values)
        records = db.mongo["astroChanges"]
        for value in values:
            assert records.count_documents({"documentId": value, "action": "update", "rev": 1}) == 1, value
            if delete:
                assert records.count_documents({"documentId": value, "action": "delete", "intent": {"$exists": False}}) == 1
        assert records.count_documents({}) == len(values) * (2 if delete else 1)
        rebuilt = db.reconcile_changes()["rebuilt"]["PlanetaryInsight"]
        assert rebuilt == 0  # nothing was missing
