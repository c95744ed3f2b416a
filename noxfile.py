"""nox sessions: the test suite on every Python astro_db supports (3.11, 3.12, 3.13).

    nox                                  # tests on 3.11, 3.12 and 3.13: the unit and model tiers
    nox -s tests-3.13                    # one interpreter
    nox -s tests-3.12 -- tests/live -x   # anything after -- goes to pytest instead

Interpreters are found on PATH (``python3.12``) and in pyenv's version directories; nox never
downloads one. Each session installs the project with its slim ``test`` extra (pytest,
pytest-xdist, hypothesis, mongomock-ng, nx-27017, redis, OpenTelemetry; no Jupyter, matplotlib, Django or mutmut)
into a fresh virtualenv and runs the unit and model tiers in two pytest-xdist workers, without
the ``benchmark`` and ``notebooks`` tests (CI runs those once, in a step of their own). A session
fails when a test fails and when no test ran (pytest's exit status 5). CI (``.ci/run``) runs
the 3.12 and 3.13 sessions at the same time, as background jobs whose exit codes it checks.
"""

from __future__ import annotations

import glob
import os

import nox

PYTHONS = ["3.11", "3.12", "3.13"]
DEFAULT_TIERS = ["tests/unit", "tests/models"]
# two xdist workers; the benchmark and notebook runs are CI's own step (.ci/run)
DEFAULT_ARGS = ["-n", "2", "--dist", "worksteal", "-m", "not benchmark and not notebooks", "-p", "no:cacheprovider", *DEFAULT_TIERS]

nox.options.sessions = ["tests"]
nox.options.download_python = "never"
# uv makes the virtualenvs and installs into them when it is installed (CI installs it), else
# virtualenv and pip; uv never downloads an interpreter either.
nox.options.default_venv_backend = "uv|virtualenv"
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


def _pyenv_bins() -> list[str]:
    """pyenv's ``versions/*/bin`` directories (newest patch release of each minor first)."""
    roots = {os.path.expanduser("~/.pyenv"), "/root/.pyenv", os.environ.get("PYENV_ROOT", "")}
    bins = [b for root in roots if root for b in glob.glob(os.path.join(root, "versions", "3.*", "bin"))]
    return sorted(set(bins), reverse=True)


# Let nox's interpreter discovery see pyenv's Pythons without pyenv's shims being active.
os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Install the project with the slim test extra and run pytest (unit and model tiers by default)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", *(session.posargs or DEFAULT_ARGS))


@nox.session(python="3.11")
def mutation(session: nox.Session) -> None:
    """Mutation testing of the modules that guard data (docs/testing.md, "Mutation testing"):
    ``nox -s mutation -- [query access updates masking crypto] [--no-tables]``."""
    session.install("-e", ".[dev]")
    session.run("python", "tests/mutation/run.py", *session.posargs)
