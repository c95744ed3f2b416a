"""The ODM benchmark's ``--quick`` mode on a real server: every task and every side in the table.

Runs ``benchmarks/odm_bench.py --quick`` against the session's server (nx-27017, or
ASTRO_DB_TEST_URI), on generated documents of the spec's shapes and sizes. Checks that each of the
spec's tasks has a row with a score (or ``blocked``, with the reason) for every side, the targets'
ratios, the percentiles, and that the benchmark's database is dropped. Never asserts a speed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pymongo

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
ENTRY = BENCH / "odm_bench.py"
ASTRO_DB = str(Path(__file__).resolve().parents[2] / "astro_db")
TASKS = ("small_create", "small_update", "small_find", "small_fk_lookup", "large_create", "large_update",
         "nested_create", "nested_update", "nested_find", "nested_array_find")
SIDES = ("raw PyMongo", "astro_db default", "astro_db hooks off", "MongoEngine")
WIRE, WIRE_OFF = "raw PyMongo, astro_db's commands", "raw PyMongo, hooks off's commands"
WRITES = ("small_create", "small_update", "large_create", "large_update", "nested_create", "nested_update")
NUMBER = re.compile(r"^\d[\d,.e+-]*$")


def test_the_quick_run_prints_every_task_for_every_side(live_server, tmp_path):
    url = live_server.url("odm_unused")
    figures = tmp_path / "odm.json"
    env = {k: v for k, v in os.environ.items() if k != "ASTRO_DB_ODM_DATA"}  # generated documents
    done = subprocess.run([sys.executable, str(ENTRY), "--quick", "--url", url, "--json", str(figures)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("task ") and "MB/s" in line)
    for side in SIDES:
        assert f"{side} MB/s" in header
    for name in ("hooks off / raw (>= 0.85x)", "default / raw (>= 0.6x)", "default / MongoEngine (>= 1x)"):
        assert name in header
    start = lines.index(header)
    rows = {line.split()[0]: line.split() for line in lines[start + 1:start + 1 + len(TASKS)]}
    assert sorted(rows) == sorted(TASKS)
    for task, cells in rows.items():
        scores = cells[2:6]  # after the task and its operation count, one cell per side
        assert cells[1] == ("2" if task.startswith("large") else "10"), cells
        assert NUMBER.match(scores[0]) and NUMBER.match(scores[3]), (task, cells)  # raw and MongoEngine always run
        for side, cell in zip(SIDES[1:3], scores[1:3]):
            assert NUMBER.match(cell) or (cell == "blocked" and any(
                line.startswith(f"- {task}, {side}: ") for line in lines)), (task, side, cells)
        assert len([c for c in cells[6:] if c in ("met", "MISSED")]) in (0, 3), cells
    assert "generated (the spec's shapes and sizes)" in done.stdout
    assert "WARNING" not in done.stdout
    assert sum(line.endswith("same commands (bulkWrite x1)") for line in lines) == 2  # the small and nested creates
    # the large create (2.4 MB, above astro_db.ops.sizes.LARGE_DOCUMENT): its document, then its record
    assert any(line.lstrip(" -").startswith("large_create, ") and line.endswith("same commands (insert x2)") for line in lines)
    same = lines.index(next(line for line in lines if line.startswith("task") and "/ same commands MB/s" in line))
    assert [line.split()[0] for line in lines[same + 1:same + 10]] == [
        "small_create", "small_update", "small_update", "large_create", "large_update", "large_update",
        "nested_create", "nested_update", "nested_update"]
    assert "1 warm-up + 2 iterations per side in rotated order" in done.stdout
    percentile_header = next(line for line in lines if line.split()[:2] == ["task", "side"])
    assert percentile_header.split()[-8:] == ["p10", "p25", "p50", "p75", "p90", "p95", "p98", "p99"]
    saved = json.loads(figures.read_text())
    assert [t["task"] for t in saved["tasks"]] == list(TASKS)
    assert "astro_db hooks off, returning=False MB/s" in header
    for task in saved["tasks"]:
        for side in SIDES:
            assert side in task["sides"] or side in task["blocked"], (task["task"], side)
        assert ("astro_db hooks off, returning=False" in task["sides"]) == task["task"].endswith("_update"), task["task"]
        # raw PyMongo sending astro_db's commands: the write tasks, checked once each against astro_db's own
        assert (WIRE in task["sides"]) == (task["task"] in WRITES), task["task"]
        assert (WIRE_OFF in task["sides"]) == task["task"].endswith("_update"), task["task"]
        pairs = [c["pair"] for c in task["commands_check"]]
        expected = [] if task["task"] not in WRITES else [f"{task['task']}, astro_db default / {WIRE}"] + (
            [f"{task['task']}, astro_db hooks off / {WIRE_OFF}"] if task["task"].endswith("_update") else [])
        assert pairs == expected, task["task"]
        assert all(c["differences"] == [] for c in task["commands_check"]), task["commands_check"]
        sent = [c["commands"] for c in task["commands_check"]]
        creates = ["insert x2"] if task["task"] == "large_create" else ["bulkWrite x1"]  # 2.4 MB: two commands
        assert sent == {"create": creates, "update": ["findAndModify x1, insert x1", "findAndModify x1"]}.get(
            task["task"].rpartition("_")[2], []), (task["task"], sent)
        for side, figure in task["sides"].items():
            assert figure["iterations"] == 2 and len(figure["percentiles_s"]) == 8, (task["task"], side)
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5_000)
    try:
        assert not [name for name in client.list_database_names() if name.startswith("astro_odm_")]
    finally:
        client.close()


def _astro_calls(fn) -> list[str]:
    """Functions of the astro_db package that run during ``fn()``."""
    seen: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(ASTRO_DB):
            seen.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


def test_only_the_astro_db_sides_run_astro_db_code_and_every_side_does_its_work(live_server):
    sys.path.insert(0, str(BENCH))
    from odm.data import generated
    from odm.models import ASTRO_MODELS
    from odm.tasks import NO_RETURN, RAW, TASKS, open_sides

    data = generated()
    with open_sides(live_server.url("odm_unused"), ASTRO_MODELS) as sides:
        for task in TASKS:
            ops = 1 if task.dataset == "large" else 3
            operation, blocked = task.build(sides, data, ops)
            assert operation.variants[0].label == RAW  # the baseline
            sides_of_task = (*SIDES, NO_RETURN, WIRE, WIRE_OFF) if task.update else (  # returning=False: the updates'
                (*SIDES, WIRE) if task.writes else SIDES)  # raw PyMongo sending astro_db's commands: the writes
            assert sorted([v.label for v in operation.variants] + list(blocked)) == sorted(sides_of_task), task.key
            assert set(blocked) <= {"astro_db default", "astro_db hooks off"}, (task.key, blocked)
            for variant in operation.variants:
                variant.setup()
                calls = _astro_calls(lambda: [variant.op(i) for i in range(ops)])  # noqa: B023
                if variant.label.startswith("astro_db"):
                    assert calls, (task.key, variant.label)
                else:
                    assert calls == [], (task.key, variant.label, calls[:5])
                variant.check()  # raises WorkNotDone if the side skipped its work
