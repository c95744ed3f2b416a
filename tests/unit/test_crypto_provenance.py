"""Which declared paths of an aggregation's output may be opened (``security.provenance``)."""

from __future__ import annotations

import pytest

from astro_db.security.provenance import intact_paths

NAME = "birthData.location.name"
BODY = "positions.body"
PATHS = [NAME, BODY]


@pytest.mark.parametrize("stages", [
    [],
    [{"$match": {"x": 1}}, {"$sort": {"_id": 1}}, {"$skip": 1}, {"$limit": 5}, {"$sample": {"size": 2}}],
    [{"$unset": "birthData"}],
    [{"$project": {"birthData": 1, "positions": True, "_id": 0}}],
    [{"$project": {"birthData": {"location": {"name": 1}}}}],
    [{"$project": {"x": "$houseSystem", "birthData.location.name": 1.0}}],
    [{"$addFields": {"score": {"$add": [1, 2]}, "birthData.date": "$x"}}],
    [{"$set": {"birthData.location.coordinates": [0, 0]}}],
    [{"$unwind": "$positions"}, {"$unwind": {"path": "$positions", "includeArrayIndex": "i"}}],
    [{"$lookup": {"from": "users", "localField": "userId", "foreignField": "_id", "as": "user"}}],
    [{"$geoNear": {"near": [0, 0], "distanceField": "dist", "includeLocs": "loc"}}],
], ids=["none", "filters", "unset", "project-include", "project-nested-include", "project-elsewhere",
        "addFields-elsewhere", "set-sibling", "unwind", "lookup-elsewhere", "geoNear-elsewhere"])
def test_stages_that_keep_stored_values_keep_every_path(stages):
    assert intact_paths(stages, PATHS) == frozenset(PATHS)


@pytest.mark.parametrize(("stage", "lost"), [
    ({"$addFields": {NAME: "$other"}}, {NAME}),
    ({"$set": {"birthData": {"location": {"name": "x"}}}}, {NAME}),
    ({"$set": {"birthData.location.name.deeper": "x"}}, {NAME}),
    ({"$addFields": {"positions": []}}, {BODY}),
    ({"$project": {"birthData": "$other"}}, {NAME}),
    ({"$project": {"birthData": {"location": {"name": {"$literal": "x"}}}}}, {NAME}),
    ({"$project": {"birthData.location": ["x"]}}, {NAME}),
    ({"$project": {"positions.0.body": "$x"}}, {BODY}),
    ({"$lookup": {"from": "birthcharts", "as": "birthData.location"}}, {NAME}),
    ({"$unwind": {"path": "$positions", "includeArrayIndex": "positions.body"}}, {BODY}),
    ({"$geoNear": {"near": [0, 0], "distanceField": "birthData"}}, {NAME}),
    ({"$geoNear": {"near": [0, 0], "distanceField": "d", "includeLocs": "positions"}}, {BODY}),
    ({"$group": {"_id": "$userId"}}, set(PATHS)),
    ({"$replaceRoot": {"newRoot": "$birthData"}}, set(PATHS)),
    ({"$replaceWith": "$birthData"}, set(PATHS)),
    ({"$facet": {"a": [{"$match": {}}]}}, set(PATHS)),
    ({"$count": "n"}, set(PATHS)),
    ({"$bucket": {"groupBy": "$x", "boundaries": [0, 1]}}, set(PATHS)),
    ({"$sortByCount": "$x"}, set(PATHS)),
    ({"$match": {}, "$sort": {"_id": 1}}, set(PATHS)),
    ({"$addFields": "not a mapping"}, set(PATHS)),
])
def test_a_stage_that_may_write_a_path_loses_it(stage, lost):
    assert intact_paths([stage], PATHS) == frozenset(PATHS) - lost


def test_a_lost_path_stays_lost_whatever_follows():
    stages = [{"$addFields": {NAME: "x"}}, {"$project": {"birthData": 1}}, {"$match": {}}]
    assert intact_paths(stages, PATHS) == {BODY}
    assert intact_paths([{"$group": {"_id": 1}}, {"$addFields": {}}], PATHS) == frozenset()


@pytest.mark.parametrize("stage", [
    {"$lookup": {"from": "users", "localField": "userId", "foreignField": "_id", "as": 5}},
    {"$unwind": {"path": "$positions", "includeArrayIndex": ["positions"]}},
    {"$geoNear": {"near": [0, 0], "distanceField": "", "includeLocs": None}},
], ids=["lookup", "unwind", "geoNear"])
def test_an_output_field_that_is_not_a_path_name_writes_no_path(stage):
    """A non-string or empty output name (which the server refuses anyway) is not a path."""
    assert intact_paths([stage], PATHS) == frozenset(PATHS)
