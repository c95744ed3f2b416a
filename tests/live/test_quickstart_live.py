"""The quickstart runs unchanged on a live server when MONGODB_URL points at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def test_quickstart_runs_against_the_live_server(live_url):
    from astro_db.security import new_key

    env = {**os.environ, "MONGODB_URL": live_url, "ASTRO_DB_ENCRYPTION_KEY": new_key()}
    done = subprocess.run([sys.executable, str(QUICKSTART)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["updated_insight"]["energyLevel"] == 85
    assert report["chart"]["userId"] == report["user"]["id"]
    assert report["average_energy"] == 71.0 and report["best_window"] == 82
    assert report["validation_error"] == {"energyLevel": "must be 0-100, got 150"}
    assert "embedded" not in done.stderr  # it really used the server


def test_without_a_key_the_quickstart_stops_before_writing_and_names_the_setting(live_url):
    """It used to write a user, then die on EncryptionError at the birth chart, leaving the user."""
    import pymongo

    env = {k: v for k, v in os.environ.items() if k != "ASTRO_DB_ENCRYPTION_KEY"} | {"MONGODB_URL": live_url}
    done = subprocess.run([sys.executable, str(QUICKSTART)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "ASTRO_DB_ENCRYPTION_KEY" in done.stderr and "astro-db new-key" in done.stderr
    assert "Traceback" not in done.stderr
    client = pymongo.MongoClient(live_url, serverSelectionTimeoutMS=5000)
    try:
        assert client.get_default_database()["users"].count_documents({}) == 0  # nothing left behind
    finally:
        client.close()


def test_the_flask_example_with_a_key_creates_a_chart_on_the_server(live_url):
    """POST /users/<id>/chart against a server: 201 with a key (a start-up refusal without one)."""
    from integrations.helpers import load_example

    from astro_db.security import new_key
    from astro_db.testing import Factories

    flask_app = load_example("flask_app")
    app = flask_app.create_app({"ASTRO_DB_URL": live_url, "TESTING": True, "ASTRO_DB_OPTIONS": {"encryption_key": new_key()}})
    try:
        client = app.test_client()
        user = client.post("/users", json={"email": "ann@example.com", "name": "Ann"}).get_json()
        chart = client.post(f"/users/{user['id']}/chart", json=Factories().birth_chart(user["id"]))
        assert chart.status_code == 201, chart.get_json()
        assert client.get(f"/users/{user['id']}/chart").get_json()["birthData"]["location"]["name"]
    finally:
        flask_app.astro.close(app)
