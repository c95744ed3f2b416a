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

ENTRY = Path(__file__).resolve().parents[2] / "benchmarks" / "odm_bench.py"
TASKS = ("small_create", "small_update", "small_find", "small_fk_lookup", "large_create", "large_update",
         "nested_create", "nested_update", "nested_find", "nested_array_find")
SIDES = ("raw PyMongo", "astro_db default", "astro_db hooks off", "MongoEngine")
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
    assert "1 warm-up + 2 iterations per side in rotated order" in done.stdout
    percentile_header = next(line for line in lines if line.split()[:2] == ["task", "side"])
    assert percentile_header.split()[-8:] == ["p10", "p25", "p50", "p75", "p90", "p95", "p98", "p99"]
    saved = json.loads(figures.read_text())
    assert [t["task"] for t in saved["tasks"]] == list(TASKS)
    for task in saved["tasks"]:
        for side in SIDES:
            assert side in task["sides"] or side in task["blocked"], (task["task"], side)
        for side, figure in task["sides"].items():
            assert figure["iterations"] == 2 and len(figure["percentiles_s"]) == 8, (task["task"], side)
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5_000)
    try:
        assert not [name for name in client.list_database_names() if name.startswith("astro_odm_")]
    finally:
        client.close()
