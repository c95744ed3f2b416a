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

    nox -s redis-lowest                  # the Redis bus and store tests on the lowest supported redis-py

The Redis bus reads a private attribute of redis-py (``astro_db/cache/redis_compat.py``): the
``redis-lowest`` session installs the slim ``test`` extra with the lowest redis-py the extras
allow (``REDIS_LOWEST``) and runs every test that talks to Redis (``REDIS_TESTS``, the live tier's
included; not the benchmark smoke tests). CI runs it after the 3.12 session, in the same job.
"""

from __future__ import annotations

import glob
import os

import nox

PYTHONS = ["3.11", "3.12", "3.13"]
DEFAULT_TIERS = ["tests/unit", "tests/models"]
# two xdist workers; the benchmark and notebook runs are CI's own step (.ci/run)
DEFAULT_ARGS = ["-n", "2", "--dist", "worksteal", "-m", "not benchmark and not notebooks", "-p", "no:cacheprovider", *DEFAULT_TIERS]

#: the lowest redis-py the extras allow (setup.cfg: redis>=5.0,...; tests/unit/test_redis_compat.py
#: holds them equal)
REDIS_LOWEST = "5.0.0"
#: every test file that talks to Redis (tests/unit/test_redis_compat.py checks none is missing)
REDIS_TESTS = [
    "tests/unit/test_redis_compat.py", "tests/unit/test_redis_fixture.py", "tests/unit/test_cache_bus.py",
    "tests/unit/test_cache_bus_frozen.py", "tests/unit/test_cache_bus_inline.py", "tests/unit/test_cache_bus_wire.py",
    "tests/unit/test_cache_bus_edges.py",
    "tests/unit/test_cache_selective.py",
    "tests/unit/test_cache_store_guards.py", "tests/unit/test_config_sections.py", "tests/unit/test_secrets_differential.py",
    "tests/live/test_cache_bus_live.py",
    "tests/live/test_cache_store_live.py", "tests/live/test_cache_store_attacks_live.py",
    "tests/live/test_cache_store_selective_live.py",
]
# the benchmark smoke tests (the web mix needs Flask, not in the slim extra) run once, in CI's own step
REDIS_ARGS = ["-n", "2", "--dist", "worksteal", "-m", "not benchmark and not notebooks", "-k", "not web_mix",
              "-p", "no:cacheprovider", *REDIS_TESTS]

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


@nox.session(python="3.12", name="redis-lowest")
def redis_lowest(session: nox.Session) -> None:
    """The Redis tests on the lowest supported redis-py (the slim test extra, that redis-py pinned)."""
    session.install("-e", ".[test]", f"redis=={REDIS_LOWEST}")
    session.run("python", "-c", f"import redis; assert redis.__version__ == {REDIS_LOWEST!r}, redis.__version__")
    session.run("python", "-m", "pytest", "-q", *(session.posargs or REDIS_ARGS))


@nox.session(python="3.11")
def mutation(session: nox.Session) -> None:
    """Mutation testing of the modules that guard data (docs/testing.md, "Mutation testing"):
    ``nox -s mutation -- [query access updates masking crypto] [--no-tables]``."""
    session.install("-e", ".[dev]")
    session.run("python", "tests/mutation/run.py", *session.posargs)
