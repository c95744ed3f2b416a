"""What docs/testing.md promises about the Redis tests: without a ``redis-server`` binary they
skip, saying why; with ``ASTRO_DB_REQUIRE_REDIS=1`` (CI) they fail instead of skipping.

Each case runs one Redis test through ``pytest.main`` (what ``python -m pytest`` calls), in this
process, with a ``PATH`` that holds no ``redis-server``, and reads pytest's own reports: the same
run as a subprocess, without a second interpreter importing astro_db and pytest's plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS_TEST = "tests/unit/test_cache_bus.py::test_the_bus_reconnects_and_drops_what_it_held"


class _Reports:
    """A pytest plugin keeping every test report of the inner run."""

    def __init__(self) -> None:
        self.reports: list[Any] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.reports.append(report)


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, list[Any]]:
    monkeypatch.delenv("ASTRO_DB_REQUIRE_REDIS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on this PATH
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kept = _Reports()
    code = pytest.main(["-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--rootdir", str(ROOT),
                        str(ROOT / REDIS_TEST)], plugins=[kept])
    return int(code), kept.reports


def test_without_redis_server_the_redis_tests_skip_saying_why(tmp_path, monkeypatch):
    code, reports = _run(tmp_path, monkeypatch)
    assert code == pytest.ExitCode.OK
    skipped = [r for r in reports if r.skipped]
    assert len(skipped) == 1 and not any(r.failed for r in reports)
    assert "redis-server is not installed" in str(skipped[0].longrepr)


def test_with_astro_db_require_redis_they_fail_instead(tmp_path, monkeypatch):
    code, reports = _run(tmp_path, monkeypatch, ASTRO_DB_REQUIRE_REDIS="1")
    assert code == pytest.ExitCode.TESTS_FAILED
    assert [r.when for r in reports if r.failed] == ["setup"]  # the fixture errors: "1 error"
    assert not any(r.skipped for r in reports)
