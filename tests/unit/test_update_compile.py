"""compile_update: which updates touch lists (and so go through the read-validate-CAS path),
which array-path forms are accepted, and what is guarded on the server."""

from __future__ import annotations

import pytest

from astro_db.errors import QueryError, ValidationError
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation
from astro_db.query.updates import compile_update


@pytest.mark.parametrize("model,update,roots", [
    (PlanetaryInsight, {"summary": "x"}, ()),
    (PlanetaryInsight, {"$inc": {"energyLevel": 1}}, ()),
    (BirthChart, {"$set": {"birthData.timezone": "UTC"}}, ()),
    (PlanetaryInsight, {"$set": {"recommendations": ["a"]}}, ("recommendations",)),
    (PlanetaryInsight, {"$set": {"recommendations.0": "a"}}, ("recommendations",)),
    (BirthChart, {"$unset": {"positions": ""}}, ("positions",)),
    (BirthChart, {"$set": {"positions.$[].retrograde": True}}, ("positions",)),
    (BirthChart, {"$inc": {"positions.0.degree": 1}}, ("positions",)),
    (BirthChart, {"$pull": {"positions": {"body": "Sun"}}}, ("positions",)),
    (TimingRecommendation, {"$push": {"windows": {"start": "2026-01-01", "end": "2026-01-02"}},
                            "$set": {"activity": "x"}}, ("windows",)),
])
def test_updates_that_touch_a_list_are_marked_with_the_lists_they_change(model, update, roots):
    compiled = compile_update(model, update)
    assert compiled.list_roots == roots and compiled.touches_lists == bool(roots)


def test_inc_outside_lists_is_guarded_and_inside_lists_is_left_to_the_post_image():
    assert compile_update(PlanetaryInsight, {"$inc": {"energyLevel": 5}}).guards == {"energyLevel": {"$lte": 95, "$gte": -5}}
    assert compile_update(BirthChart, {"$inc": {"positions.1.degree": 5}}).guards == {}


def test_inc_on_an_integer_field_needs_an_integer():
    with pytest.raises(ValidationError, match="integer"):
        compile_update(BirthChart, {"$inc": {"positions.0.house": 1.0}})


@pytest.mark.parametrize("path", ["positions.$.degree", "positions.$[p].degree", "recommendations.$"])
def test_positional_forms_other_than_index_and_all_are_refused(path):
    model = PlanetaryInsight if path.startswith("recommendations") else BirthChart
    with pytest.raises(QueryError, match=r"not supported; name list items by a numeric index"):
        compile_update(model, {"$set": {path: 1}})


@pytest.mark.parametrize("update", [
    {"$set": {"positions": []}, "$inc": {"positions.0.degree": 1}},
    {"$set": {"positions.0.degree": 1}, "$inc": {"positions.$[].degree": 1}},
    {"$set": {"positions.0": {"body": "Sun", "sign": "Leo", "degree": 1}}, "$unset": {"positions.0.house": ""}},
])
def test_overlapping_paths_are_refused(update):
    with pytest.raises(QueryError, match="same field"):
        compile_update(BirthChart, update)


def test_distinct_items_do_not_overlap():
    compiled = compile_update(BirthChart, {"$set": {"positions.0.degree": 1}, "$inc": {"positions.1.degree": 1}})
    assert compiled.list_roots == ("positions",)


@pytest.mark.parametrize("condition,error", [
    ({"body": {"$size": 1}}, r"\$size is not supported"),
    ({"$or": [{"body": "Sun"}]}, "name a field"),
    ({"$where": "1"}, "not allowed"),
])
def test_pull_conditions_outside_what_the_service_evaluates_are_refused(condition, error):
    with pytest.raises(QueryError, match=error):
        compile_update(BirthChart, {"$pull": {"positions": condition}})


def test_pull_conditions_put_field_conditions_before_logical_ones():
    compiled = compile_update(BirthChart, {"$pull": {"positions": {"$or": [{"body": "Sun"}], "degree": {"$gt": 1}}}})
    assert list(compiled.update["$pull"]["positions"]) == ["degree", "$or"]


@pytest.mark.parametrize("path", ["positions.01.degree", "positions.10000.degree", "positions.99999999999999.degree",
                                  "positions.\u0663.degree"])
def test_list_indexes_are_plain_bounded_numbers(path):
    with pytest.raises(QueryError, match="list index|unknown field"):
        compile_update(BirthChart, {"$set": {path: 1}})


@pytest.mark.parametrize("index", ["0", "7", "10", "999", "9999"])
def test_a_list_index_up_to_the_bound_is_accepted(index):
    compiled = compile_update(BirthChart, {"$set": {f"positions.{index}.degree": 1}})
    assert compiled.update == {"$set": {f"positions.{index}.degree": 1}} and compiled.list_roots == ("positions",)
