"""Shared pytest configuration for astro_db.

Test tiers (docs/testing.md, "Tests"):
  unit    - pure logic and the embedded mongomock-ng backend; no server.
  live    - a real MongoDB-wire server: ASTRO_DB_TEST_URI if set, otherwise an
            nx-27017 server started for the session (tests/live/nxserver.py,
            through tests/nx_launcher.py, which patches its ObjectId bugs).
            Every test under tests/live/ is marked ``live`` automatically.
  mongodb - needs a real MongoDB; skipped unless ASTRO_DB_TEST_URI is set.
Across the tiers, ``benchmark`` (runs a script of benchmarks/) and ``notebooks`` (executes the
example notebooks) mark the slow subprocess runs CI keeps in a step of their own.
xdist-safe: the session fixtures (the nx-27017 server) are per worker, each on a free port and
its own temporary directory; redis_server is per test.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
LIVE_DIR = TESTS_DIR / "live"
TEST_URI_ENV = "ASTRO_DB_TEST_URI"

# tests/ helpers (live/nxserver.py) are imported as `live.nxserver`, whatever
# pytest's import mode or the presence of tests/__init__.py.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# Property tests without settings of their own draw Hypothesis's default number of examples,
# scaled like every explicit max_examples (tests/fuzzing.py: ASTRO_DB_FUZZ_SCALE, 1 unless set).
from fuzzing import DEFAULT, examples  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402

# No per-example deadline: CI runs three suites at once on two cores, and a deadline there fails
# a correct test for the machine's load (tests that want a time bound say so themselves).
_hypothesis_settings.register_profile("astro_db", max_examples=examples(DEFAULT), deadline=None)
_hypothesis_settings.load_profile("astro_db")


# ---------------------------------------------------------------------------
# Markers and tiers
# ---------------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live: needs a MongoDB-wire server (ASTRO_DB_TEST_URI, else a session nx-27017)",
    )
    config.addinivalue_line(
        "markers",
        f"mongodb: needs a real MongoDB; skipped unless {TEST_URI_ENV} is set",
    )
    config.addinivalue_line(
        "markers",
        "benchmark: runs a script of benchmarks/ (smoke tests, not timings); CI runs them in a step of their own",
    )
    config.addinivalue_line(
        "markers",
        "notebooks: executes the example notebooks (the notebooks extra); CI runs them in a step of their own",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_mongodb = pytest.mark.skip(reason=f"needs a real MongoDB: set {TEST_URI_ENV}")
    have_uri = bool(os.environ.get(TEST_URI_ENV))
    for item in items:
        if LIVE_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.live)
        if not have_uri and item.get_closest_marker("mongodb"):
            item.add_marker(skip_mongodb)


# ---------------------------------------------------------------------------
# Live server
# ---------------------------------------------------------------------------

class ExternalServer:
    """A MongoDB given by ASTRO_DB_TEST_URI: same interface as NxServer, no faults."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def url(self, dbname: str = "test") -> str:
        # Replace (or add) the database path; keep scheme, hosts, credentials
        # and options (e.g. authSource) as given.
        base, sep, query = self.uri.partition("?")
        scheme, _, rest = base.partition("://")
        hosts = rest.split("/", 1)[0]
        return f"{scheme}://{hosts}/{dbname}" + (f"?{query}" if sep else "")

    def kill(self) -> None:
        pytest.skip("fault tests need the nx-27017 server")

    def restart(self) -> None:
        pytest.skip("fault tests need the nx-27017 server")

    def alive(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "ExternalServer(<ASTRO_DB_TEST_URI>)"  # never show credentials


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory):
    """The session's MongoDB-wire server: ``.url(dbname)``, ``.kill()``, ``.restart()``."""
    uri = os.environ.get(TEST_URI_ENV)
    if uri:
        yield ExternalServer(uri)
        return

    from live.nxserver import NxServer, self_check

    server = NxServer(tmp_path_factory.mktemp("nx27017"))
    server.start()
    try:
        self_check(server.url("astro_self_check"))
        yield server
    finally:
        server.stop()


def _ensure_up(server) -> None:
    """A fault test may leave the nx-27017 server killed: bring it back."""
    if not server.alive():
        server.start()


@pytest.fixture
def live_url(live_server):
    """A URL to a fresh, uniquely named database; dropped after the test."""
    _ensure_up(live_server)
    dbname = f"astro_test_{uuid.uuid4().hex[:8]}"
    url = live_server.url(dbname)
    yield url

    _ensure_up(live_server)
    import pymongo

    client = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000, socketTimeoutMS=5000
    )
    try:
        client.drop_database(dbname)
    except Exception:
        pass  # best effort: the data directory is temporary anyway
    finally:
        client.close()


# ---------------------------------------------------------------------------
# Redis (the query cache's invalidation bus)
# ---------------------------------------------------------------------------

@pytest.fixture
def redis_server(tmp_path: Path):
    """A real ``redis-server`` for one test (``.url``, ``.kill()``, ``.restart()``), stopped by PID.

    Without a ``redis-server`` binary the test is skipped with the reason, unless
    ``ASTRO_DB_REQUIRE_REDIS=1`` (set by ``.ci/run``, which installs it): then it fails."""
    import shutil

    from redis_server import RedisServer

    if shutil.which("redis-server") is None and os.environ.get("ASTRO_DB_REQUIRE_REDIS") != "1":
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A redis-py client on ``redis_server`` (Redis thawed, should the test have frozen it, before
    it is closed)."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    yield client
    redis_server.thaw()
    client.close()


@pytest.fixture(autouse=True)
def _fresh_regex_verdicts():
    """The regex policy caches its verdict per pattern; every test judges afresh, so a test of
    the policy always runs the policy (and mutation testing sees each test exercise it)."""
    from astro_db.query.regex import clear_cache

    clear_cache()
    yield


@pytest.fixture(autouse=True)
def _fresh_compile_plans():
    """Filters and updates are planned per shape (``query.filters._FILTER_PLANS``,
    ``query.updates._PLANS``); every test starts with none, so a shape another test planned
    cannot skip the checks this test makes (mutation testing forks its runs from a process whose
    caches are warm: a warm plan would hide a mutant of the checks it skips)."""
    from astro_db.query import filters, updates

    filters._FILTER_PLANS.clear()
    updates._PLANS.clear()
    yield


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch):
    """``Database(...)`` takes ``MONGODB_URL`` and ``ASTRO_DB_<SETTING>`` from the environment
    (docs/configuration.md, "Precedence"): no test picks up the developer's or the CI's by
    accident. A test of the environment sets what it reads with ``monkeypatch.setenv``.
    (``ASTRO_DB_TEST_URI``, ``ASTRO_DB_REQUIRE_REDIS`` and ``ASTRO_DB_MIGRATIONS`` are no
    settings and stay.)"""
    from astro_db.config import ENV_PREFIX, URL_ENV, flat_types

    monkeypatch.delenv(URL_ENV, raising=False)
    for name in flat_types():
        monkeypatch.delenv(ENV_PREFIX + name.upper(), raising=False)
    yield


@pytest.fixture(autouse=True)
def _plaintext_personal_data_on_test_servers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live tier's tests written before personal fields were encrypted (the user's email and
    name, the birth date, the insight texts) run on the server without a key: there, as on the
    embedded backend, sensitive fields may be stored in clear unless a test says
    ``allow_plaintext_sensitive=False`` (or configures a key). Production's default is not
    changed: a server without a key refuses them (``backends/capabilities.py``); the tests of
    that refusal pass ``allow_plaintext_sensitive=False`` themselves."""
    import dataclasses

    from astro_db.backends import capabilities

    if request.node.get_closest_marker("live") is None:
        return  # the unit tier sees production's defaults

    monkeypatch.setattr(capabilities, "SERVER", dataclasses.replace(capabilities.SERVER, plaintext_by_default=True))
