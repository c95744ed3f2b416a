"""What docs/testing.md promises about the Redis tests: without a ``redis-server`` binary they
skip, saying why; with ``ASTRO_DB_REQUIRE_REDIS=1`` (CI) they fail instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS_TEST = "tests/unit/test_cache_bus.py::test_the_bus_reconnects_and_drops_what_it_held"


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "ASTRO_DB_REQUIRE_REDIS"}
    environ.update(PATH=str(tmp_path), PYTHONPATH=str(ROOT), **env)  # no redis-server on this PATH
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rs", "-q", REDIS_TEST],
                          capture_output=True, text=True, cwd=ROOT, env=environ, timeout=120)


def test_without_redis_server_the_redis_tests_skip_saying_why(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 skipped" in done.stdout and "redis-server is not installed" in done.stdout


def test_with_astro_db_require_redis_they_fail_instead(tmp_path):
    done = _run(tmp_path, ASTRO_DB_REQUIRE_REDIS="1")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 error" in done.stdout or "1 failed" in done.stdout
