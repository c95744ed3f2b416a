"""``astro-db indexes list | sync | usage`` and the library functions under them (embedded backend)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from astro_db import Database
from astro_db.cli import cli
from astro_db.indexes import INDEX_STATS_UNAVAILABLE, index_usage, list_model_indexes

URL = "mongomock://localhost/indexes_cli"


def run(*args: str):
    return CliRunner().invoke(cli, ["--url", URL, *args])


@pytest.fixture
def db():
    with Database(URL, ensure_indexes=False) as database:
        yield database


def test_list_shows_declared_indexes_missing_before_sync_and_present_after(db):
    user = db.executor.model("User")
    before = list_model_indexes(db.mongo, user)
    assert {d["name"]: d["on_server"] for d in before["declared"]} == {
        "email_1": None, "status_1": None, "lastActive_1": None, "status_1_lastActive_-1": None,
        "emailIndex_1": None}  # the email's blind index (security.blind)
    db.sync_indexes()
    db.collection("User").create_index("name", name="adhoc_name")
    after = list_model_indexes(db.mongo, user)
    assert all(d["on_server"] for d in after["declared"])
    assert after["extra"] == [{"name": "adhoc_name", "key": [["name", 1]]}]


def test_usage_says_clearly_when_the_server_has_no_index_stats(db):
    report = index_usage(db.mongo, db.executor.model("User"))
    assert report["supported"] is False and report["reason"] == INDEX_STATS_UNAVAILABLE


def test_cli_list_prints_each_model_and_its_index_state():
    result = run("indexes", "list")
    assert result.exit_code == 0, result.output
    assert "User (users)" in result.output and "PlanetaryInsight (planetaryInsights)" in result.output
    assert "MISSING  email_1" in result.output  # a fresh embedded backend has none yet


def test_cli_list_json_for_one_model():
    result = run("--json", "indexes", "list", "birth_chart")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [row["model"] for row in data] == ["BirthChart"]
    assert "birthData.location.coordinates_2dsphere" in [d["name"] for d in data[0]["declared"]]


def test_cli_sync_reports_what_it_created():
    result = run("indexes", "sync")
    assert result.exit_code == 0, result.output
    assert "User                   5 created, 0 present" in result.output  # emailIndex_1 among them
    assert "created summary_text_recommendations_text" in result.output


def test_cli_sync_json_lists_created_and_extra():
    result = run("--json", "indexes", "sync", "--drop-extra")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {r["model"] for r in data} == {"User", "BirthChart", "PlanetaryInsight", "TimingRecommendation"}
    assert all(r["dropped"] == [] and r["failed"] == {} for r in data)


def test_cli_usage_without_index_stats_prints_why_and_exits_1():
    result = run("indexes", "usage")
    assert result.exit_code == 1
    assert "index usage unavailable" in result.output and "$indexStats" in result.output


def test_cli_unknown_model_is_one_line_and_exit_2():
    result = run("indexes", "list", "Horoscope")
    assert result.exit_code == 2
    assert "unknown model 'Horoscope'" in result.output
