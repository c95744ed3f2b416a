"""The backup commands' shell: options, both --url spellings, exit codes (embedded backend)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from astro_db.cli import cli

URL = "mongomock://localhost/backup_cli"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_backup_takes_a_full_then_an_incremental_set_with_either_url_spelling(tmp_path):
    first = run("--url", URL, "backup", "--repo", str(tmp_path))
    second = run("backup", "--url", URL, "--repo", str(tmp_path))
    assert first.exit_code == 0 and "full backup set" in first.output
    assert second.exit_code == 0 and "incremental backup set" in second.output
    listed = json.loads(run("--json", "backup", "list", "--repo", str(tmp_path)).stdout)
    assert [s["kind"] for s in listed] == ["full", "incremental"]
    assert run("--url", URL, "backup", "--repo", str(tmp_path), "--full").stdout.startswith("full")


def test_backup_without_repo_is_a_usage_error():
    result = run("--url", URL, "backup")
    assert result.exit_code == 2 and "--repo" in result.output


def test_verify_exits_2_naming_the_bad_file(tmp_path):
    run("--url", URL, "backup", "--repo", str(tmp_path))
    assert run("verify", "--repo", str(tmp_path)).exit_code == 0
    victim = next(tmp_path.glob("*-full/users.bson.gz"))
    victim.unlink()
    result = run("verify", "--repo", str(tmp_path))
    assert result.exit_code == 2 and str(victim) in result.output and "missing" in result.output


def test_restore_reports_counts_and_prune_lists_what_it_deletes(tmp_path):
    run("--url", URL, "backup", "--repo", str(tmp_path))
    run("--url", URL, "backup", "--repo", str(tmp_path), "--full")
    restored = run("--url", URL, "restore", "--repo", str(tmp_path))
    assert restored.exit_code == 0 and "users" in restored.output
    pruned = run("backup", "prune", "--repo", str(tmp_path), "--keep-daily", "1", "--keep-weekly", "0", "--dry-run")
    assert pruned.exit_code == 0 and "would delete 1" in pruned.output
    assert len(list(tmp_path.glob("*-full"))) == 2


def test_restore_with_a_bad_until_fails_cleanly(tmp_path):
    run("--url", URL, "backup", "--repo", str(tmp_path))
    result = run("--url", URL, "restore", "--repo", str(tmp_path), "--until", "not-a-time")
    assert result.exit_code == 2 and "ISO-8601" in result.output
