"""Day-one CLI behaviour: no silent embedded database, backups that refuse to pretend, and
progress that reads well in a log. Refusals run through the installed ``astro-db`` script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from astro_db import backup as api
from astro_db.cli import NO_URL, cli
from astro_db.cli.backup import _Bars
from astro_db.errors import BackupError

URL = "mongomock://localhost/first_contact"
SCRIPT = Path(sys.executable).with_name("astro-db")

DATA_COMMANDS = [
    ["health"],
    ["stats"],
    ["explain", "User", "{}"],
    ["advise"],
    ["cleanup"],
    ["indexes", "list"],
    ["indexes", "sync"],
    ["indexes", "usage"],
    ["backup", "--repo", "{repo}"],
    ["restore", "--repo", "{repo}"],
    ["verify", "--deep", "--repo", "{repo}"],
    ["rotate-key"],
    ["migrate", "status", "--dir", "{repo}"],
    ["migrate", "up", "--dir", "{repo}"],
    ["migrate", "down", "--dir", "{repo}"],
    ["schema", "diff"],
    ["schema", "install"],
]


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def no_url_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MONGODB_URL"}


@pytest.fixture
def full_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    assert run("--url", URL, "backup", "--repo", str(repo)).exit_code == 0
    return repo


def test_the_real_entry_point_refuses_a_data_command_without_a_url(tmp_path):
    done = subprocess.run([str(SCRIPT), "backup", "--repo", str(tmp_path / "r")], env=no_url_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip() == f"error: {NO_URL}"  # one line, telling how to pass a URL
    assert not (tmp_path / "r").exists()  # nothing written


@pytest.mark.parametrize("args", DATA_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_data_command_refuses_to_run_without_a_url(args, tmp_path, monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    result = run(*[a.replace("{repo}", str(tmp_path)) for a in args])
    assert result.exit_code != 0
    assert "--url" in result.output and "MONGODB_URL" in result.output
    assert "Traceback" not in result.output


def test_an_explicit_mongomock_url_counts_as_a_url(tmp_path, monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    assert run("--url", URL, "indexes", "sync").exit_code == 0
    monkeypatch.setenv("MONGODB_URL", URL)
    assert run("stats").exit_code == 0


def test_commands_that_touch_no_data_still_run_without_a_url(monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    assert run("roles").exit_code == 0
    assert run("shard", "plan").exit_code == 0
    assert run("new-key").exit_code == 0


def test_verify_of_an_empty_directory_is_an_error(tmp_path):
    result = run("verify", "--repo", str(tmp_path))
    assert result.exit_code != 0 and "holds no backup sets" in result.output
    assert "OK" not in result.output


def test_verify_of_a_missing_directory_is_an_error(tmp_path):
    result = run("verify", "--repo", str(tmp_path / "nope"))
    assert result.exit_code != 0 and "no backup repository" in result.output


def test_restore_from_an_empty_or_missing_repository_is_an_error(tmp_path):
    for repo in (tmp_path, tmp_path / "nope"):
        result = run("--url", URL, "restore", "--repo", str(repo))
        assert result.exit_code != 0 and ("no backup sets" in result.output or "no backup repository" in result.output)


def test_backup_creates_only_the_last_directory_level(tmp_path):
    deep = tmp_path / "no" / "such" / "repo"
    result = run("--url", URL, "backup", "--repo", str(deep))
    assert result.exit_code != 0 and "parent directory" in result.output
    assert not (tmp_path / "no").exists()
    result = run("--url", URL, "backup", "--repo", str(tmp_path / "repo"))
    assert result.exit_code == 0 and (tmp_path / "repo").is_dir()


@pytest.mark.parametrize("retention", [["--keep-daily", "1"], ["--keep-weekly", "1"], ["--keep-daily", "1", "--keep-weekly", "2"]])
def test_prune_takes_any_retention_option_alone(full_repo, retention):
    result = run("backup", "prune", "--repo", str(full_repo), "--dry-run", *retention)
    assert result.exit_code == 0, result.output
    assert "kept 1 sets" in result.output


def test_prune_without_any_retention_is_refused_and_deletes_nothing(full_repo):
    before = sorted(p.name for p in full_repo.iterdir())
    result = run("backup", "prune", "--repo", str(full_repo))
    assert result.exit_code == 2 and "--keep-daily" in result.output
    assert sorted(p.name for p in full_repo.iterdir()) == before
    with pytest.raises(BackupError, match="retention"):
        api.prune(full_repo)


def test_progress_in_a_log_is_one_finished_line_per_step(capsys):
    bars = _Bars(enabled=True, tty=False)
    bars("users", 2, 5)
    bars("users", 3, 5)
    bars("birthCharts", 4, None)
    bars.close()
    assert capsys.readouterr().err.splitlines() == ["users: 5 done", "birthCharts: 4 done"]
