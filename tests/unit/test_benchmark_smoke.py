"""The benchmark runs end to end (tiny mode, embedded backend): a smoke test, not a timing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
BOTH = ("raw PyMongo", "astro_db default", "astro_db hooks off")
WIRE, WIRE_OFF = "raw PyMongo, astro_db's commands", "raw PyMongo, hooks off's commands"
OPERATIONS = {  # every operation's row, with the variants it compares
    "create x10": (*BOTH, "MongoEngine", "MongoEngine from dicts", WIRE),
    "create_many 30": (*BOTH, "MongoEngine", "MongoEngine from dicts", WIRE),
    "update x10": (*BOTH, "raw update_one", "astro_db hooks off, returning=False", WIRE, WIRE_OFF),
    "find_one by id x10": (*BOTH, "MongoEngine", "raw PyMongo, pymongo.timeout(30)"),
    "find lean 40 docs": BOTH,
    "find hydrated 40 docs": (*BOTH, "MongoEngine"),
    "find_one cached x10": ("raw PyMongo", "astro_db default", "astro_db cached"),
}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True, timeout=300, env=env)


def test_the_benchmark_prints_every_operation_and_its_ratios_in_tiny_mode():
    done = _run("--tiny", "--backend", "embedded", "--rounds", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    header = next(line for line in out.splitlines() if line.startswith("operation"))
    assert header.split()[:2] == ["operation", "variant"] and "wall vs raw" in header and "CPU/doc vs raw" in header
    table = out.split("\ntarget ")[0]  # the variants table (the same-commands table follows the targets)
    for operation, variants in OPERATIONS.items():
        rows = [line for line in table.splitlines() if line.startswith(operation + " ")]
        # a column ends at two spaces, so "MongoEngine" does not match "MongoEngine from dicts"
        assert sorted(v for row in rows for v in variants if re.search(rf"\s{re.escape(v)}\s{{2,}}", row)) == sorted(variants), operation
        assert len(rows) == len(variants)
        assert all(row.rstrip().endswith("x") for row in rows), rows  # the CPU ratio closes every row
    assert "cached find_one, times faster than uncached" in out
    assert "1 warm-up + 2 rounds in rotated order" in out and "CPU: " in out and "date: " in out
    # astro_db against raw PyMongo sending its commands: one row per pair, after the targets
    lines = out.splitlines()
    same = lines.index(next(line for line in lines if line.startswith("operation") and "wall vs same commands" in line))
    assert [" ".join(line.split()[:4]) for line in lines[same + 1:same + 5]] == [
        "create x10 astro_db default", "create_many 30 astro_db default", "update x10 astro_db default",
        "update x10 astro_db hooks"]
    assert "not checked: the embedded backend reports no commands" in out  # no command events there


def test_the_markdown_output_is_a_table():
    done = _run("--tiny", "--backend", "embedded", "--rounds", "1", "--markdown")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| operation | variant | wall/op |" in done.stdout
    assert "| target | measured | per round (median, min-max) | bound |" in done.stdout


def test_the_mongodb_row_without_a_uri_says_what_is_missing():
    env = {k: v for k, v in os.environ.items() if k != "ASTRO_DB_TEST_URI"}
    done = _run("--tiny", "--backend", "uri", env=env)
    assert done.returncode != 0
    assert "ASTRO_DB_TEST_URI" in done.stderr


def test_rounds_below_one_are_refused():
    done = _run("--tiny", "--rounds", "0")
    assert done.returncode == 2 and "--rounds must be at least 1" in done.stderr


def test_the_per_document_cpu_table_still_prints():
    done = subprocess.run([sys.executable, str(RUN.parent / "codec_cost.py"), "--tiny"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "per-document CPU cost" in done.stdout
    assert sum(model in line for line in done.stdout.splitlines() for model in ("PlanetaryInsight", "BirthChart")) == 4


def test_the_create_many_split_runs_and_prints_every_phase():
    """``benchmarks/bulk_cost.py`` (docs/performance.md, "create_many and its change records"):
    a few documents on the embedded backend, collections that answer at once."""
    done = subprocess.run([sys.executable, str(RUN.parent / "bulk_cost.py"), "--backend", "embedded", "--no-driver",
                           "--n", "40", "--rounds", "1", "--top", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for line in ("default ", "hooks off ", "validation and codec", "service fields and _id", "sealing (no key)",
                 "change records: build", "BSON: documents", "BSON: change records"):
        assert line in out, line
    assert out.count("function calls per document") == 2


def test_the_bus_cost_benchmark_prints_every_mode_and_thread(tmp_path):
    """``benchmarks/bus_cost.py`` (docs/caching.md, "Cost"): a real redis-server, tiny mode."""
    import shutil

    if shutil.which("redis-server") is None and os.environ.get("ASTRO_DB_REQUIRE_REDIS") != "1":
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    script = RUN.parent / "bus_cost.py"
    done = subprocess.run([sys.executable, str(script), "--tiny"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(RUN.parents[1])))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("mode"))
    assert header.split()[:6] == ["mode", "process", "request", "publisher", "own", "sub"]
    for mode in ("paced", "busy", "burst"):
        row = next(line for line in lines if line.startswith(mode + " ") and "idle" not in line)
        assert 1 <= int(row.split()[-1]) <= 20  # the messages sent: writes under way together coalesce
        assert any(line.startswith(mode + " ") and "idle, per second" in line for line in lines)


def test_the_cold_measurement_prints_hot_cold_and_raw_per_kind():
    """``benchmarks/profile_calls.py --cold`` (docs/performance.md, "Cold and hot"): astro_db's own
    CPU per call back to back and after a raw PyMongo call, against an nx-27017 server it starts."""
    script = RUN.parent / "profile_calls.py"
    done = subprocess.run([sys.executable, str(script), "--cold", "--kinds", "find_one,create", "--rounds", "1",
                           "--batch", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert next(line for line in lines if line.startswith("call")).split() == [
        "call", "hot", "cold", "cold/hot", "raw", "1+cold/raw"]
    for kind in ("find_one", "create"):
        row = next(line for line in lines if line.startswith(kind + " ")).split()
        hot, cold, raw = float(row[1]), float(row[2]), float(row[4])
        assert hot > 0 and cold > 0 and raw > 0
        # the ratios are of the unrounded figures: as printed, within the rounding of one decimal
        assert float(row[3].rstrip("x")) == pytest.approx(cold / hot, rel=0.2, abs=0.02)
        assert float(row[5].rstrip("x")) == pytest.approx(1 + cold / raw, rel=0.05, abs=0.02)


def test_the_decomposition_prints_four_sides_and_what_they_say_per_kind():
    """``benchmarks/profile_calls.py --decompose`` (docs/performance.md, "Where the per-call bounds
    stand"): raw, raw under the budget, astro_db unbounded and as configured, interleaved."""
    done = subprocess.run([sys.executable, str(RUN.parent / "profile_calls.py"), "--decompose", "--kinds",
                           "find_one,create", "--rounds", "2", "--batch", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert next(line for line in lines if line.startswith("call")).split() == [
        "call", "raw", "raw+budget", "astro", "none", "astro_db", "budget", "own", "ratio", "vs", "r+b", "own@1.3x"]
    for kind in ("find_one", "create"):
        row = next(line for line in lines if line.startswith(kind + " ")).split()
        raw, bounded, unbounded, astro, budget, own = (float(v) for v in row[1:7])
        assert min(raw, bounded, unbounded, astro) > 0
        assert budget == pytest.approx(bounded - raw, abs=0.11) and own == pytest.approx(astro - bounded, abs=0.11)
        assert float(row[7].rstrip("x")) == pytest.approx(astro / raw, abs=0.011)
        assert float(row[8].rstrip("x")) == pytest.approx(astro / bounded, abs=0.011)
        assert float(row[9]) == pytest.approx(0.3 * raw - budget, abs=0.11)
    refused = subprocess.run([sys.executable, str(RUN.parent / "profile_calls.py"), "--decompose", "--no-budget"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--decompose is its own measurement" in refused.stderr


def test_the_sections_measurement_prints_each_declared_section_hot_and_cold():
    """``profile_calls.py --cold --sections`` (docs/performance.md, "Where the cold cost goes"):
    every section declared for a kind is found, wrapped and timed inside the call, hot and
    cold, a section never longer than the one it is nested in, and the functions put back."""
    path = list(sys.path)
    sys.path.insert(0, str(RUN.parent))
    try:
        import profile_calls  # it puts benchmarks/ and tests/ on the path itself
    finally:
        sys.path[:] = path
    script = RUN.parent / "profile_calls.py"
    kinds = ("create", "update_nr", "find_one")
    done = subprocess.run([sys.executable, str(script), "--cold", "--sections", "--kinds", ",".join(kinds),
                           "--rounds", "1", "--batch", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for kind in kinds:
        head = next(i for i, line in enumerate(lines) if line.startswith(f"## {kind}: "))
        assert re.match(rf"## {kind}: \d+ Python calls \(\d+ distinct code objects\), \d+ calls of \d+ distinct C "
                        r"functions per call$", lines[head])
        assert lines[head + 1].split() == ["section", "hot", "cold", "cold-hot"]
        specs = profile_calls.SECTIONS[kind]
        rows = lines[head + 2:head + 2 + len(specs)]
        parents: list[float] = []
        for spec, row in zip(specs, rows, strict=True):
            depth = (len(spec) - len(spec.lstrip(" "))) // 2
            assert row.startswith("  " * depth + spec.strip().partition("=")[0] + " ")
            hot, cold, more = (float(x) for x in row.split()[-3:])
            assert hot > 0 and cold > 0 and more == pytest.approx(cold - hot, abs=0.11)
            parents[depth:] = [hot]
            if depth:
                assert hot <= parents[depth - 1] + 0.1  # nested: inside its parent's time


def test_the_ab_measurement_asks_both_trees_batch_by_batch():
    """``profile_calls.py --cold --against TREE`` (docs/performance.md, "Where the cold cost
    goes"): one worker per tree, each importing its tree's astro_db (here this tree twice: an
    A/A run), every kind's hot and cold medians of both, new/old and the Python calls per call."""
    root = RUN.parents[1]
    done = subprocess.run([sys.executable, str(RUN.parent / "profile_calls.py"), "--cold", "--against", str(root),
                           "--kinds", "find_one,create", "--rounds", "1", "--batch", "3"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(root)))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert f"old = {root}, new = {root}" in lines[0]
    assert next(line for line in lines if line.startswith("call")).split() == [
        "call", "old", "hot", "new", "hot", "old", "cold", "new", "cold", "new/old", "old", "calls", "new", "calls"]
    for kind in ("find_one", "create"):
        row = next(line for line in lines if line.startswith(kind + " ")).split()
        old_hot, new_hot, old_cold, new_cold = map(float, row[1:5])
        assert min(old_hot, new_hot, old_cold, new_cold) > 0
        assert float(row[5].rstrip("x")) == pytest.approx(new_cold / old_cold, rel=0.05, abs=0.002)
        assert int(row[6]) == int(row[7]) > 10  # the same code: the same Python calls per call


def test_the_primitives_measurement_prints_each_building_block_hot_and_cold():
    done = subprocess.run([sys.executable, str(RUN.parent / "profile_calls.py"), "--cold", "--primitives",
                           "--kinds", "find_one", "--rounds", "1", "--batch", "3"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("block"))
    rows = {line[:26].strip(): line[26:].split() for line in lines[head + 1:] if line.strip()}
    assert {"ids.new_id()", "utcnow()", "email rule (re)", "pymongo.timeout(30)", "run step's bound"} <= set(rows)
    for hot, cold, more in rows.values():
        assert float(hot) > 0 and float(cold) > 0 and float(more) == pytest.approx(float(cold) - float(hot), abs=0.011)


@pytest.mark.parametrize("args", [["--sections"], ["--primitives"], ["--against", "."],
                                  ["--cold", "--sections", "--primitives"]])
def test_sections_primitives_and_against_are_modes_of_cold_one_at_a_time(args):
    done = subprocess.run([sys.executable, str(RUN.parent / "profile_calls.py"), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert ("are modes of --cold" in done.stderr) != ("one measurement each" in done.stderr)


def test_cold_is_its_own_measurement():
    done = subprocess.run([sys.executable, str(RUN.parent / "profile_calls.py"), "--cold", "--no-driver"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--cold is its own measurement" in done.stderr
