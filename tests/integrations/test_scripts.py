"""The example scripts run top to bottom: quickstart.py and daily_insights.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import warnings

import pytest

from astro_db import Database
from astro_db.errors import EmbeddedDatabaseWarning

from .helpers import EXAMPLES, load_example

daily_insights = load_example("daily_insights")


@pytest.fixture
def db(embedded_url):
    with Database(embedded_url) as database:
        yield database


def embedded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MONGODB_URL"}


def test_quickstart_runs_on_the_embedded_backend(monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = load_example("quickstart").main()
    assert report["updated_insight"]["energyLevel"] == 85
    assert report["validation_error"] == {"energyLevel": "must be 0-100, got 150"}
    assert not [w for w in caught if issubclass(w.category, EmbeddedDatabaseWarning)]  # chosen on purpose


def test_quickstart_on_a_server_without_a_key_stops_before_writing_naming_the_setting(monkeypatch, down_url):
    """The key check comes first: nothing is written, not even a connection is made (the URL's
    server is down here, which would be a DatabaseConnectionError instead)."""
    monkeypatch.setenv("MONGODB_URL", down_url)
    monkeypatch.delenv("ASTRO_DB_ENCRYPTION_KEY", raising=False)
    with pytest.raises(SystemExit) as stopped:
        load_example("quickstart").main()
    message = str(stopped.value.code)
    assert "ASTRO_DB_ENCRYPTION_KEY" in message and "astro-db new-key" in message and "Nothing was written" in message


def test_daily_insights_chooses_the_embedded_backend_explicitly(monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = daily_insights.main(["--users", "1", "--days", "2"])
    assert out["created"] == 2
    assert not [w for w in caught if issubclass(w.category, EmbeddedDatabaseWarning)]


def test_a_run_over_days_long_past_reports_what_it_stored():
    """--start 2024-03-01 printed an empty report: the insights expired 90 days after their
    day, long gone, and a TTL index deletes them at once. They now live 90 days from the run."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "daily_insights.py"), "--users", "2", "--days", "3", "--start", "2024-03-01", "--json"],
        env=embedded_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["created"] == 6 and [row["days"] for row in report["users"]] == [3, 3]
    assert "EmbeddedDatabaseWarning" not in result.stderr


def test_an_insight_expires_ninety_days_after_its_day_or_after_the_run():
    now = dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc)
    past, future = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc), dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    assert daily_insights.expires_at(past, now) == now + dt.timedelta(days=90)
    assert daily_insights.expires_at(future, now) == future + dt.timedelta(days=90)


def test_daily_insights_stores_a_week_per_user_and_reports_it(db, capsys):
    out = daily_insights.main(["--users", "3", "--days", "7"], db=db)

    assert (out["created"], out["skipped"]) == (21, 0)
    assert db.count("PlanetaryInsight", {}) == 21
    assert [row["user"] for row in out["users"]] == ["Demo User 1", "Demo User 2", "Demo User 3"]
    for row in out["users"]:
        assert row["days"] == 7
        assert 0 <= row["lowest"] <= row["average"] <= row["highest"] <= 100
    assert "21 insights created" in capsys.readouterr().out


def test_the_reported_figures_match_the_stored_insights(db):
    out = daily_insights.main(["--users", "1", "--days", "5", "--json"], db=db)
    levels = [i.energy_level for i in db.find("PlanetaryInsight", {})]
    best = db.find("PlanetaryInsight", {}, sort=[("energyLevel", -1)], limit=1)[0]
    (row,) = out["users"]
    assert row["average"] == round(sum(levels) / len(levels), 1)
    assert (row["lowest"], row["highest"]) == (min(levels), max(levels))
    assert row["bestDay"] == best.date.date().isoformat()


def test_running_daily_insights_again_skips_the_days_already_stored(db):
    daily_insights.main(["--users", "2", "--days", "3"], db=db)
    again = daily_insights.main(["--users", "2", "--days", "4"], db=db)
    assert (again["created"], again["skipped"]) == (2, 6)
    assert db.count("User", {}) == 2
    assert db.count("PlanetaryInsight", {}) == 8


@pytest.mark.parametrize("args", [["--users", "0"], ["--days", "400"], ["--start", "yesterday"]])
def test_daily_insights_refuses_bad_arguments(db, args):
    with pytest.raises(SystemExit) as info:
        daily_insights.main(args, db=db)
    assert info.value.code == 2
    assert db.count("PlanetaryInsight", {}) == 0


def test_daily_insights_runs_as_a_script():
    start = dt.date.today().isoformat()
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "daily_insights.py"), "--users", "2", "--days", "7", "--start", start, "--json"],
        env=embedded_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["created"], report["from"], len(report["users"])) == (14, start, 2)
