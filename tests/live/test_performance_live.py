"""Fast paths and tooling against a live server (nx-27017, or ASTRO_DB_TEST_URI)."""

from __future__ import annotations

import json
import math

import pytest
from bson import ObjectId
from click.testing import CliRunner
from spies import CommandSpy

from astro_db import Database
from astro_db.cli import cli


@pytest.fixture
def counted(live_url):
    """A Database whose client reports its commands to a CommandSpy (hooks off: only our inserts)."""
    counter = CommandSpy()
    db = Database(live_url, ensure_indexes=False, audit=False, journal=False, server_selection_timeout_ms=3000,
                  event_listeners=[counter])
    with db:
        yield db, counter


def test_create_many_sends_one_insert_per_max_write_batch(counted):
    db, counter = counted
    batch = db.mongo.client.admin.command("hello")["maxWriteBatchSize"]
    user_id = ObjectId()
    items = [{"user_id": user_id, "date": f"2024-01-01T00:00:{n % 60:02d}Z", "energy_level": n % 100,
              "recommendations": ["Rest"], "summary": str(n)} for n in range(10_000)]
    for n, item in enumerate(items):  # (userId, date) is unique: give each its own minute
        item["date"] = f"2024-{1 + n // 2000:02d}-{1 + n % 2000 // 80:02d}T{n % 80 // 4:02d}:{n % 4 * 15:02d}:00Z"
    result = db.create_many("PlanetaryInsight", items)
    assert not result.failed
    inserts = [len(c.get("documents", [])) for c in counter.commands if "insert" in c]
    assert len(inserts) == math.ceil(10_000 / batch)
    assert sum(inserts) == 10_000
    assert db.count("PlanetaryInsight", {"userId": user_id}) == 10_000


def test_a_cached_find_one_sends_no_command(counted):
    db, counter = counted
    db.create("User", {"email": "ann@example.com", "name": "Ann"})
    first = db.find_one("User", {"email": "ann@example.com"}, cache=True)
    sent = list(counter.names)
    again = db.find_one("User", {"email": "ann@example.com"}, cache=True)
    assert again.name == first.name == "Ann" and again is not first
    assert counter.names == sent  # served from the cache: nothing went to the server
    db.update("User", {"id": first.id}, {"name": "Bob"})
    assert db.find_one("User", {"email": "ann@example.com"}, cache=True).name == "Bob"


def test_lean_find_returns_stored_dicts_with_projection_and_batch_size(live_url):
    with Database(live_url, ensure_indexes=False) as db:
        db.create_many("User", [{"email": f"u{n}@example.com", "name": f"U{n}"} for n in range(30)])
        rows = db.find("User", {}, projection=["email"], batch_size=7, lean=True, sort=[("email", 1)])
        assert len(rows) == 30
        assert type(rows[0]) is dict and set(rows[0]) == {"_id", "email"}


def test_cli_indexes_sync_then_list_on_a_live_server(live_url):
    runner = CliRunner()
    with Database(live_url, ensure_indexes=False) as db:
        db.collection("User").insert_one({"email": "x@example.com", "name": "X"})
        db.collection("User").create_index("name")
    synced = runner.invoke(cli, ["--url", live_url, "--json", "indexes", "sync"])
    assert synced.exit_code == 0, synced.output
    by_model = {r["model"]: r for r in json.loads(synced.output)}
    assert len(by_model["User"]["created"]) == 5 and len(by_model["User"]["extra"]) == 1  # (emailIndex_1 among them)
    listed = runner.invoke(cli, ["--url", live_url, "--json", "indexes", "list", "User"])
    assert listed.exit_code == 0, listed.output
    row = json.loads(listed.output)[0]
    assert all(d["on_server"] for d in row["declared"])
    assert [e["key"] for e in row["extra"]] == [[["name", 1]]]


def test_cli_indexes_usage_on_a_live_server(live_url):
    result = CliRunner().invoke(cli, ["--url", live_url, "--json", "indexes", "usage", "User"])
    report = json.loads(result.output)[0]
    if report["supported"]:  # a real MongoDB
        assert result.exit_code == 0
        assert all(isinstance(i["ops"], int) for i in report["indexes"])
    else:  # nx-27017 has no $indexStats
        assert result.exit_code == 1 and "$indexStats" in report["reason"]
