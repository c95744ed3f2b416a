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
