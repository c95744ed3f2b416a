"""astro-db health / stats / explain / advise / cleanup on the embedded backend and a dead server."""

from __future__ import annotations

import json
import socket

from click.testing import CliRunner

from astro_db.cli import cli

EMBEDDED = "mongomock://localhost/cli"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_ok_exits_0():
    result = run("--url", EMBEDDED, "health")
    assert result.exit_code == 0 and "status:   ok" in result.output


def test_health_json_is_the_report():
    result = run("--url", EMBEDDED, "--json", "health")
    assert result.exit_code == 0 and json.loads(result.output)["status"] == "ok"


def test_health_of_a_dead_server_exits_2_with_the_reason():
    result = run("--url", f"mongodb://127.0.0.1:{closed_port()}/astro", "health", "--timeout", "0.3")
    assert result.exit_code == 2
    assert "status:   down" in result.output and "ping failed" in result.output and "Traceback" not in result.output


def test_stats_lists_every_collection_and_says_sizes_are_unavailable():
    result = run("--url", EMBEDDED, "stats")
    assert result.exit_code == 0
    for collection in ("users", "birthCharts", "planetaryInsights", "timingRecommendations"):
        assert collection in result.output
    assert "sizes are not available" in result.output


def test_explain_on_the_embedded_backend_prints_why_there_is_no_plan():
    result = run("--url", EMBEDDED, "explain", "User", '{"email": "a@example.com"}')
    assert result.exit_code == 0 and "unavailable" in result.output and "no query planner" in result.output


def test_bad_query_json_is_one_line_and_exit_2():
    result = CliRunner().invoke(cli, ["--url", EMBEDDED, "explain", "User", '{"email":'])
    assert result.exit_code == 2 and result.output.strip().startswith("error: QUERY_JSON is not valid JSON")
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_model_is_one_line_and_exit_2():
    result = CliRunner().invoke(cli, ["--url", EMBEDDED, "explain", "Horoscope", "{}"])
    assert result.exit_code == 2 and "unknown model 'Horoscope'" in result.output and "Traceback" not in result.output


def test_advise_and_cleanup_run_on_an_empty_database():
    assert run("--url", EMBEDDED, "advise").exit_code == 0
    result = run("--url", EMBEDDED, "--json", "cleanup", "--dry-run")
    assert result.exit_code == 0 and json.loads(result.output)["total"] == 0
