"""The number of examples a property test draws (tests/fuzzing.py): all of them unless
``ASTRO_DB_FUZZ_SCALE`` asks for fewer, never below the floor, and a bad scale is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fuzzing import DEFAULT, FLOOR, examples, scale
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_scale_every_example_is_drawn():
    assert scale({}) == 1.0 and scale({"ASTRO_DB_FUZZ_SCALE": " "}) == 1.0
    assert examples(400, {}) == 400 and examples(3, {}) == 3


def test_a_scale_draws_that_share_never_below_the_floor_nor_above_the_count():
    env = {"ASTRO_DB_FUZZ_SCALE": "0.25"}
    assert examples(400, env) == 100
    assert examples(20, env) == FLOOR
    assert examples(5, env) == 5  # a test asking for fewer than the floor keeps its own count


@pytest.mark.parametrize("raw", ["0", "-1", "1.5", "abc", "nan", "inf"])
def test_a_scale_outside_zero_to_one_is_refused(raw):
    with pytest.raises(ValueError, match="ASTRO_DB_FUZZ_SCALE must be a number in"):
        scale({"ASTRO_DB_FUZZ_SCALE": raw})


def test_the_suite_loads_a_profile_scaled_like_the_explicit_counts():
    assert settings.default.max_examples == examples(DEFAULT)


def test_ci_scales_the_matrix_only():
    script = (ROOT / ".ci" / "run").read_text()
    assert "ASTRO_DB_FUZZ_SCALE=0.25 setsid python -m nox" in script  # the 3.12 / 3.13 sessions
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert sum("ASTRO_DB_FUZZ_SCALE" in line for line in commands) == 1  # the README's command on 3.11 draws every example


def test_a_scaled_run_draws_fewer_examples(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "from fuzzing import examples\n"
        "from hypothesis import given, settings, strategies as st\n"
        "SEEN = []\n"
        "@given(st.integers())\n"
        "@settings(max_examples=examples(200), database=None)\n"
        "def test_count(x):\n"
        "    SEEN.append(x)\n"
        "def test_report():\n"
        "    print('drawn', len(SEEN))\n"
    )
    def drawn(**env: str) -> int:
        import os
        environ = {k: v for k, v in os.environ.items() if k != "ASTRO_DB_FUZZ_SCALE"} | env
        environ["PYTHONPATH"] = str(ROOT / "tests")
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "no:xdist",
                               "-p", "no:randomly", str(probe)], capture_output=True, text=True, cwd=tmp_path, env=environ,
                              timeout=120)
        assert done.returncode == 0, done.stdout[-2000:]
        return int(done.stdout.split("drawn ")[1].split()[0])
    assert drawn() == 200
    assert drawn(ASTRO_DB_FUZZ_SCALE="0.25") == 50
