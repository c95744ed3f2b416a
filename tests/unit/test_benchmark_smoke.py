"""The benchmark still runs (tiny mode, embedded backend): a smoke test, not a timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def test_the_benchmark_prints_its_tables_in_tiny_mode():
    done = subprocess.run([sys.executable, str(RUN), "--tiny", "--backend", "embedded"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for row in ("create (User)", "create_many (200)", "find lean (50)", "find hydrated (200)", "find_one (indexed)",
                "update", "find_one cached", "aggregate ($match+$group)"):
        assert row in out
    assert "cost as the users collection grows" in out
    assert "per-document CPU cost" in out and "BirthChart" in out
