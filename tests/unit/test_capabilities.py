"""What differs between backends is one capability object in one place (backends/capabilities.py),
computed once per Runtime, and no module branches on which backend it is."""

from __future__ import annotations

import re
from pathlib import Path

from astro_db import Database
from astro_db.backends.capabilities import EMBEDDED, SERVER, capabilities
from astro_db.config import DatabaseConfig

ROOT = Path(__file__).resolve().parents[2] / "astro_db"


def test_the_config_selects_the_capabilities():
    assert capabilities(DatabaseConfig(url="mongomock://localhost/x")) is EMBEDDED
    assert capabilities(DatabaseConfig(url="mongodb://db.example.com/x")) is SERVER
    assert EMBEDDED.name == "embedded" and not EMBEDDED.driver_events and not EMBEDDED.explain
    assert SERVER.name == "server" and SERVER.network and SERVER.raw_bson_inserts


def test_a_runtime_computes_them_once_and_the_modules_read_them_there():
    db = Database("mongomock://localhost/caps")
    rt = db.executor.runtime
    assert rt.capabilities is EMBEDDED
    assert rt.one_command_writes is False  # no bulkWrite
    assert db.health()["backend"] == "embedded"


def test_no_module_branches_on_which_backend_it_is():
    """Only the configuration (which backend the URL selects) and the capability module read
    ``is_embedded``; everything else asks a capability by name."""
    readers = sorted(str(p.relative_to(ROOT.parent)) for p in ROOT.rglob("*.py")
                     if re.search(r"\.is_embedded\b", p.read_text()))
    assert readers == ["astro_db/backends/capabilities.py"]
