"""The Pythons astro_db claims (classifiers) are the ones nox tests (noxfile.py) and CI runs."""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_noxfile():
    spec = importlib.util.spec_from_file_location("astro_db_noxfile", ROOT / "noxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classifiers_name_exactly_the_pythons_nox_tests():
    pytest.importorskip("nox", reason="nox is in the dev extra, not in the matrix's slim test extra")
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    classifiers = parser["metadata"]["classifiers"].split("\n")
    claimed = sorted(c.rsplit("::", 1)[1].strip() for c in classifiers if c.strip().startswith("Programming Language :: Python :: 3."))
    assert claimed == load_noxfile().PYTHONS == ["3.11", "3.12", "3.13"]
    assert parser["options"]["python_requires"].strip() == ">=3.11"


def test_nox_lists_one_tests_session_per_python():
    pytest.importorskip("nox", reason="nox is in the dev extra, not in the matrix's slim test extra")
    done = subprocess.run([sys.executable, "-m", "nox", "--list", "-f", str(ROOT / "noxfile.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for version in ("3.11", "3.12", "3.13"):
        assert f"tests-{version}" in done.stdout


def test_ci_runs_the_other_pythons_through_nox_and_fails_when_they_fail():
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    assert "nox" in script and "tests-3.12" in script and "tests-3.13" in script
    assert "--error-on-missing-interpreters" in script  # a missing Python is a failure, not a skip


def test_ci_runs_the_matrix_in_parallel_on_the_slim_extra_and_checks_each_exit_code():
    script = (ROOT / ".ci" / "run").read_text()
    assert "sessions=(tests-3.12 tests-3.13)" in script and "for session in \"${sessions[@]}\"; do" in script
    assert '&\n  matrix_pids+=("$!")' in script  # background jobs ...
    assert 'wait "${matrix_pids[$i]}" || status=$?' in script  # ... whose exit codes are checked
    assert 'exit "$failed"' in script
    noxfile = (ROOT / "noxfile.py").read_text()  # read, not imported twice (nox would register twice)
    assert 'DEFAULT_ARGS = ["-n", "2", "--dist", "worksteal", "-m", "not benchmark and not notebooks"' in noxfile
    assert 'session.install("-e", ".[test]")' in noxfile
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    slim = parser["options.extras_require"]["test"]
    assert "pytest-xdist" in slim and "pytest-xdist" in parser["options.extras_require"]["dev"]
    for heavy in ("matplotlib", "nbclient", "ipykernel", "Django", "Flask", "mutmut", "mkdocs"):
        assert heavy not in slim


def test_ci_runs_the_readme_command_in_two_steps_and_fails_when_no_test_ran():
    script = (ROOT / ".ci" / "run").read_text()
    assert 'pytest_step -n 2 --dist worksteal --durations=15 -m "not benchmark and not notebooks"' in script
    assert "ASTRO_DB_REQUIRE_NODE=1" in script and 'wait "$node_install"' in script  # the Node round trip runs
    assert 'pytest_step -n 2 -m "benchmark or notebooks"' in script
    assert '"$status" -eq 5' in script
    assert "ASTRO_DB_REQUIRE_REDIS=1" in script and "apt-get install -y -qq redis-server" in script
    assert "mypy --strict astro_db tests/typing" in script and "mkdocs build --strict" in script
