"""The Pythons astro_db claims (classifiers) are the ones nox tests (noxfile.py) and CI runs."""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_noxfile():
    spec = importlib.util.spec_from_file_location("astro_db_noxfile", ROOT / "noxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classifiers_name_exactly_the_pythons_nox_tests():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    classifiers = parser["metadata"]["classifiers"].split("\n")
    claimed = sorted(c.rsplit("::", 1)[1].strip() for c in classifiers if c.strip().startswith("Programming Language :: Python :: 3."))
    assert claimed == load_noxfile().PYTHONS == ["3.11", "3.12", "3.13"]
    assert parser["options"]["python_requires"].strip() == ">=3.11"


def test_nox_lists_one_tests_session_per_python():
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
