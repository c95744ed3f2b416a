"""One walker per query (issue 22) and sealing at every depth (issue 23, item 4).

A call's filter, update or pipeline is walked once (``astro_db.query.walker``) and every rule
(validation, sealing, the actor's scope) sees every node, with the model that node reads: a
condition on an encrypted field matches ciphertext inside ``$facet``, a ``$lookup`` or
``$unionWith`` pipeline on another model, ``$graphLookup`` and ``$geoNear`` exactly as at the
top; a ``$regex`` refused at the top is refused at every depth; forbidden operators are refused
in every key of every stage; nested pipelines count towards one depth limit whatever nests them.
"""

from __future__ import annotations

import pytest
from bson import ObjectId

from astro_db.errors import PermissionDeniedError, QueryError
from astro_db.models import BirthChart, User
from astro_db.query.pipeline import Checks, compile_pipeline
from astro_db.query.walker import EXPRESSION, FILTER, MAX_PIPELINE_DEPTH, PIPELINE, READS, STAGE, UPDATE, Node, Walker

from .security_data import KEY_A, chart_data, new_db, snapshot, user_data

NAME = "birthData.location.name"
PARIS = {"$match": {NAME: "Paris"}}
GRAPH = {"from": "birthCharts", "startWith": "$_id", "connectFromField": "userId", "connectToField": "userId", "as": "g"}
NEAR = {"near": {"type": "Point", "coordinates": [0, 0]}, "distanceField": "d"}


@pytest.fixture
def db():
    database = new_db(encryption_key=KEY_A)
    yield database
    database.disconnect()


@pytest.fixture
def charts(db):
    """Ann was born in Paris, Bob in London; the places are encrypted at rest."""
    ann = db.create("User", user_data(name="Ann"))
    bob = db.create("User", user_data(name="Bob"))
    paris = db.create("BirthChart", chart_data(ann.id, place="Paris"))
    london = db.create("BirthChart", chart_data(bob.id, place="London"))
    return ann, bob, paris, london


# --- sealing at every depth ---------------------------------------------------------------------


def test_a_match_on_an_encrypted_field_matches_at_the_top(db, charts):
    _, _, paris, _ = charts
    assert [d["_id"] for d in db.aggregate("BirthChart", [PARIS])] == [paris.id]


def test_the_same_match_matches_inside_facet(db, charts):
    _, _, paris, _ = charts
    out = db.aggregate("BirthChart", [{"$facet": {"p": [PARIS, {"$project": {"_id": 1}}]}}])
    assert out == [{"p": [{"_id": paris.id}]}]


def test_the_same_match_matches_inside_a_lookup_pipeline_on_another_model(db, charts):
    ann, bob, paris, _ = charts
    out = db.aggregate("User", [
        {"$lookup": {"from": "birthCharts", "pipeline": [PARIS, {"$project": {"_id": 1}}], "as": "c"}},
        {"$sort": {"_id": 1}},  # (not by name: encrypted, its stored order is the ciphertext's)
    ])
    assert [(d["_id"], d["c"]) for d in out] == [(ann.id, [{"_id": paris.id}]), (bob.id, [{"_id": paris.id}])]


def test_the_same_match_matches_inside_a_lookup_with_let(db, charts):
    _, _, paris, _ = charts
    out = db.aggregate("User", [{"$lookup": {
        "from": "birthCharts", "let": {"owner": "$_id"}, "pipeline": [PARIS, {"$project": {"_id": 1}}], "as": "c"}}])
    assert [d["c"] for d in out] == [[{"_id": paris.id}]] * 2


def test_the_same_match_matches_inside_a_union_with_pipeline_on_another_model(db, charts):
    _, _, paris, _ = charts
    out = db.aggregate("User", [{"$limit": 0}, {"$unionWith": {"coll": "birthCharts", "pipeline": [PARIS]}}])
    assert [d["_id"] for d in out] == [paris.id]


def test_the_same_condition_matches_in_graph_lookup_restrict_search_with_match(db, charts):
    ann, bob, paris, _ = charts
    out = db.aggregate("User", [{"$graphLookup": {**GRAPH, "restrictSearchWithMatch": {NAME: "Paris"}}}])
    assert {d["_id"]: [g["_id"] for g in d["g"]] for d in out} == {ann.id: [paris.id], bob.id: []}


def test_nested_conditions_are_sealed_for_the_model_they_read(db):
    """Compiled, each nested filter holds the envelopes of the model it reads, as at the top."""
    stages = db.executor.runtime.crypto.seal_filter
    chart = db.executor.model("BirthChart")
    sealed = stages(chart, {NAME: "Paris"})
    from astro_db.ops.steps import compile as compile_step
    from astro_db.security.access import Guard

    rt = db.executor.runtime
    user = db.executor.model("User")
    out = compile_step.pipeline(rt, user, Guard(None, "User", False), [
        {"$facet": {"a": [{"$lookup": {"from": "birthCharts", "pipeline": [PARIS], "as": "c"}}]}},
        {"$unionWith": {"coll": "birthCharts", "pipeline": [{"$facet": {"b": [PARIS]}}]}},
        {"$graphLookup": {**GRAPH, "restrictSearchWithMatch": {NAME: "Paris"}}},
    ])
    assert out[0]["$facet"]["a"][0]["$lookup"]["pipeline"] == [{"$match": sealed}]
    assert out[1]["$unionWith"]["pipeline"] == [{"$facet": {"b": [{"$match": sealed}]}}]
    assert out[2]["$graphLookup"]["restrictSearchWithMatch"] == sealed
    near = compile_step.pipeline(rt, chart, Guard(None, "BirthChart", True), [{"$geoNear": {**NEAR, "query": {NAME: "Paris"}}}])
    assert near == [{"$geoNear": {**NEAR, "query": sealed}}]
    # equality moved to the place's blind index: keyed hashes, no plaintext
    assert list(sealed) == [NAME + "Index"] and sealed[NAME + "Index"]["$in"]
    assert all(len(v) == 43 and "Paris" not in v for v in sealed[NAME + "Index"]["$in"])


REGEX_ON_THE_PLACE = {NAME: {"$regex": "^Par"}}
NESTED_REGEXES = [
    [{"$match": REGEX_ON_THE_PLACE}],
    [{"$facet": {"p": [{"$match": REGEX_ON_THE_PLACE}]}}],
    [{"$facet": {"p": [{"$facet": {"q": [{"$match": REGEX_ON_THE_PLACE}]}}]}}],
    [{"$lookup": {"from": "birthCharts", "pipeline": [{"$match": REGEX_ON_THE_PLACE}], "as": "c"}}],
    [{"$unionWith": {"coll": "birthCharts", "pipeline": [{"$match": REGEX_ON_THE_PLACE}]}}],
    [{"$graphLookup": {**GRAPH, "restrictSearchWithMatch": REGEX_ON_THE_PLACE}}],
]


@pytest.mark.parametrize("pipeline", NESTED_REGEXES, ids=["top", "facet", "facet-in-facet", "lookup", "unionWith", "graphLookup"])
def test_a_regex_on_an_encrypted_field_is_refused_at_every_depth(db, charts, pipeline):
    model = "BirthChart" if pipeline is NESTED_REGEXES[0] or "$facet" in pipeline[0] else "User"
    before = snapshot(db)
    with pytest.raises(QueryError, match=r"operator \$regex cannot be used on the encrypted field 'birthData.location.name'"):
        db.aggregate(model, pipeline)
    assert snapshot(db) == before


def test_a_regex_on_an_encrypted_field_is_refused_in_geo_near_query(db):
    with pytest.raises(QueryError, match=r"operator \$regex cannot be used on the encrypted field"):
        db.aggregate("BirthChart", [{"$geoNear": {**NEAR, "query": REGEX_ON_THE_PLACE}}])


@pytest.mark.parametrize("operator", ["$regexMatch", "$regexFind", "$regexFindAll"])
@pytest.mark.parametrize("where", ["top", "facet", "lookup"])
def test_a_regex_expression_over_an_encrypted_field_is_refused(db, charts, operator, where):
    expr = {"$project": {"m": {operator: {"input": f"${NAME}", "regex": "^Par"}}}}
    pipeline = {"top": [expr], "facet": [{"$facet": {"a": [expr]}}],
                "lookup": [{"$lookup": {"from": "birthCharts", "pipeline": [expr], "as": "c"}}]}[where]
    with pytest.raises(QueryError, match=rf"\{operator} cannot match the encrypted field 'birthData.location.name'"):
        db.aggregate("User" if where == "lookup" else "BirthChart", pipeline)


@pytest.mark.parametrize("source", ["$birthData.location", "$$ROOT.birthData.location.name", "$$CURRENT.birthData.location"])
def test_a_regex_expression_over_a_parent_of_an_encrypted_field_or_through_root_is_refused(db, source):
    with pytest.raises(QueryError, match=r"\$regexMatch cannot match the encrypted field 'birthData.location.name' "
                                         r"\(in stage 0 \$project\): it holds ciphertext on the server$"):
        db.aggregate("BirthChart", [{"$project": {"m": {"$regexMatch": {"input": source, "regex": "P"}}}}])


@pytest.mark.parametrize("expression", [
    {"$regexMatch": {"input": {"$concat": ["$houseSystem", "!"]}, "regex": "^p"}},  # an expression, not a field
    {"$regexMatch": {"input": ["$houseSystem"], "regex": "^p"}},
    {"$regexMatch": {"input": "Paris", "regex": "^P"}},  # a literal
    {"$regexMatch": {"input": "$$place", "regex": "^P"}},  # a variable
    {"$regexMatch": {"input": "$birthData.timezone", "regex": "^Europe"}},  # a plain sibling
    {"$map": {"input": "$birthData.location.name", "in": "$$this"}},  # not a regex operator
])
def test_expressions_that_do_not_regex_match_an_encrypted_field_are_accepted(db, expression):
    from astro_db.ops.steps import compile as compile_step
    from astro_db.security.access import Guard

    stage = {"$project": {"m": expression}}
    out = compile_step.pipeline(db.executor.runtime, db.executor.model("BirthChart"), Guard(None, "BirthChart", True), [stage])
    assert out == [stage]


def test_a_regex_expression_over_plain_fields_and_variables_still_runs(db, charts):
    out = db.aggregate("User", [{"$project": {"_id": 0, "m": {"$regexMatch": {"input": "$status", "regex": "^act", "options": "i"}}}},
                                {"$sort": {"m": -1}}])
    assert out == [{"m": True}, {"m": True}]
    # on the lookup's own model: the chart's house system is not encrypted; $$ variables are not fields
    db.aggregate("User", [{"$lookup": {"from": "birthCharts", "let": {"n": "$name"}, "pipeline": [
        {"$project": {"m": {"$regexMatch": {"input": "$houseSystem", "regex": "^p"}}}},
        {"$project": {"v": {"$regexMatch": {"input": "$$n", "regex": "^A"}}}}], "as": "c"}}])


# --- the actor's scope ----------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", [
    [{"$lookup": {"from": "birthCharts", "pipeline": [PARIS], "as": "c"}}],
    [{"$lookup": {"from": "birthCharts", "let": {"u": "$_id"}, "pipeline": [], "as": "c"}}],
    [{"$unionWith": {"coll": "birthCharts", "pipeline": [PARIS]}}],
    [{"$facet": {"a": [{"$unionWith": "birthCharts"}]}}],
    [{"$facet": {"a": [{"$facet": {"b": [{"$lookup": {"from": "birthCharts", "pipeline": [], "as": "c"}}]}}]}}],
    [{"$graphLookup": GRAPH}],
])
def test_a_self_scoped_actor_may_not_read_another_collection_at_any_depth(db, charts, pipeline):
    """A self-scoped actor cannot ``$lookup`` / ``$unionWith`` / ``$graphLookup`` (that was so
    before the walker and stays so): refused before anything is read, however deep."""
    ann = charts[0]
    me = db.as_actor(str(ann.id), roles=["self"])
    with pytest.raises(PermissionDeniedError, match=r"limited to its own documents; \$\w+ is not allowed"):
        me.aggregate("User", pipeline)


def test_a_self_scoped_actor_sees_only_her_own_documents_inside_facet(db, charts):
    ann, _, paris, _ = charts
    me = db.as_actor(str(ann.id), roles=["self"])
    out = me.aggregate("BirthChart", [{"$facet": {"all": [{"$project": {"_id": 1}}], "paris": [PARIS, {"$count": "n"}]}}])
    assert out == [{"all": [{"_id": paris.id}], "paris": [{"n": 1}]}]
    bob_me = db.as_actor(str(charts[1].id), roles=["self"])
    assert bob_me.aggregate("BirthChart", [{"$facet": {"paris": [PARIS, {"$project": {"_id": 1}}]}}]) == [{"paris": []}]


def test_a_self_scoped_actor_sees_only_her_own_documents_with_a_geo_near_query(db, charts):
    from astro_db.ops.steps import compile as compile_step
    from astro_db.security.access import Actor

    ann, _, _, _ = charts
    rt = db.executor.runtime
    guard = db.executor.authorize(Actor(str(ann.id), frozenset({"self"})), "aggregate", "BirthChart")
    out = compile_step.pipeline(rt, db.executor.model("BirthChart"), guard, [{"$geoNear": {**NEAR, "query": {NAME: "Paris"}}}])
    query = out[0]["$geoNear"]["query"]
    assert query["$and"][1] == {"userId": ann.id} and len(query["$and"][0][NAME + "Index"]["$in"][0]) == 43


# --- forbidden operators, at every depth and in every key ---------------------------------------

FUNCTION = {"$function": {"body": "function() { return 1 }", "args": [], "lang": "js"}}


@pytest.mark.parametrize("pipeline", [
    # $graphLookup: every key but restrictSearchWithMatch is an expression or a name
    [{"$graphLookup": {**GRAPH, "startWith": FUNCTION}}],
    [{"$graphLookup": {**GRAPH, "maxDepth": FUNCTION}}],
    [{"$graphLookup": {**GRAPH, "connectFromField": FUNCTION}}],
    [{"$graphLookup": {**GRAPH, "restrictSearchWithMatch": {"$expr": {"$eq": [1, 1]}}}}],
    [{"$facet": {"a": [{"$graphLookup": {**GRAPH, "startWith": {"$accumulator": {}}}}]}}],
    # $geoNear: every key but query is an expression
    [{"$geoNear": {**NEAR, "near": FUNCTION}}],
    [{"$geoNear": {**NEAR, "maxDistance": {"$where": "1"}}}],
    [{"$geoNear": {**NEAR, "query": {"$where": "1"}}}],
    # $lookup: every key
    [{"$lookup": {"from": "birthCharts", "localField": FUNCTION, "foreignField": "userId", "as": "c"}}],
    [{"$lookup": {"from": "birthCharts", "let": {"x": {"$expr": 1}}, "pipeline": [], "as": "c"}}],
    # nested pipelines, each on its own model
    [{"$unionWith": {"coll": "birthCharts", "pipeline": [{"$project": {"x": FUNCTION}}]}}],
    [{"$lookup": {"from": "birthCharts", "pipeline": [{"$facet": {"a": [{"$group": {"_id": FUNCTION}}]}}], "as": "c"}}],
    [{"$lookup": {"from": "birthCharts", "pipeline": [{"$unionWith": {"coll": "users", "pipeline": [
        {"$match": {"$where": "1"}}]}}], "as": "c"}}],
    # deep inside an expression
    [{"$project": {"x": {"$cond": [{"$eq": ["$name", "a"]}, {"$literal": {"y": [FUNCTION]}}, 0]}}}],
])
def test_forbidden_operators_are_refused_at_every_depth(db, pipeline):
    before = snapshot(db)
    with pytest.raises(QueryError, match=r"operator \$(function|accumulator|where|expr) is not allowed"):
        db.aggregate("User", pipeline)
    assert snapshot(db) == before


@pytest.mark.parametrize(("stage", "message"), [
    ({"$geoNear": "near"}, r"stage 0 \$geoNear takes a dict"),
    ({"$lookup": ["from"]}, r"stage 0 \$lookup takes a dict"),
    ({"$graphLookup": 1}, r"stage 0 \$graphLookup takes a dict"),
    ({"$unionWith": 1}, r"stage 0 \$unionWith takes a collection name or \{coll, pipeline\}"),
    ({"$unionWith": {"coll": "users", "as": "x"}}, r"stage 0 \$unionWith: unknown option\(s\) 'as'"),
    ({"$lookup": {"from": "users", "as": "u", "into": 1, "on": 2}}, r"stage 0 \$lookup: unknown option\(s\) 'into', 'on'$"),
    ({"$lookup": {"from": "users", "as": "u", "let": [1]}}, r"stage 0 \$lookup: let takes a dict of name -> expression"),
    ({"$graphLookup": {"from": "users", "startWith": "$x", "as": "g"}}, r"needs connectFromField, connectToField$"),
    ({"$graphLookup": {k: v for k, v in GRAPH.items() if k != "from"}}, r"stage 0 \$graphLookup needs from$"),
    ({"$graphLookup": {k: v for k, v in GRAPH.items() if k != "startWith"}}, r"stage 0 \$graphLookup needs startWith$"),
    ({"$graphLookup": {k: v for k, v in GRAPH.items() if k != "as"}}, r"stage 0 \$graphLookup needs as$"),
    ({"$graphLookup": {**GRAPH, "into": "x"}}, r"unknown option\(s\) 'into'"),
    ({"$facet": [[]]}, r"stage 0 \$facet takes a dict of name -> pipeline"),
    ({"$facet": {"a": {"$match": {}}}}, r"a pipeline in \$facet 'a' is a list of stages, got dict"),
    ({"$unionWith": {"coll": 5}}, r"may only read the models' collections \(birthCharts, .*\), got 5"),
])
def test_malformed_stages_are_refused_with_what_is_wrong(stage, message):
    with pytest.raises(QueryError, match=message):
        compile_pipeline(User, [stage])


# --- valid nested stages are accepted ------------------------------------------------------------


def test_a_valid_regex_match_graph_lookup_and_lookup_with_let_are_accepted_unchanged():
    pipeline = [
        {"$project": {"m": {"$regexMatch": {"input": "$name", "regex": "^ann", "options": "i"}}}},
        {"$addFields": {"f": {"$regexFind": {"input": "$name", "regex": "a.c"}},
                        "all": {"$regexFindAll": {"input": "$name", "regex": "an"}}}},
        {"$graphLookup": {**GRAPH, "maxDepth": 2, "depthField": "level",
                          "restrictSearchWithMatch": {"houseSystem": "placidus"}}},
        {"$lookup": {"from": "birthCharts", "let": {"owner": "$_id"},
                     "pipeline": [{"$match": {"houseSystem": "koch"}}, {"$limit": 1}], "as": "c"}},
        {"$lookup": {"from": "birthCharts", "localField": "_id", "foreignField": "userId", "as": "d"}},
        {"$unionWith": "users"},
    ]
    assert compile_pipeline(User, pipeline) == pipeline


def test_lookup_and_graph_lookup_filters_are_compiled_against_the_joined_model():
    out = compile_pipeline(User, [
        {"$graphLookup": {**GRAPH, "restrictSearchWithMatch": {"house_system": "koch", "user_id": "6b069ab89379ec754f0ebbf1"}}},
        {"$lookup": {"from": "birthCharts", "pipeline": [{"$match": {"house_system": "koch"}}], "as": "c"}},
    ])
    assert out[0]["$graphLookup"]["restrictSearchWithMatch"] == {"houseSystem": "koch", "userId": ObjectId("6b069ab89379ec754f0ebbf1")}
    assert out[1]["$lookup"]["pipeline"] == [{"$match": {"houseSystem": "koch"}}]
    with pytest.raises(QueryError):  # a User field, not a BirthChart one
        compile_pipeline(User, [{"$graphLookup": {**GRAPH, "restrictSearchWithMatch": {"email": "a@b.co"}}}])


def test_a_verbose_regex_expression_is_judged_with_its_options():
    ok = {"$project": {"m": {"$regexMatch": {"input": "$name", "regex": "^(a+) +"}}}}
    assert compile_pipeline(User, [ok]) == [ok]  # not verbose: "(a+)" then " +"
    verbose = {"$project": {"m": {"$regexMatch": {"input": "$name", "regex": "^(a+) +", "options": "x"}}}}
    with pytest.raises(QueryError, match="repeat"):
        compile_pipeline(User, [verbose])  # verbose: (a+)+
    with pytest.raises(QueryError, match="repeat"):
        compile_pipeline(User, [{"$facet": {"a": [verbose]}}])


@pytest.mark.parametrize("options", ["e", 1, ["i"]])
def test_a_regex_expression_with_bad_options_is_refused(options):
    with pytest.raises(QueryError):
        compile_pipeline(User, [{"$project": {"m": {"$regexMatch": {"input": "$name", "regex": "^a", "options": options}}}}])


def test_a_regex_expression_with_an_unknown_key_is_refused():
    with pytest.raises(QueryError, match=r"\$regexMatch in stage 0 \$project: unknown option\(s\) 'flags'"):
        compile_pipeline(User, [{"$project": {"m": {"$regexMatch": {"input": "$name", "regex": "^a", "flags": "i"}}}}])


# --- one depth limit through every kind of nesting ----------------------------------------------


def nest(kind: str, depth: int) -> list:
    """A pipeline with ``depth`` levels of ``kind`` nesting under the top one."""
    inner: list = [{"$limit": 1}]
    for _ in range(depth):
        inner = {
            "facet": [{"$facet": {"a": inner}}],
            "lookup": [{"$lookup": {"from": "users", "pipeline": inner, "as": "u"}}],
            "unionWith": [{"$unionWith": {"coll": "users", "pipeline": inner}}],
        }[kind]
    return inner


@pytest.mark.parametrize("kind", ["facet", "lookup", "unionWith"])
def test_the_depth_limit_counts_every_kind_of_nested_pipeline(kind):
    assert compile_pipeline(User, nest(kind, MAX_PIPELINE_DEPTH))
    with pytest.raises(QueryError, match=f"pipelines nested deeper than {MAX_PIPELINE_DEPTH} levels"):
        compile_pipeline(User, nest(kind, MAX_PIPELINE_DEPTH + 1))


def test_the_depth_limit_counts_mixed_nesting():
    mixed = [{"$facet": {"a": [{"$lookup": {"from": "users", "as": "u", "pipeline": [
        {"$unionWith": {"coll": "users", "pipeline": [{"$facet": {"b": [{"$limit": 1}]}}]}}]}}]}}]
    assert compile_pipeline(User, mixed)
    deeper = [{"$lookup": {"from": "users", "as": "x", "pipeline": mixed}}]
    with pytest.raises(QueryError, match=r"nested deeper than 4 levels in \$facet 'b'"):
        compile_pipeline(User, deeper)


def test_the_depth_limit_holds_through_the_service(db):
    with pytest.raises(QueryError, match="nested deeper"):
        db.aggregate("User", nest("lookup", MAX_PIPELINE_DEPTH + 1))


# --- a rule added once is applied at every depth --------------------------------------------------


class Recorder:
    """A test-only rule: notes every node it is shown, changes nothing."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, str, str]] = []
        self.places: list[tuple[str, str, str]] = []  # (kind, key, where)
        self.reads: list[str] = []  # the collections shown by READS nodes

    def visit(self, node: Node, value):
        self.seen.append((node.kind, node.model.__name__, node.depth, node.stage, node.key))
        self.places.append((node.kind, node.key, node.where))
        if node.kind == READS:
            self.reads.append(value)
        return value


EVERYWHERE = [
    {"$facet": {"f": [{"$match": {"house_system": "koch"}}, {"$project": {"x": {"$toUpper": "$houseSystem"}}}]}},
    {"$lookup": {"from": "users", "let": {"n": {"$concat": ["$houseSystem", "!"]}},
                 "pipeline": [{"$match": {"name": "Ann"}}, {"$addFields": {"y": {"$size": "$roles"}}}], "as": "u"}},
    {"$unionWith": {"coll": "users", "pipeline": [{"$match": {"status": "active"}},
                                                  {"$project": {"z": {"$regexMatch": {"input": "$name", "regex": "^A"}}}}]}},
    {"$graphLookup": {"from": "users", "startWith": {"$toObjectId": "$userId"}, "connectFromField": "_id",
                      "connectToField": "_id", "as": "g", "restrictSearchWithMatch": {"status": "active"}}},
]


def test_a_rule_added_to_the_walker_sees_every_node_at_every_depth():
    recorder = Recorder()
    Walker((Checks(), recorder)).pipeline(BirthChart, EVERYWHERE)
    seen = set(recorder.seen)
    assert {
        (STAGE, "BirthChart", 0, "$facet", "$facet"),
        (FILTER, "BirthChart", 1, "$match", "$match"),                   # inside $facet
        (EXPRESSION, "BirthChart", 1, "$project", "$toUpper"),           # an expression inside $facet
        (PIPELINE, "BirthChart", 1, "", ""),
        (EXPRESSION, "BirthChart", 0, "$lookup", "$concat"),             # $lookup's let: the local model
        (FILTER, "User", 1, "$match", "$match"),                         # $lookup's pipeline: the joined model
        (EXPRESSION, "User", 1, "$addFields", "$size"),
        (PIPELINE, "User", 1, "", ""),
        (STAGE, "BirthChart", 0, "$unionWith", "$unionWith"),
        (EXPRESSION, "User", 1, "$project", "$regexMatch"),              # $unionWith's pipeline: its model
        (EXPRESSION, "BirthChart", 0, "$graphLookup", "$toObjectId"),    # $graphLookup's startWith
        (FILTER, "User", 0, "$graphLookup", "restrictSearchWithMatch"),  # ... and its filter, on `from`
        (PIPELINE, "BirthChart", 0, "", ""),
    } <= seen
    assert sum(1 for kind, *_ in recorder.seen if kind == FILTER) == 4  # each filter once
    near = Recorder()
    Walker((Checks(), near)).pipeline(BirthChart, [{"$geoNear": {**NEAR, "query": {"house_system": "koch"},
                                                                 "maxDistance": {"$literal": 5}}}])
    assert (FILTER, "BirthChart", 0, "$geoNear", "query") in near.seen
    assert (EXPRESSION, "BirthChart", 0, "$geoNear", "$literal") in near.seen


def test_a_rule_sees_values_in_stored_form_after_the_checks_and_its_answer_is_used():
    class NoKoch:
        def visit(self, node: Node, value):
            if node.kind == FILTER and value.get("houseSystem") == "koch":
                raise QueryError(f"no koch in {node.where or 'the query'} ({node.model.__name__}, depth {node.depth})")
            return value

    walker = Walker((Checks(), NoKoch()))
    for pipeline, where in [
        ([{"$match": {"house_system": "koch"}}], "stage 0 \\$match"),
        ([{"$facet": {"a": [{"$match": {"house_system": "koch"}}]}}], "stage 0 \\$match in \\$facet 'a'"),
        ([{"$lookup": {"from": "birthCharts", "pipeline": [{"$match": {"house_system": "koch"}}], "as": "c"}}],
         "stage 0 \\$match in \\$lookup from 'birthCharts'"),
    ]:
        with pytest.raises(QueryError, match=f"no koch in {where}"):
            walker.pipeline(User if "$lookup" in pipeline[0] else BirthChart, pipeline)
    with pytest.raises(QueryError, match=r"no koch in the query \(BirthChart, depth 0\)"):
        walker.filter(BirthChart, {"house_system": "koch"})

    class Rename:
        def visit(self, node: Node, value):
            return {"houseSystem": "placidus"} if node.kind == FILTER else value

    out = Walker((Checks(), Rename())).pipeline(User, [{"$unionWith": {"coll": "birthCharts", "pipeline": [PARIS]}}])
    assert out == [{"$unionWith": {"coll": "birthCharts", "pipeline": [{"$match": {"houseSystem": "placidus"}}]}}]


def test_the_walker_shows_updates_and_top_filters_to_every_rule():
    recorder = Recorder()
    walker = Walker((Checks(strict=True), recorder))
    assert walker.filter(User, {"email": "a@b.co"}) == {"email": "a@b.co"}
    assert walker.update(User, {"name": "Ann"}).update == {"$set": {"name": "Ann"}}
    assert recorder.seen == [(FILTER, "User", 0, "", "query"), (UPDATE, "User", 0, "", "")]
    with pytest.raises(QueryError, match="strict"):
        walker.filter(User, {"email": {"$ne": None}})
    # strict applies to the call's own filter; a $match in a pipeline is never strict
    assert Walker((Checks(strict=True),)).pipeline(User, [{"$match": {"name": {"$ne": None}}}])


def test_a_refused_update_value_through_the_walker_is_refused():
    from astro_db.errors import ValidationError

    point = {"type": "Point", "coordinates": [1, 2]}
    for update in ({"$set": {"birthData.location.coordinates": {**point, "$bad": 1}}},
                   {"$set": {"birthData.location": {"name": "x", "coordinates": {**point, "a.b": 1}}}}):
        with pytest.raises(ValidationError, match="is not allowed in stored data") as refused:
            Walker((Checks(),)).update(BirthChart, update)
        assert set(refused.value.errors) == {next(iter(update["$set"]))}  # named by the path written


# --- edges the mutation run pointed at ----------------------------------------------------------


def test_only_the_calls_own_filter_and_pipeline_are_narrowed_not_a_top_level_match():
    from astro_db.security.access import Actor, Guard

    owner = ObjectId()
    guard = Guard(Actor(str(owner), frozenset({"self"})), "BirthChart", True)
    out = Walker((Checks(), guard)).pipeline(BirthChart, [{"$match": {"house_system": "koch"}}])
    assert out == [{"$match": {"userId": owner}}, {"$match": {"houseSystem": "koch"}}]


def test_expression_nodes_are_operators_only_with_their_model_stage_and_place():
    recorder = Recorder()
    Walker((Checks(), recorder)).pipeline(User, [
        {"$project": {"a": {"b": {"$toUpper": "$name"}}, "c": [{"$literal": 1}, "x"]}},
        {"$lookup": {"from": "birthCharts", "localField": {"$toString": "$_id"}, "foreignField": "userId", "as": "d"}},
    ])
    assert [s for s in recorder.seen if s[0] == EXPRESSION] == [
        (EXPRESSION, "User", 0, "$project", "$toUpper"), (EXPRESSION, "User", 0, "$project", "$literal"),
        (EXPRESSION, "User", 0, "$lookup", "$toString")]  # localField: the local documents
    assert [p for p in recorder.places if p[0] == EXPRESSION] == [
        (EXPRESSION, "$toUpper", "stage 0 $project"), (EXPRESSION, "$literal", "stage 0 $project"),
        (EXPRESSION, "$toString", "stage 1 $lookup")]


def test_filter_nodes_carry_their_place():
    recorder = Recorder()
    Walker((Checks(), recorder)).pipeline(BirthChart, [
        {"$geoNear": {**NEAR, "query": {"house_system": "koch"}}},
        {"$facet": {"f": [{"$graphLookup": {**GRAPH, "from": "users", "connectFromField": "_id", "connectToField": "_id",
                                             "restrictSearchWithMatch": {"name": "Ann"}}}]}},
    ])
    assert [p for p in recorder.places if p[0] == FILTER] == [
        (FILTER, "query", "stage 0 $geoNear"), (FILTER, "restrictSearchWithMatch", "stage 0 $graphLookup in $facet 'f'")]
    assert [p for p in recorder.places if p[0] == PIPELINE] == [(PIPELINE, "", " in $facet 'f'"), (PIPELINE, "", "")]


def test_nested_expression_nodes_carry_their_depth():
    recorder = Recorder()
    Walker((Checks(), recorder)).pipeline(User, [{"$facet": {"f": [
        {"$lookup": {"from": "birthCharts", "localField": {"$toString": "$_id"}, "foreignField": "userId", "as": "d",
                     "let": {"v": {"$literal": 1}}}},
        {"$project": {"c": [{"$toUpper": "$name"}]}}]}}])
    assert [s for s in recorder.seen if s[0] == EXPRESSION] == [
        (EXPRESSION, "User", 1, "$lookup", "$toString"), (EXPRESSION, "User", 1, "$lookup", "$literal"),
        (EXPRESSION, "User", 1, "$project", "$toUpper")]
    assert [p for p in recorder.places if p[0] == EXPRESSION] == [
        (EXPRESSION, "$toString", "stage 0 $lookup in $facet 'f'"), (EXPRESSION, "$literal", "stage 0 $lookup in $facet 'f' let"),
        (EXPRESSION, "$toUpper", "stage 1 $project in $facet 'f'")]


def test_the_checks_are_not_strict_unless_asked():
    assert Walker((Checks(),)).filter(User, {"name": {"$ne": None}}) == {"name": {"$ne": None}}


def test_a_registry_maps_collections_to_model_classes():
    from astro_db.query.walker import model_collections
    from astro_db.registry import default_registry

    expected = {info.collection: info.cls for info in default_registry()}
    assert model_collections(default_registry()) == expected
    assert model_collections(info.cls for info in default_registry()) == expected
    assert model_collections([User]) == {"users": User}


@pytest.mark.parametrize("collection", [["users"], {"c": 1}, None, "system.users", "auditLog"])
def test_only_the_models_collections_may_be_read_whatever_the_name_is(collection):
    stages = [{"$unionWith": {"coll": collection}}, {"$lookup": {"from": collection, "as": "u", "pipeline": []}},
              {"$graphLookup": {**GRAPH, "from": collection}}]
    if isinstance(collection, str):
        stages.append({"$unionWith": collection})
    for stage in stages:
        with pytest.raises(QueryError, match=rf"^stage 0 \{next(iter(stage))} may only read the models' collections "
                                             r"\(birthCharts, planetaryInsights, timingRecommendations, users\), got"):
            compile_pipeline(User, [stage])


def test_the_collections_a_walk_may_read_are_the_ones_it_is_given():
    only_users = Walker((Checks(),), {"users": User})
    assert only_users.pipeline(User, [{"$unionWith": "users"}]) == [{"$unionWith": "users"}]
    with pytest.raises(QueryError, match=r"may only read the models' collections \(users\), got 'birthCharts'"):
        only_users.pipeline(User, [{"$unionWith": "birthCharts"}])


def test_the_place_of_a_refusal_names_each_nesting():
    bad = [{"$project": {"x": FUNCTION}}]
    for pipeline, where in [
        ([{"$unionWith": {"coll": "users", "pipeline": [{"$limit": 1}, *bad]}}], r"stage 1 \$project in \$unionWith 'users'"),
        ([{"$lookup": {"from": "users", "pipeline": bad, "as": "u"}}], r"stage 0 \$project in \$lookup from 'users'"),
        ([{"$facet": {"f": [{"$limit": 1}, {"$limit": 1}, *bad]}}], r"stage 2 \$project in \$facet 'f'"),
        ([{"$lookup": {"from": "users", "as": "u", "let": {"v": FUNCTION}}}], r"stage 0 \$lookup let"),
        ([{"$limit": 1}, {"$graphLookup": {**GRAPH, "startWith": FUNCTION}}], r"stage 1 \$graphLookup"),
        ([{"$geoNear": {**NEAR, "near": FUNCTION}}], r"stage 0 \$geoNear"),
    ]:
        with pytest.raises(QueryError, match=rf"operator \$function is not allowed \(in {where}\)$"):
            compile_pipeline(User, pipeline)


@pytest.mark.parametrize(("pipeline", "message"), [
    ([{"$limit": 1}, {"$search": {}}], r"unknown or unsupported pipeline stage '\$search'$"),
    ([{"$facet": {"a": [{"$indexStats": {}}]}}], r"unknown or unsupported pipeline stage '\$indexStats' in \$facet 'a'$"),
    ([{"$lookup": {"from": "users", "as": "u", "pipeline": [{"$merge": "x"}]}}],
     r"pipeline stage \$merge in \$lookup from 'users' writes to a collection and is not allowed$"),
    ([{"$limit": 1}, "$match"], r"pipeline stage 1 must be a dict with exactly one \$stage key$"),
    ([{"$limit": 1, "$skip": 1}], r"pipeline stage 0 must be a dict with exactly one \$stage key$"),
    ({"$match": {}}, r"a pipeline is a list of stages, got dict"),
])
def test_stage_refusals_say_what_and_where(pipeline, message):
    with pytest.raises(QueryError, match=message):
        compile_pipeline(User, pipeline)


@pytest.mark.parametrize(("spec", "message"), [
    ({"input": "$name"}, r"\$regexMatch \(in stage 0 \$project\) takes \{input, regex, options\}$"),
    ("^a", r"\$regexMatch \(in stage 0 \$project\) takes \{input, regex, options\}$"),
    ({"input": "$name", "regex": "$email"}, r"takes a literal regex, not a field path or variable \('\$email'\)$"),
    ({"input": "$name", "regex": 5}, r"takes a literal regex, got int 5$"),
    ({"input": "$name", "regex": "$" + "a" * 60}, r"not a field path or variable \('\$a{39}'\)$"),
    ({"input": "$name", "regex": "^a", "options": "e"}, r"regex options on '\$regexMatch in stage 0 \$project' may only"),
    ({"input": "$name", "regex": "^a", "x": 1, "y": 2}, r"\$regexMatch in stage 0 \$project: unknown option\(s\) 'x', 'y'$"),
    ({"input": "$name", "regex": "(a+)+"}, r"\$regexMatch in stage 0 \$project"),
])
def test_regex_expression_refusals_say_what_and_where(spec, message):
    with pytest.raises(QueryError, match=message):
        compile_pipeline(User, [{"$project": {"m": {"$regexMatch": spec}}}])


def test_a_compiled_regex_expression_pattern_is_judged_by_its_own_flags():
    import re

    from bson.regex import Regex

    for pattern in (re.compile("^ann", re.I), Regex("^ann", "i")):
        stage = {"$project": {"m": {"$regexMatch": {"input": "$name", "regex": pattern}}}}
        assert compile_pipeline(User, [stage]) == [stage]
    with pytest.raises(QueryError):
        compile_pipeline(User, [{"$project": {"m": {"$regexMatch": {"input": "$name", "regex": Regex("(a+) +", "x")}}}}])


# --- other collections: their model's permissions and encrypted fields ------------------------------


def _app_models():
    from astro_db.models import AstroDocument
    from astro_db.models.fields import TextField, UserRefField

    class StaffNote(AstroDocument):
        """Only admins may read these."""

        text = TextField(required=True)
        meta = {"collection": "walkerStaffNotes", "permissions": {"admin": ["read", "create"]}}

    class Diary(AstroDocument):
        """Anyone staff may read; the text is encrypted, deterministically (queryable)."""

        user_id = UserRefField(db_field="userId", required=True)
        text = TextField(sensitive=True)
        meta = {"collection": "walkerDiaries", "owner": "user_id", "queryable": ["text"]}

    class DropBox(AstroDocument):
        """Writers may put and amend, never read: the walk checks read only where a pipeline joins."""

        text = TextField(required=True)
        meta = {"collection": "walkerDropBox", "permissions": {"writer": ["create", "update"], "admin": ["read"]}}

    return StaffNote, Diary, DropBox


@pytest.fixture
def app_db():
    import uuid

    from astro_db import Database

    staff_note, diary, drop_box = _app_models()
    database = Database(f"mongomock://localhost/w{uuid.uuid4().hex[:8]}", models=[staff_note, diary, drop_box],
                        encryption_key=KEY_A).connect()
    database.drop_box = drop_box
    yield database, staff_note, diary
    database.disconnect()


@pytest.mark.parametrize("stage", [
    {"$lookup": {"from": "walkerStaffNotes", "localField": "_id", "foreignField": "_id", "as": "n"}},
    {"$lookup": {"from": "walkerStaffNotes", "pipeline": [], "as": "n"}},
    {"$unionWith": "walkerStaffNotes"},
    {"$facet": {"a": [{"$unionWith": {"coll": "walkerStaffNotes", "pipeline": []}}]}},
    {"$graphLookup": {**GRAPH, "from": "walkerStaffNotes"}},
])
def test_a_pipeline_reads_another_collection_only_if_the_actor_may_read_its_model(app_db, stage):
    db, staff_note, _ = app_db
    db.create(staff_note, {"text": "for admins"})
    reader = db.as_actor("svc", "reader")
    with pytest.raises(PermissionDeniedError, match=r"actor svc \(roles: reader\) may not \$\w+ StaffNote$"):
        reader.aggregate("User", [stage])
    admin = db.as_actor("ops", "admin")
    admin.aggregate("User", [stage])  # the admin may read StaffNote


def test_a_lookup_into_an_app_model_seals_its_own_encrypted_fields(app_db):
    db, _, diary = app_db
    ann = db.create("User", user_data(name="Ann"))
    mine = db.create(diary, {"userId": ann.id, "text": "dear diary"})
    db.create(diary, {"userId": ann.id, "text": "something else"})
    out = db.aggregate("User", [{"$lookup": {"from": "walkerDiaries", "pipeline": [
        {"$match": {"text": "dear diary"}}, {"$project": {"_id": 1}}], "as": "d"}}])
    assert out[0]["d"] == [{"_id": mine.id}]
    with pytest.raises(QueryError, match=r"operator \$regex cannot be used on the encrypted field 'text'"):
        db.aggregate("User", [{"$unionWith": {"coll": "walkerDiaries", "pipeline": [{"$match": {"text": {"$regex": "^d"}}}]}}])


def test_a_rule_sees_each_other_collection_read_with_its_model():
    recorder = Recorder()
    Walker((Checks(), recorder)).pipeline(BirthChart, [
        {"$lookup": {"from": "users", "localField": "userId", "foreignField": "_id", "as": "u"}},
        {"$facet": {"f": [{"$unionWith": "planetaryInsights"}, {"$unionWith": {"coll": "users", "pipeline": [
            {"$lookup": {"from": "birthCharts", "as": "c", "pipeline": []}}]}}]}},
        {"$graphLookup": {**GRAPH, "from": "timingRecommendations"}},
    ])
    assert [s for s in recorder.seen if s[0] == READS] == [
        (READS, "User", 0, "$lookup", "$lookup"), (READS, "PlanetaryInsight", 1, "$unionWith", "$unionWith"),
        (READS, "User", 1, "$unionWith", "$unionWith"), (READS, "BirthChart", 2, "$lookup", "$lookup"),
        (READS, "TimingRecommendation", 0, "$graphLookup", "$graphLookup")]
    assert recorder.reads == ["users", "planetaryInsights", "users", "birthCharts", "timingRecommendations"]
    assert [p for p in recorder.places if p[0] == READS] == [
        (READS, "$lookup", "stage 0 $lookup"), (READS, "$unionWith", "stage 0 $unionWith in $facet 'f'"),
        (READS, "$unionWith", "stage 1 $unionWith in $facet 'f'"), (READS, "$lookup", "stage 0 $lookup in $unionWith 'users'"),
        (READS, "$graphLookup", "stage 2 $graphLookup")]


def test_the_read_check_applies_to_joined_collections_only(app_db):
    db = app_db[0]
    made = db.create(db.drop_box, {"text": "hello"})
    writer = db.as_actor("svc", "writer")
    assert writer.update(db.drop_box, {"id": made.id}, {"text": "amended"}).text == "amended"  # no read needed
    with pytest.raises(PermissionDeniedError, match="may not find DropBox"):
        writer.find(db.drop_box, {})


def test_a_too_long_literal_regex_input_is_refused_naming_where_it_is():
    from astro_db.query.regex import MAX_REGEX_INPUT

    spec = {"input": "a" * (MAX_REGEX_INPUT + 1), "regex": "^a"}
    with pytest.raises(QueryError, match=r"the input of the regex in \$regexFind in stage 0 \$project in \$facet 'f' is a literal"):
        compile_pipeline(User, [{"$facet": {"f": [{"$project": {"m": {"$regexFind": spec}}}]}}])


def test_a_regex_after_a_stage_that_may_rewrite_the_field_is_judged_without_the_models_bound():
    """``name`` holds at most 100 characters as stored; after ``$addFields`` (or ``$unionWith`` of
    another collection, ``$project``, ``$group``...) it may hold anything, so a pattern that is
    cheap at 100 characters but polynomial is refused there, at any depth after it."""
    from astro_db.models import User
    from astro_db.query.pipeline import compile_pipeline

    polynomial = {"name": {"$regex": r"\w*\w*!"}}
    assert compile_pipeline(User, [{"$sort": {"name": 1}}, {"$limit": 5}, {"$match": polynomial}])  # bounded: fine
    long_name = {"$addFields": {"name": {"$concat": ["$name"] * 60}}}
    for before in (long_name, {"$project": {"name": 1}}, {"$unionWith": "birthCharts"}, {"$group": {"_id": "$name"}}):
        with pytest.raises(QueryError, match="regex"):
            compile_pipeline(User, [before, {"$match": polynomial}])
        with pytest.raises(QueryError, match="regex"):
            compile_pipeline(User, [before, {"$facet": {"a": [{"$match": polynomial}]}}])
    # a linear pattern is fine anywhere, and the stages before a rewrite keep the bound
    assert compile_pipeline(User, [{"$match": polynomial}, long_name, {"$match": {"name": {"$regex": "^ann"}}}])
