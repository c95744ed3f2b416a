"""Updates into lists (issue #15, defects 3 and 4): every path into a list is validated as the
whole document would be, refusals leave the stored document as it was, and every write that
changes a list takes part in the ``__v`` compare-and-set, so a write validated against a stale
read never lands. Runs on the embedded backend and the live server."""

from __future__ import annotations

import ast
import datetime as dt
import uuid
from pathlib import Path

import pytest
from bson import ObjectId
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database, errors
from astro_db.models import BirthChart, codec

from .conftest import chart_data, insight_data, timing_data

POSITIONS = [
    {"body": "Sun", "sign": "Taurus", "degree": 10.5, "house": 10},
    {"body": "Moon", "sign": "Leo", "degree": 3, "house": 1},
    {"body": "Mars", "sign": "Aries", "degree": 29, "house": 5},
]


@pytest.fixture
def chart(db, user):
    return db.create("BirthChart", chart_data(user.id, positions=POSITIONS))


def _raw(db, model, doc):
    return db.collection(model).find_one({"_id": doc.id})


# --- defect 3: array paths are validated against the whole document ---------------------------


@pytest.mark.parametrize("update,field", [
    ({"$set": {"positions.$[].body": "Sun"}}, "positions"),  # every body the same
    ({"$set": {"positions.1.body": "Sun"}}, "positions"),  # a body already present
    ({"$inc": {"positions.2.degree": 1}}, "positions.2.degree"),  # 29 + 1 is past the sign
    ({"$inc": {"positions.$[].degree": 25}}, "positions.0.degree"),
    ({"$inc": {"positions.0.house": 1.5}}, "positions.0.house"),  # houses are whole numbers
    ({"$inc": {"positions.0.house": 3}}, "positions.0.house"),  # 10 + 3 is past house 12
    ({"$set": {"positions.5.body": "Venus"}}, "positions.3"),  # a gap of nulls
    ({"$unset": {"positions.1": ""}}, "positions.1"),  # leaves a null item
    ({"$set": {"positions.0.degree": -1}}, "positions.0.degree"),
])
def test_array_path_updates_that_break_a_rule_are_refused_and_change_nothing(db, chart, update, field):
    before = _raw(db, "BirthChart", chart)
    with pytest.raises(errors.ValidationError) as caught:
        db.update("BirthChart", {"id": chart.id}, update)
    assert field in caught.value.errors
    assert _raw(db, "BirthChart", chart) == before


@pytest.mark.parametrize("update", [
    {"$set": {"windows.0.end": "2026-02-01T08:00:00Z"}},  # before its start
    {"$set": {"windows.1.start": "2026-02-01T10:00:00Z"}},  # overlaps window 0
    {"$set": {"windows.$[].start": "2026-02-01T09:30:00Z"}},
])
def test_window_paths_keep_windows_ordered_and_apart(db, user, update):
    rec = db.create("TimingRecommendation", timing_data(user.id))
    before = _raw(db, "TimingRecommendation", rec)
    with pytest.raises(errors.ValidationError, match="windows"):
        db.update("TimingRecommendation", {"id": rec.id}, update)
    assert _raw(db, "TimingRecommendation", rec) == before


def test_valid_array_path_updates_are_stored(db, chart):
    out = db.update("BirthChart", {"id": chart.id}, {"$set": {"positions.1.body": "Venus", "positions.$[].retrograde": True},
                                                     "$inc": {"positions.0.degree": 2, "positions.2.house": 7}})
    assert [(p.body, p.degree, p.house, p.retrograde) for p in out.positions] == [
        ("Sun", 12.5, 10, True), ("Venus", 3, 1, True), ("Mars", 29, 12, True)]
    rec_day = dt.datetime(2026, 2, 1, 9, tzinfo=dt.timezone.utc)
    rec = db.create("TimingRecommendation", timing_data(chart.user_id))
    moved = db.update("TimingRecommendation", {"id": rec.id}, {"$set": {"windows.0.end": rec_day + dt.timedelta(hours=5)}})
    assert moved.windows[0].end == rec_day + dt.timedelta(hours=5)


@pytest.mark.parametrize("path,form", [("positions.$.body", "$"), ("positions.$[p].body", "$[p]")])
def test_positional_forms_the_service_cannot_evaluate_are_refused_naming_the_supported_ones(db, chart, path, form):
    before = _raw(db, "BirthChart", chart)
    with pytest.raises(errors.QueryError) as caught:
        db.update("BirthChart", {"id": chart.id, "positions.body": "Sun"}, {"$set": {path: "Venus"}})
    message = str(caught.value)
    assert form in message and "positions.1.body" in message and "$[]" in message
    assert _raw(db, "BirthChart", chart) == before


def test_a_field_of_every_item_without_an_index_is_refused(db, chart):
    with pytest.raises(errors.QueryError, match=r"\$\[\]"):
        db.update("BirthChart", {"id": chart.id}, {"$set": {"positions.body": "Venus"}})


def test_overlapping_paths_in_one_update_are_refused(db, chart):
    before = _raw(db, "BirthChart", chart)
    with pytest.raises(errors.QueryError, match="same field"):
        db.update("BirthChart", {"id": chart.id}, {"$set": {"positions.1.body": "Venus"},
                                                   "$pull": {"positions": {"body": "Sun"}}})
    assert _raw(db, "BirthChart", chart) == before


def test_pull_conditions_use_only_operators_the_service_evaluates(db, chart):
    with pytest.raises(errors.QueryError, match=r"\$size is not supported"):
        db.update("BirthChart", {"id": chart.id}, {"$pull": {"positions": {"body": {"$size": 1}}}})
    with pytest.raises(errors.QueryError, match="name a field"):
        db.update("BirthChart", {"id": chart.id}, {"$pull": {"positions": {"$or": [{"body": "Moon"}]}}})
    out = db.update("BirthChart", {"id": chart.id},
                    {"$pull": {"positions": {"$or": [{"degree": {"$gte": 20}}, {"body": "Moon"}], "house": {"$lte": 5}}}})
    assert [p.body for p in out.positions] == ["Sun"]


def test_update_many_validates_each_document_it_changes(db, user):
    a = db.create("BirthChart", chart_data(user.id, positions=POSITIONS))
    b = db.create("BirthChart", chart_data(user.id, positions=POSITIONS[:1]))
    assert db.update_many("BirthChart", {"userId": user.id}, {"$set": {"positions.0.degree": 1}}) == 2
    assert [p.degree for p in db.find_one("BirthChart", {"id": b.id}).positions] == [1]
    with pytest.raises(errors.ValidationError):
        db.update_many("BirthChart", {"id": a.id}, {"$set": {"positions.1.body": "Sun"}})
    assert [p.body for p in db.find_one("BirthChart", {"id": a.id}).positions] == ["Sun", "Moon", "Mars"]


# --- defect 4: every write that changes a list takes part in the compare-and-set ------------------


@pytest.mark.parametrize("update", [
    {"$set": {"recommendations": ["a", "b"]}},
    {"$set": {"recommendations.0": "a"}},
    {"$set": {"recommendations.$[]": "a"}},
    {"$push": {"recommendations": "b"}},
    {"$pull": {"recommendations": "Rest"}},
])
def test_every_write_that_changes_a_list_advances_the_version(db, user, update):
    ins = db.create("PlanetaryInsight", insight_data(user.id, recommendations=["Rest", "Walk"]))
    db.update("PlanetaryInsight", {"id": ins.id}, update)
    assert _raw(db, "PlanetaryInsight", ins)["__v"] == 1


def test_a_write_that_changes_no_list_keeps_the_version(db, user):
    ins = db.create("PlanetaryInsight", insight_data(user.id))
    db.update("PlanetaryInsight", {"id": ins.id}, {"summary": "new"})
    assert _raw(db, "PlanetaryInsight", ins)["__v"] == 0


class _RaceAfterRead:
    """A collection whose next ``find_one`` (the read before the compare-and-set) is followed by
    ``compete()``: the competing write lands between our read and our write, every time."""

    def __init__(self, coll, compete, every_time=False):
        self._coll = coll
        self._compete = compete
        self._every_time = every_time
        self.raced = 0

    def find_one(self, *args, **kwargs):
        doc = self._coll.find_one(*args, **kwargs)
        if self._compete is not None:
            compete = self._compete
            if not self._every_time:
                self._compete = None
            compete()
            self.raced += 1
        return doc

    def __getattr__(self, name):
        return getattr(self._coll, name)


def _race(db, monkeypatch, model, compete, every_time=False):
    real = db.executor.runtime.coll
    racing = {}

    def coll(info):
        plain = real(info)
        if info.name != model or "coll" in racing:
            return plain
        racing["coll"] = _RaceAfterRead(plain, compete, every_time)
        return racing["coll"]

    monkeypatch.setattr(db.executor.runtime, "coll", coll)
    return racing


@pytest.mark.parametrize("competing", [
    {"$set": {"recommendations": [f"r{i}" for i in range(20)]}},  # a whole list
    {"$set": {"recommendations.19": "r19"}},  # one positional item past the end
])
def test_a_push_validated_against_a_stale_read_never_lands(db, user, monkeypatch, competing):
    ins = db.create("PlanetaryInsight", insight_data(user.id, recommendations=[f"r{i}" for i in range(19)]))
    racing = _race(db, monkeypatch, "PlanetaryInsight",
                   lambda: db.update("PlanetaryInsight", {"id": ins.id}, competing))
    with pytest.raises(errors.ValidationError, match="recommendations"):
        db.update("PlanetaryInsight", {"id": ins.id}, {"$push": {"recommendations": "one more"}})
    assert racing["coll"].raced == 1
    stored = _raw(db, "PlanetaryInsight", ins)
    assert len(stored["recommendations"]) == 20 and "one more" not in stored["recommendations"]


def test_a_positional_set_validated_against_a_stale_read_never_lands(db, chart, monkeypatch):
    racing = _race(db, monkeypatch, "BirthChart",
                   lambda: db.update("BirthChart", {"id": chart.id}, {"$set": {"positions.2.body": "Venus"}}))
    with pytest.raises(errors.ValidationError, match="positions"):  # Venus is now listed twice
        db.update("BirthChart", {"id": chart.id}, {"$set": {"positions.0.body": "Venus"}})
    assert racing["coll"].raced == 1
    assert [p["body"] for p in _raw(db, "BirthChart", chart)["positions"]] == ["Sun", "Moon", "Venus"]


def test_a_write_that_loses_the_race_is_retried_on_the_new_list(db, user, monkeypatch):
    ins = db.create("PlanetaryInsight", insight_data(user.id, recommendations=["a"]))
    _race(db, monkeypatch, "PlanetaryInsight",
          lambda: db.update("PlanetaryInsight", {"id": ins.id}, {"$set": {"recommendations.1": "b"}}))
    out = db.update("PlanetaryInsight", {"id": ins.id}, {"$push": {"recommendations": "c"}})
    assert out.recommendations == ["a", "b", "c"] and _raw(db, "PlanetaryInsight", ins)["__v"] == 2


def test_a_write_that_keeps_losing_the_race_gives_up_and_writes_nothing(db, user, monkeypatch):
    ins = db.create("PlanetaryInsight", insight_data(user.id, recommendations=["a"]))
    racing = _race(db, monkeypatch, "PlanetaryInsight",
                   lambda: db.update("PlanetaryInsight", {"id": ins.id}, {"$set": {"recommendations.0": "b"}}),
                   every_time=True)
    with pytest.raises(errors.AstroDBError, match="changed concurrently 8 times"):
        db.update("PlanetaryInsight", {"id": ins.id}, {"$push": {"recommendations": "mine"}})
    stored = _raw(db, "PlanetaryInsight", ins)
    assert racing["coll"].raced == 8 and stored["recommendations"] == ["b"] and stored["__v"] == 8


def test_a_list_update_keeps_what_a_node_written_document_carries(db, user):
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    node_doc = {
        "_id": ObjectId(), "userId": user.id, "activity": "travel", "__v": 3, "legacyFlag": True,
        "windows": [{"_id": ObjectId(), "start": start, "end": start + dt.timedelta(hours=1), "note": "kept"}],
    }
    db.collection("TimingRecommendation").insert_one(node_doc)
    db.update("TimingRecommendation", {"id": node_doc["_id"]},
              {"$push": {"windows": {"start": start + dt.timedelta(days=1), "end": start + dt.timedelta(days=1, hours=1)}}})
    raw = db.collection("TimingRecommendation").find_one({"_id": node_doc["_id"]})
    assert raw["legacyFlag"] is True and raw["windows"][0]["note"] == "kept" and len(raw["windows"]) == 2
    assert raw["__v"] == 4


# --- no test double in production paths -------------------------------------------------------


def test_only_the_backend_module_imports_the_embedded_backend():
    package = Path(__file__).resolve().parents[2] / "astro_db"
    importers = set()
    for module in package.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "mongomock_ng" for n in names):
                importers.add(module.relative_to(package).as_posix())
    assert importers == {"backends/embedded.py"}, importers


# --- the rule in general: any list-touching update either lands valid or changes nothing ----------

_POSITION = st.fixed_dictionaries({"body": st.sampled_from(["Sun", "Moon", "Mars", "Venus"]),
                                   "sign": st.sampled_from(["Leo", "Aries"]), "degree": st.sampled_from([0, 12.5, 29.9, 30, -1])},
                                  optional={"house": st.sampled_from([1, 12, 13, 2.5])})
_PATH_VALUES = {
    "positions.{i}.body": st.sampled_from(["Sun", "Moon", "Mars", "Venus", "Pluto"]),
    "positions.{i}.degree": st.sampled_from([0, 15, 29.99, 30, -0.5]),
    "positions.{i}.house": st.sampled_from([1, 12, 13, 0]),
    "positions.{i}": _POSITION,
    "positions": st.lists(_POSITION, max_size=3),
}


@st.composite
def _list_updates(draw):
    op = draw(st.sampled_from(["$set", "$inc", "$unset", "$push", "$addToSet", "$pull"]))
    index = draw(st.sampled_from(["0", "1", "2", "4", "$[]"]))
    if op == "$inc":
        path = draw(st.sampled_from(["positions.{i}.degree", "positions.{i}.house"])).format(i=index)
        return {op: {path: draw(st.sampled_from([1, -1, 0.5, 20, -30]))}}
    if op in ("$set", "$unset"):
        template = draw(st.sampled_from(sorted(_PATH_VALUES)))
        return {op: {template.format(i=index): draw(_PATH_VALUES[template]) if op == "$set" else ""}}
    if op == "$pull":
        return {op: {"positions": draw(st.sampled_from([{"body": "Sun"}, {"degree": {"$gte": 10}}, {"house": {"$in": [1, 5]}}]))}}
    return {op: {"positions": draw(st.one_of(_POSITION, st.builds(lambda xs: {"$each": xs}, st.lists(_POSITION, max_size=2))))}}


@pytest.fixture(scope="module")
def embedded_db():
    with Database(f"mongomock://localhost/arr{uuid.uuid4().hex[:6]}") as database:
        yield database


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(update=_list_updates())
def test_a_list_update_lands_valid_with_the_version_advanced_or_changes_nothing(embedded_db, update):
    owner = ObjectId()
    chart = embedded_db.create("BirthChart", chart_data(owner, positions=POSITIONS))
    before = _raw(embedded_db, "BirthChart", chart)
    try:
        embedded_db.update("BirthChart", {"id": chart.id}, update)
    except errors.AstroDBError:
        assert _raw(embedded_db, "BirthChart", chart) == before
    else:
        after = _raw(embedded_db, "BirthChart", chart)
        codec.hydrate(BirthChart, after).validate()
        assert after["__v"] == before["__v"] + 1
    embedded_db.collection("BirthChart").delete_one({"_id": chart.id})
