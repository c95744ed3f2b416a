"""The CRUD service keyed by model name, on the embedded backend and on a live server."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from bson import ObjectId

from astro_db import errors
from astro_db.models import BirthChart, User

from .conftest import chart_data, insight_data, timing_data

# --- create and read ---------------------------------------------------------------------------


def test_create_returns_a_validated_instance_and_stores_node_compatible_types(db):
    user = db.create("User", {"email": "  Ann@Example.COM ", "name": "Ann"})
    assert isinstance(user, User) and user.email == "ann@example.com"
    raw = db.collection("User").find_one({"_id": user.id})
    assert raw["email"] == "ann@example.com" and raw["__v"] == 0 and raw["status"] == "active"
    assert isinstance(raw["createdAt"], dt.datetime) and raw["createdAt"] == raw["updatedAt"]

    chart = db.create("BirthChart", chart_data(user.id))
    raw = db.collection("BirthChart").find_one({"_id": chart.id})
    assert isinstance(raw["userId"], ObjectId) and raw["userId"] == user.id
    assert isinstance(raw["birthData"]["date"], dt.datetime)
    assert isinstance(raw["positions"][0]["_id"], ObjectId)  # Mongoose gives every sub-document one
    assert raw["birthData"]["location"]["coordinates"] == {"type": "Point", "coordinates": [-0.1276, 51.5072]}


@pytest.mark.parametrize("name", ["BirthChart", "birth_chart", "birthCharts", BirthChart])
def test_model_names_resolve_in_every_spelling(db, user, name):
    db.create("BirthChart", chart_data(user.id))
    assert db.count(name, {"userId": user.id}) == 1


def test_unknown_model_lists_the_valid_ones(db):
    with pytest.raises(errors.UnknownModelError, match="BirthChart"):
        db.find("Horoscope", {})


@pytest.mark.parametrize("field", ["energy_level", "energyLevel"])
def test_field_names_in_python_or_stored_spelling(db, user, field):
    db.create("PlanetaryInsight", insight_data(user.id, energyLevel=80))
    db.create("PlanetaryInsight", insight_data(user.id, day=1, energyLevel=20))
    assert [i.energy_level for i in db.find("PlanetaryInsight", {field: {"$gte": 70}})] == [80]


def test_dotted_paths_ids_and_iso_dates(db, user):
    chart = db.create("BirthChart", chart_data(user.id))
    assert db.find_one("BirthChart", {"birthData.date": "1990-05-01T10:30:00Z"}).id == chart.id
    assert db.find_one("BirthChart", {"birth_data.timezone": "Europe/London"}).id == chart.id
    assert db.find_one("BirthChart", {"id": str(chart.id)}).id == chart.id
    assert db.find_one("BirthChart", {"_id": chart.id}).id == chart.id
    assert db.find_one("BirthChart", {"userId": str(user.id)}).id == chart.id


def test_find_sort_skip_limit_projection_and_lean(db, user):
    db.create_many("PlanetaryInsight", [insight_data(user.id, day=d, energyLevel=10 * d) for d in range(6)])
    rows = db.find("PlanetaryInsight", {"userId": user.id}, sort=[("date", -1)], skip=1, limit=3)
    assert [r.energy_level for r in rows] == [40, 30, 20]
    lean = db.find("PlanetaryInsight", {"userId": user.id}, sort=[("energyLevel", 1)], limit=2,
                   projection=["energyLevel"], lean=True)
    assert lean == [{"_id": lean[0]["_id"], "energyLevel": 0}, {"_id": lean[1]["_id"], "energyLevel": 10}]
    assert isinstance(lean[0]["_id"], ObjectId)


def test_find_one_returns_none_when_nothing_matches(db):
    assert db.find_one("User", {"email": "nobody@example.com"}) is None


def test_to_dict_is_json_ready(db, user):
    timing = db.create("TimingRecommendation", timing_data(user.id))
    out = timing.to_dict()
    json.dumps(out)
    assert out["userId"] == str(user.id) and out["windows"][0]["start"].endswith("Z")


def test_create_many_reports_failures_and_inserts_the_rest(db):
    db.create("User", {"email": "taken@example.com", "name": "T"})
    result = db.create_many("User", [
        {"email": "a1@example.com", "name": "A"},
        {"email": "not-an-email", "name": "B"},
        {"email": "taken@example.com", "name": "C"},
        {"email": "a2@example.com", "name": "D"},
    ])
    assert [u.email for u in result] == ["a1@example.com", "a2@example.com"]
    assert [i for i, _ in result.failed] == [1, 2]
    assert isinstance(result.failed[0][1], errors.ValidationError)
    assert isinstance(result.failed[1][1], errors.DuplicateKeyError)
    assert db.count("User") == 3


def test_count_and_aggregate(db, user):
    db.create_many("PlanetaryInsight", [insight_data(user.id, day=d, energyLevel=40 + d) for d in range(3)])
    assert db.count("PlanetaryInsight", {"energyLevel": {"$gt": 40}}) == 2
    out = db.aggregate("PlanetaryInsight", [
        {"$match": {"userId": str(user.id)}},
        {"$group": {"_id": None, "avg": {"$avg": "$energyLevel"}, "n": {"$sum": 1}}},
    ])
    assert out[0]["avg"] == 41 and out[0]["n"] == 3


# --- update and delete -------------------------------------------------------------------------


def test_update_sets_validates_and_touches_updated_at(db, user):
    ins = db.create("PlanetaryInsight", insight_data(user.id))
    updated = db.update("PlanetaryInsight", {"id": str(ins.id)}, {"energyLevel": 85})
    assert updated.energy_level == 85 and updated.updated_at >= ins.updated_at
    assert updated.created_at == ins.created_at


def test_update_returns_none_when_nothing_matches(db):
    assert db.update("User", {"id": str(ObjectId())}, {"name": "X"}) is None


def test_update_rejects_invalid_values_and_writes_nothing(db, user):
    ins = db.create("PlanetaryInsight", insight_data(user.id))
    with pytest.raises(errors.ValidationError) as info:
        db.update("PlanetaryInsight", {"id": ins.id}, {"energyLevel": 150})
    assert "energyLevel" in info.value.errors and "150" in info.value.errors["energyLevel"]
    assert db.find_one("PlanetaryInsight", {"id": ins.id}).energy_level == 50


def test_inc_can_never_leave_the_range(db, user):
    ins = db.create("PlanetaryInsight", insight_data(user.id, energyLevel=90))
    assert db.update("PlanetaryInsight", {"id": ins.id}, {"$inc": {"energyLevel": 10}}).energy_level == 100
    with pytest.raises(errors.ValidationError, match="energyLevel"):
        db.update("PlanetaryInsight", {"id": ins.id}, {"$inc": {"energyLevel": 1}})
    assert db.find_one("PlanetaryInsight", {"id": ins.id}).energy_level == 100


def test_list_operators_respect_the_list_rules(db, user):
    ins = db.create("PlanetaryInsight", insight_data(user.id, recommendations=[f"r{i}" for i in range(19)]))
    assert len(db.update("PlanetaryInsight", {"id": ins.id}, {"$push": {"recommendations": "r19"}}).recommendations) == 20
    with pytest.raises(errors.ValidationError, match="recommendations"):
        db.update("PlanetaryInsight", {"id": ins.id}, {"$push": {"recommendations": "one too many"}})
    chart = db.create("BirthChart", chart_data(user.id))
    with pytest.raises(errors.ValidationError, match="positions"):
        db.update("BirthChart", {"id": chart.id},
                  {"$push": {"positions": {"body": "Sun", "sign": "Leo", "degree": 1, "house": 1}}})
    pulled = db.update("BirthChart", {"id": chart.id}, {"$pull": {"positions": {"body": "Sun"}}})
    assert pulled.positions == []


def test_update_many_counts_modified(db, user):
    db.create_many("PlanetaryInsight", [insight_data(user.id, day=d) for d in range(3)])
    assert db.update_many("PlanetaryInsight", {"userId": user.id}, {"summary": "revised"}) == 3
    assert db.count("PlanetaryInsight", {"summary": "revised"}) == 3


def test_update_many_with_an_empty_query_asks_the_same_opt_in_as_delete_many(db, user):
    db.create_many("PlanetaryInsight", [insight_data(user.id, day=d) for d in range(3)])
    with pytest.raises(errors.QueryError, match=r"update_many with an empty query would update every PlanetaryInsight; pass all=True"):
        db.update_many("PlanetaryInsight", {}, {"summary": "everyone"})
    assert db.count("PlanetaryInsight", {"summary": "everyone"}) == 0  # nothing was sent
    assert db.update_many("PlanetaryInsight", {}, {"summary": "everyone"}, all=True) == 3


def test_delete_and_delete_many(db, user):
    db.create_many("PlanetaryInsight", [insight_data(user.id, day=d) for d in range(3)])
    assert db.delete("User", {"id": str(user.id)}) is True
    assert db.delete("User", {"id": str(user.id)}) is False
    with pytest.raises(errors.QueryError, match="all=True"):
        db.delete_many("PlanetaryInsight", {})
    assert db.count("PlanetaryInsight") == 3
    assert db.delete_many("PlanetaryInsight", {"userId": user.id}) == 3
    db.create("PlanetaryInsight", insight_data(user.id))
    assert db.delete_many("PlanetaryInsight", {}, all=True) == 1


# --- Node (Mongoose) documents -----------------------------------------------------------------


def test_node_written_documents_read_update_and_keep_their_keys(db, user):
    sub_id = ObjectId()
    node_doc = {
        "_id": ObjectId(), "userId": user.id, "activity": "travel", "__v": 3,
        "windows": [{"_id": sub_id, "start": dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc),
                     "end": dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc), "score": 70}],
        "risks": [{"_id": ObjectId(), "level": "high", "description": "storm"}],
        "createdAt": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        "updatedAt": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    }
    db.collection("TimingRecommendation").insert_one(node_doc)
    found = db.find_one("TimingRecommendation", {"id": node_doc["_id"]})
    found.validate()
    db.update("TimingRecommendation", {"id": node_doc["_id"]}, {"activity": "flight"})
    raw = db.collection("TimingRecommendation").find_one({"_id": node_doc["_id"]})
    assert raw["__v"] == 3 and raw["windows"][0]["_id"] == sub_id and raw["activity"] == "flight"


# --- bad input: a clear error, nothing written -------------------------------------------------


def test_a_document_beyond_16_mb_is_refused_before_it_is_sent(db, user):
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    windows = [{"start": start + dt.timedelta(hours=2 * i), "end": start + dt.timedelta(hours=2 * i + 1), "score": 5}
               for i in range(300_000)]  # ~20 MB of BSON: the embedded backend would store it
    with pytest.raises(errors.ValidationError) as info:
        db.create("TimingRecommendation", {"userId": user.id, "activity": "x", "windows": windows})
    assert info.value.errors["windows"] == "must have <= 1000 items, got 300000"
    risks = [{"level": "low", "description": "d" * 1000}] * 20_000
    with pytest.raises(errors.ValidationError, match="risks"):
        db.create("TimingRecommendation", {"userId": user.id, "activity": "x", "risks": risks})
    assert db.count("TimingRecommendation") == 0


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda db: db.create("User", "not a dict"), errors.ValidationError),
        (lambda db: db.create("User", {"email": "a@b.co", "name": "A", "shoeSize": 9}), errors.ValidationError),
        (lambda db: db.create("User", {"email": "a@b.co", "name": 7}), errors.ValidationError),
        (lambda db: db.create("User", {"email": "a@b.co", "name": "x" * 101}), errors.ValidationError),
        (lambda db: db.create("PlanetaryInsight", {"userId": "xyz", "date": "2026-01-01", "energyLevel": 5,
                                                   "recommendations": ["a"]}), errors.ValidationError),
        (lambda db: db.find("User", {"$where": "this.a == 1"}), errors.QueryError),
        (lambda db: db.find("User", {"name": {"$function": {"body": "x"}}}), errors.QueryError),
        (lambda db: db.aggregate("User", [{"$group": {"_id": None, "x": {"$accumulator": {}}}}]), errors.QueryError),
        (lambda db: db.find("User", {"name": {"$foo": 1}}), errors.QueryError),
        (lambda db: db.find("User", {"shoeSize": 9}), errors.QueryError),
        (lambda db: db.find("User", {"id": "123"}), errors.ValidationError),
        (lambda db: db.find("User", {}, limit=-1), errors.QueryError),
        (lambda db: db.update("User", {"id": "zzz"}, {"name": "B"}), errors.ValidationError),
        (lambda db: db.update("User", {}, {"$rename": {"name": "n"}}), errors.QueryError),
        (lambda db: db.update("User", {}, {"$set": {"_id": "x"}}), errors.QueryError),
        (lambda db: db.update("User", {}, {"name": "B", "$set": {"status": "x"}}), errors.QueryError),
        (lambda db: db.aggregate("User", [{"$out": "stolen"}]), errors.QueryError),
        (lambda db: db.create("PlanetaryInsight", {"userId": str(ObjectId()), "date": "2026-01-01",
                                                   "energyLevel": 5, "recommendations": ["x" * 20_000_000]}),
         errors.ValidationError),
    ],
)
def test_bad_input_raises_the_matching_error_and_writes_nothing(db, call, exc):
    db.create("User", {"email": "keep@example.com", "name": "Keep"})
    before = {name: list(db.collection(name).find()) for name in ("User", "PlanetaryInsight")}
    with pytest.raises(exc):
        call(db)
    after = {name: list(db.collection(name).find()) for name in ("User", "PlanetaryInsight")}
    assert after == before


@pytest.mark.parametrize("method", ["save", "delete", "update", "modify", "reload"])
def test_instances_are_written_through_the_database_only(db, user, method):
    user.name = "Changed"
    with pytest.raises(errors.AstroDBError, match=r"through a Database"):
        getattr(user, method)()
    assert db.find_one("User", {"id": user.id}).name == "Ann"


def test_lean_writes_return_the_stored_documents_without_building_instances(db):
    created = db.create("User", {"email": "lean@example.com", "name": "Lean"}, lean=True)
    assert isinstance(created, dict) and created["email"] == "lean@example.com" and created["__v"] == 0
    many = db.create_many("User", [{"email": "lean2@example.com", "name": "L2"}, {"email": "bad"}], lean=True)
    assert [type(d) for d in many] == [dict] and [i for i, _ in many.failed] == [1]
    updated = db.update("User", {"id": created["_id"]}, {"name": "Leaner"}, lean=True)
    assert isinstance(updated, dict) and updated["name"] == "Leaner"
    assert db.update("User", {"email": "nobody@example.com"}, {"name": "x"}, lean=True) is None


def test_an_unknown_keyword_is_a_type_error_naming_it(db):
    with pytest.raises(TypeError, match="limt"):
        db.find("User", {}, limt=3)
    with pytest.raises(TypeError, match="sort"):
        db.create("User", {"email": "k@example.com", "name": "K"}, sort=[("name", 1)])


def test_create_many_builds_instances_only_when_they_are_used(db, monkeypatch):
    from astro_db.ops.steps import hydrate

    built = []
    real = hydrate.many
    def counting(info, docs, **kw):
        if not kw["lean"]:
            built.append(len(docs))
        return real(info, docs, **kw)

    monkeypatch.setattr(hydrate, "many", counting)
    result = db.create_many("User", [{"email": f"lazy{i}@example.com", "name": "Lazy"} for i in range(3)]
                            + [{"email": "not an email"}])
    assert len(result) == 3 and [i for i, _ in result.failed] == [3]
    assert result.ids == [u["_id"] for u in db.find("User", {"name": "Lazy"}, sort=[("email", 1)], lean=True)]
    assert built == []  # len, failed and ids build nothing
    assert [u.email for u in result] == [f"lazy{i}@example.com" for i in range(3)]
    assert result[1].id == result.ids[1] and result[-1].email == "lazy2@example.com"
    assert [u.name for u in result[:2]] == ["Lazy", "Lazy"]
    assert built == [3]  # built once, for every item, on first use
    assert result == list(result) and result != list(result)[:2] and list(result) == [*result]
    assert repr(result).startswith("CreateManyResult([<User ") and "failed=[(3, " in repr(result)


def test_create_many_lean_items_are_the_stored_dicts(db):
    result = db.create_many("User", [{"email": "leanitems@example.com", "name": "Lean"}], lean=True)
    assert isinstance(result[0], dict) and result.ids == [result[0]["_id"]]
    assert result == [db.find_one("User", {"email": "leanitems@example.com"}, lean=True)]
