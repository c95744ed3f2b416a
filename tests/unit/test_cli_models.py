"""``astro-db --models`` (``ASTRO_DB_MODELS``): every command serves the app's own models too, so
an operator's backup, index sync and cleanup cover them (embedded backend)."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from astro_db import errors
from astro_db.cli import cli
from astro_db.registry import load_models

URL = "mongomock://localhost/cli_models"
MODULE = '''
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField


class Diary(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    text = TextField(sensitive=True)
    meta = {"collection": "diaries", "owner": "user_id", "indexes": [{"fields": ["user_id"], "name": "userId_1"}]}


class Tag(AstroDocument):
    name = TextField()
    meta = {"collection": "tags"}
'''


@pytest.fixture
def app_module(tmp_path, monkeypatch):
    (tmp_path / "cli_app_models.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cli_app_models"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_load_models_takes_classes_or_whole_modules(app_module):
    assert [c.__name__ for c in load_models(f"{app_module}:Diary")] == ["Diary"]
    assert [c.__name__ for c in load_models(app_module)] == ["Diary", "Tag"]
    assert load_models(None) == [] and load_models("") == []
    for spec, message in ((f"{app_module}:Nope", "has no 'Nope'"), ("no_such_module_here", "cannot import"),
                          ("json", "defines no AstroDocument model"), ("json:dumps", "subclass of")):
        with pytest.raises(errors.ConfigError, match=message):
            load_models(spec)


def test_every_command_serves_the_models_given(app_module, tmp_path):
    synced = json.loads(run("--url", URL, "--models", f"{app_module}:Diary", "--json", "indexes", "sync").stdout)
    assert "Diary" in {r["model"] for r in synced}
    without = json.loads(run("--url", URL, "--json", "indexes", "sync").stdout)
    assert "Diary" not in {r["model"] for r in without}
    backed = run("--url", URL, "--json", "backup", "--repo", str(tmp_path / "repo"),
                 env={"ASTRO_DB_MODELS": app_module})
    assert backed.exit_code == 0, backed.output
    assert {"diaries", "tags"} <= set(json.loads(backed.stdout)["documents"])


def test_a_bad_models_option_exits_2_naming_it(app_module):
    result = run("--url", URL, "--models", f"{app_module}:Missing", "indexes", "sync")
    assert result.exit_code == 2 and "has no 'Missing'" in result.output
