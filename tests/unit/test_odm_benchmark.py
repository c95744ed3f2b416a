"""benchmarks/odm: the ODM benchmark's data, scoring and table, without a server.

The spec's rules (odm-benchmarking.md): nearest-rank percentiles, MB/s from the median
iteration, datasets of the spec's shapes and sizes. No test here asserts a time.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId, json_util

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from harness import Operation, Result, Sample, Variant  # noqa: E402
from odm import data, score  # noqa: E402
from odm.models import ASTRO_MODELS, LargeNested, SmallFlat  # noqa: E402
from odm.tasks import ALL_SIDES, SAME_COMMANDS, SIDES, TASKS, WIRE, WIRE_OFF, stored, with_unique_ids  # noqa: E402

from astro_db import Database  # noqa: E402

ENTRY = BENCH / "odm_bench.py"


# --- scoring -------------------------------------------------------------------------------------

def test_percentiles_are_the_specs_nearest_rank():
    times = [float(n) for n in range(10, 0, -1)]  # unsorted on purpose
    got = {p: score.percentile(times, p) for p in score.PERCENTILES}
    # i = int(N * p / 100) - 1 on the sorted times
    assert got == {10: 1.0, 25: 2.0, 50: 5.0, 75: 7.0, 90: 9.0, 95: 9.0, 98: 9.0, 99: 9.0}
    assert score.percentile([float(n) for n in range(1, 101)], 99) == 99.0
    assert score.percentile([3.0], 10) == 3.0  # the spec's formula gives -1 below 100/p iterations: the fastest
    with pytest.raises(ValueError, match="no measured iterations"):
        score.percentile([], 50)


def _result(walls: dict[str, list[float]], calls: int = 4) -> Result:
    op = Operation("t", calls, [Variant(label, lambda: None, lambda i: None) for label in walls])
    return Result(op, {label: [Sample(w, w / 2) for w in ws] for label, ws in walls.items()})


def test_the_score_is_the_task_size_over_the_median_iteration_in_si_megabytes():
    result = _result({"raw PyMongo": [4.0, 1.0, 2.0, 8.0]})
    got = score.score(result, "raw PyMongo", task_bytes=3_000_000)
    # the spec's median is its nearest-rank p50: sorted [1, 2, 4, 8][int(4 * .5) - 1] = 2
    assert got.median_s == got.percentiles[50] == 2.0 and got.mb_per_s == 1.5  # 3 MB over 2 s
    assert got.iterations == 4 and got.cpu_per_op_s == 1.5 / 4  # median CPU (1 + 2) / 2 s over 4 operations
    assert got.percentiles[10] == 1.0 and got.percentiles[99] == 4.0  # int(4 * .99) - 1 = 2


def _task(key: str, mbs: dict[str, float], blocked: dict[str, str] | None = None) -> score.TaskResult:
    r = score.TaskResult(key, key, ops=10, op_bytes=100, blocked=blocked or {})
    r.scores = {side: score.Score(v, 1.0, dict.fromkeys(score.PERCENTILES, 1.0), 1e-4, 3) for side, v in mbs.items()}
    return r


def test_the_table_marks_each_target_met_or_missed_and_names_blocked_sides():
    met = _task("a", {"raw PyMongo": 10.0, "astro_db default": 7.0, "astro_db hooks off": 9.0, "MongoEngine": 6.0})
    missed = _task("b", {"raw PyMongo": 10.0, "astro_db default": 5.0, "astro_db hooks off": 8.0, "MongoEngine": 6.0})
    blocked = _task("c", {"raw PyMongo": 10.0, "MongoEngine": 6.0},
                    {"astro_db default": "QueryError: no", "astro_db hooks off": "QueryError: no"})
    lines = score.tables([met, missed, blocked], SIDES)
    rows: dict[str, str] = {}
    for line in lines:  # the score table's rows come first; the percentile table repeats the keys
        if line.split() and line.split()[0] in ("a", "b", "c"):
            rows.setdefault(line.split()[0], line)
    assert rows["a"].split()[-6:] == ["0.90x", "met", "0.70x", "met", "1.17x", "met"]
    assert rows["b"].split()[-6:] == ["0.80x", "MISSED", "0.50x", "MISSED", "0.83x", "MISSED"]
    # the fifth side (hooks off, returning=False) runs the update tasks only: "-" here
    assert rows["c"].split()[2:] == ["10", "blocked", "blocked", "6", "-", "-", "-", "-"]
    assert "- c, astro_db default: QueryError: no" in lines
    assert any(line.split()[:2] == ["task", "side"] and line.split()[-1] == "p99" for line in lines)
    js = score.as_json([met], {})
    assert set(js["tasks"][0]["sides"]["MongoEngine"]["percentiles_s"]) == {f"p{p}" for p in score.PERCENTILES}


def _timed(key: str, seconds: dict[str, tuple[float, float]], commands=()) -> score.TaskResult:
    """A task whose sides took (median iteration wall, CPU per operation) seconds."""
    r = score.TaskResult(key, key, ops=10, op_bytes=100, commands=list(commands))
    r.scores = {side: score.Score(1_000 / wall / 1e6, wall, dict.fromkeys(score.PERCENTILES, wall), cpu, 3)
                for side, (wall, cpu) in seconds.items()}
    return r


def test_the_same_commands_table_splits_each_gap_between_the_commands_and_the_client():
    update = _timed("u", {"raw PyMongo": (1.0, 100e-6), "astro_db default": (3.0, 400e-6), WIRE: (2.5, 250e-6),
                          "astro_db hooks off": (1.5, 200e-6), WIRE_OFF: (1.02, 110e-6)})
    find = _timed("f", {"raw PyMongo": (1.0, 1e-4), "astro_db default": (1.1, 1e-4)})  # no raw side with its commands
    close = _timed("c", {"raw PyMongo": (1.0, 100e-6), "astro_db default": (1.01, 104e-6), WIRE: (1.0, 100e-6)})
    lines = score.same_commands_table([update, find, close], SAME_COMMANDS)
    assert "/ same commands MB/s" in lines[0] and "commands' share of the wall gap" in lines[0]
    rows = [line.split("  ") for line in lines[1:]]
    cells = [[c.strip() for c in row if c.strip()] for row in rows]
    assert [c[:2] for c in cells] == [["u", "astro_db default"], ["u", "astro_db hooks off"], ["c", "astro_db default"]]
    # 3 s against raw's 1 s and 2.5 s for raw sending the same commands: 0.33x raw, 0.83x same; 75% of the gap
    # (the raw side with astro_db's commands scores 0.40x raw: the floor those commands put under any client)
    assert cells[0][2:] == ["0.33x", "0.40x", "0.83x", "75%", "100 µs", "250 µs", "400 µs", "1.60x", "50%"]
    assert cells[1][2:6] == ["0.67x", "0.98x", "0.68x", "4%"]  # hooks off: the findAndModify is 4% of its gap
    assert cells[2][5] == "no gap" and cells[2][-1] == "no gap"  # within 5% of raw: nothing to split
    assert score.same_commands_table([find], SAME_COMMANDS) == []
    assert set(ALL_SIDES) == {*SIDES, WIRE, WIRE_OFF}


def test_the_equivalence_lines_say_same_or_warn_with_the_differences():
    ok = _timed("a", {}, [("a, astro_db default / " + WIRE, "bulkWrite x1", [])])
    bad = _timed("b", {}, [("b, astro_db default / " + WIRE, "findAndModify x1, insert x1", ["commands: x; y"])])
    assert score.commands_lines([ok, bad]) == [
        f"  a, astro_db default / {WIRE}: same commands (bulkWrite x1)",
        f"  WARNING b, astro_db default / {WIRE}: the commands differ: commands: x; y"]
    assert score.as_json([bad], {})["tasks"][0]["commands_check"] == [
        {"pair": f"b, astro_db default / {WIRE}", "commands": "findAndModify x1, insert x1", "differences": ["commands: x; y"]}]


def test_only_the_write_tasks_have_a_raw_side_sending_astro_dbs_commands():
    assert {t.key for t in TASKS if t.writes} == {"small_create", "small_update", "large_create", "large_update",
                                                   "nested_create", "nested_update"}
    assert all(bool(t.writes[1]) == t.update for t in TASKS if t.writes)  # an update names its path


def test_the_update_tasks_score_the_update_value_and_the_others_the_document():
    sets = data.generated()
    sizes = {t.key: t.op_bytes(sets) for t in TASKS}
    assert sizes["small_update"] == sizes["large_update"] == sizes["nested_update"] == len("updated_value") == 13
    assert sizes["small_create"] == sizes["small_find"] == sizes["small_fk_lookup"] == 252
    assert sizes["large_create"] == 3_226_020 and sizes["nested_find"] == sizes["nested_array_find"] == 7_643


# --- data ----------------------------------------------------------------------------------------

def test_generated_documents_have_the_specs_shapes_and_sizes():
    sets = data.generated()
    small, large, nested = sets.small.document, sets.large.document, sets.nested.document
    assert list(small) == [f"field{i}" for i in range(1, 14)]
    assert [type(small[f"field{i}"]) for i in (1, 7, 8, 13)] == [str, str, int, int]
    assert list(large) == [*(f"field{i}" for i in range(1, 251)), "image_field"]
    assert all(isinstance(large[f"field{i}"], str) for i in range(1, 126))
    assert all(isinstance(large[f"field{i}"], int) for i in range(126, 251))
    assert isinstance(large["image_field"], bytes) and len(large["image_field"]) == 2_413_217
    assert list(nested) == [*(f"embedded_str_doc_{n}" for n in range(1, 6)), "embedded_str_doc_array",
                            *(f"embedded_int_doc_{n}" for n in range(8, 15))]
    assert len(nested["embedded_str_doc_array"]) == 2
    assert all(len(nested[f"embedded_int_doc_{n}"]) == 15 for n in range(8, 15))
    assert {d.source_size for d in (sets.small, sets.large, sets.nested)} == set(data.SPEC_SIZES.values())
    assert sets.origin.startswith("generated") and data.generated().small == sets.small  # deterministic


def test_the_specs_files_are_read_from_a_directory_and_scored_on_their_size(tmp_path):
    made = data.generated()
    for folder, name, doc in (("flat-models", "small_doc.json", made.small.document),
                              ("flat-models", "large_doc.json", made.large.document),
                              ("nested-models", "large_doc_nested.json", made.nested.document)):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_text(json_util.dumps(doc, indent=2))
    sets = data.load(tmp_path)
    assert sets.small.document == made.small.document and sets.large.document["image_field"] == made.large.document["image_field"]
    assert sets.nested.source_size == (tmp_path / "nested-models" / "large_doc_nested.json").stat().st_size
    assert sets.origin.startswith("the specification's data files")
    (tmp_path / "flat-models" / "small_doc.json").unlink()
    with pytest.raises(FileNotFoundError, match="flat-models/small_doc.json"):
        data.load(tmp_path)


def test_nested_inputs_get_fresh_unique_ids_and_leave_the_dataset_alone():
    original = data.generated().nested.document
    a, b = with_unique_ids(original), with_unique_ids(original)
    ids = [a[f"embedded_str_doc_{n}"]["unique_id"] for n in range(1, 6)] + [i["unique_id"] for i in a["embedded_str_doc_array"]]
    assert len(set(ids)) == 7 and all(ObjectId.is_valid(i) for i in ids)
    assert a["embedded_str_doc_1"]["unique_id"] != b["embedded_str_doc_1"]["unique_id"]
    assert "unique_id" not in original["embedded_str_doc_1"] and "unique_id" not in a["embedded_int_doc_8"]


@pytest.mark.parametrize("model, make", [(SmallFlat, lambda s: dict(s.small.document)),
                                         (LargeNested, lambda s: with_unique_ids(s.nested.document))])
def test_raw_pymongo_inserts_exactly_what_astro_db_stores(model, make):
    sets = data.generated()
    doc = make(sets)
    with Database("mongomock://localhost/odm_unit", models=ASTRO_MODELS, ensure_indexes=False) as db:
        created = db.create(model, doc, lean=True)
        kept = db.mongo[model._meta["collection"]].find_one({"_id": created["_id"]})
    raw = stored(doc)
    assert list(raw) == list(kept)  # the same keys in the same order
    assert {k: v for k, v in raw.items() if k not in ("_id", "createdAt", "updatedAt")} == \
           {k: v for k, v in kept.items() if k not in ("_id", "createdAt", "updatedAt")}


# --- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--ops", "0"], "--ops must be at least 1"),
    (["--iterations", "0"], "--iterations must be at least 1"),
    (["--tasks", "small_create,bogus"], "unknown task(s) bogus"),
])
def test_bad_arguments_are_refused_before_any_server_starts(args, message):
    done = subprocess.run([sys.executable, str(ENTRY), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr


# --- the large nested model's own CPU: function calls per document ------------------------------

def _calls_per(fn: Any, items: list[Any]) -> float:
    from spies import calls_in

    calls, _ = calls_in(lambda: [fn(item) for item in items])
    return calls / len(items)


def test_the_nested_document_is_encoded_and_hydrated_within_its_function_call_budget():
    """LARGE_DOC_NESTED (five embedded documents of text, a list of two, seven of integers; ~200
    leaves): the document encoded by its class's compiled encoder (each embedded one by its
    own), each embedded document hydrated in one step. Function calls per document (cProfile's
    count, C functions included) before this round: encode 999, a read's hydration 480, a
    create's answer 479; after: 508, 135, 127 (the count includes the lambda that makes each call)."""
    from astro_db.models import codec

    make = lambda: with_unique_ids(data.generated().nested.document)  # noqa: E731
    inputs = [make() for _ in range(10)]
    expected = [codec.encode_new(LargeNested, copy.deepcopy(doc)) for doc in inputs]
    sons = [{"_id": ObjectId(), **son, "__v": 0} for son in expected]
    codec.hydrate(LargeNested, copy.deepcopy(sons[0]))  # every plan built outside the counts
    codec.hydrate_encoded(LargeNested, copy.deepcopy(sons[0]))
    assert _calls_per(lambda doc: codec.encode_new(LargeNested, doc), inputs) <= 510
    assert _calls_per(lambda son: codec.hydrate(LargeNested, son), sons) <= 140
    assert _calls_per(lambda son: codec.hydrate_encoded(LargeNested, son), sons) <= 140
    for son in sons:  # what the caller gets is MongoEngine's own instance
        built, theirs = codec.hydrate(LargeNested, copy.deepcopy(son)), LargeNested._from_son(copy.deepcopy(son))
        assert built == theirs and built.to_mongo() == theirs.to_mongo() and built.to_dict() == theirs.to_dict()
        assert built._data == theirs._data
        assert codec.hydrate_encoded(LargeNested, copy.deepcopy(son))._data == theirs._data
