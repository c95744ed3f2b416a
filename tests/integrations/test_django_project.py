"""examples/django_project and astro_db.contrib.django through Django's test client."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import time

import pytest
from django.test import SimpleTestCase

from astro_db import Database, DatabaseConfig, __version__, errors
from astro_db.contrib.django.testing import AstroDBTestMixin, override_database
from astro_db.testing import Factories

from .helpers import DOWN_OPTIONS, EXAMPLES

PROJECT = EXAMPLES / "django_project"
make = Factories()


@pytest.fixture(scope="module", autouse=True)
def django_project():
    """Set up the example project once (Django settings are process-wide)."""
    import django
    from django.test.utils import setup_test_environment, teardown_test_environment

    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "astro_site.settings"
    previous = os.environ.get("MONGODB_URL")
    os.environ["MONGODB_URL"] = "mongomock://localhost/astro_site_tests"  # settings.py reads it at setup
    try:
        django.setup()
    finally:
        if previous is None:
            os.environ.pop("MONGODB_URL")
        else:
            os.environ["MONGODB_URL"] = previous
    setup_test_environment()
    yield
    teardown_test_environment()


@pytest.fixture
def db():
    with override_database() as database:
        yield database


@pytest.fixture
def client(db):
    from django.test import Client

    return Client()


def post_json(client, path, body):
    return client.post(path, data=body, content_type="application/json")


# --- the example app's views -----------------------------------------------------------------

def test_creating_a_user_returns_201_and_stores_it(client, db):
    response = post_json(client, "/users", {"email": "Ann@Example.com", "name": "Ann"})
    assert response.status_code == 201
    assert response.json()["email"] == "ann@example.com"
    assert db.count("User", {}) == 1


def test_a_users_insights_are_listed_newest_first(client, db):
    user = db.create("User", make.user())
    db.create_many("PlanetaryInsight", [make.planetary_insight(user.id, date=f"2024-03-0{d}") for d in (1, 3, 2)])
    response = client.get(f"/users/{user.id}/insights")
    assert response.status_code == 200
    assert [i["date"][:10] for i in response.json()["insights"]] == ["2024-03-03", "2024-03-02", "2024-03-01"]


def test_invalid_input_is_a_400_naming_each_field_and_writes_nothing(client, db):
    response = post_json(client, "/users", {"email": "nope", "name": ""})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"email", "name"}
    assert db.count("User", {}) == 0


def test_a_body_that_is_not_json_is_a_400(client):
    response = client.post("/users", data="not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"]["body"].startswith("is not valid JSON")


@pytest.mark.parametrize("data, content_type, says", [
    ("[" * 100_000 + "]" * 100_000, "application/json", "nests deeper than 64 levels"),  # RecursionError before
    ('{"email": "a@b.co", "name": Infinity}', "application/json", "is not valid JSON: Infinity is not JSON"),
    ("  ", "application/json", "is not valid JSON"),
    ("null", "application/json", "send a JSON object, got NoneType"),
    ('{"email": "a@b.co", "name": "Ann"}', "text/plain", "send Content-Type: application/json, got 'text/plain'"),
])
def test_any_body_that_cannot_be_parsed_is_a_json_400_and_writes_nothing(client, db, data, content_type, says):
    response = client.post("/users", data=data, content_type=content_type)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert says in response.json()["errors"]["body"]
    assert db.count("User", {}) == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999", "lots"])
def test_a_query_number_that_is_not_finite_is_a_400(client, db, value):
    user = db.create("User", make.user())
    response = client.get(f"/users/{user.id}/insights?min_energy={value}")
    assert response.status_code == 400 and "min_energy" in response.json()["errors"]


def test_a_finite_query_number_filters(client, db):
    user = db.create("User", make.user())
    db.create_many("PlanetaryInsight", [make.planetary_insight(user.id, date=f"2024-03-0{d}", energyLevel=10 * d) for d in (1, 5)])
    response = client.get(f"/users/{user.id}/insights?min_energy=40")
    assert [i["energyLevel"] for i in response.json()["insights"]] == [50]


def test_a_malformed_id_is_a_400(client):
    assert client.get("/users/xyz/insights").status_code == 400


def test_an_unknown_user_is_a_json_404(client):
    response = client.get(f"/users/{'0' * 24}/insights")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


def test_a_duplicate_email_is_a_409(client, db):
    assert post_json(client, "/users", {"email": "a@b.co", "name": "A"}).status_code == 201
    response = post_json(client, "/users", {"email": "A@B.CO", "name": "A again"})
    assert response.status_code == 409
    assert response.json()["fields"] == ["email"]


def test_healthz_is_200_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert "no-cache" in response["Cache-Control"]


def test_with_the_server_down_healthz_is_503_and_views_answer_a_json_503(down_url):
    from django.test import Client

    down = Database(down_url, **DOWN_OPTIONS)
    with override_database(down, connected=False):
        client = Client()
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "down"
        response = post_json(client, "/users", {"email": "a@b.co", "name": "A"})
        assert response.status_code == 503
        assert response.json()["error"] == "DatabaseConnectionError"
        assert response["Retry-After"] == "1"


def test_a_create_applied_without_its_record_is_a_500_that_says_not_to_repeat_it(client, db, monkeypatch):
    from pymongo import errors as pm

    from astro_db.changes import log as change_log

    def lost(coll, recs, session):
        raise pm.AutoReconnect("connection closed")

    monkeypatch.setattr(change_log, "_insert", lost)
    response = post_json(client, "/users", {"email": "applied@b.co", "name": "A"})
    assert response.status_code == 500
    assert "Retry-After" not in response
    assert response.json()["error"] == "ChangeRecordError" and response.json()["applied"] is True
    assert "do not send it again" in response.json()["message"]
    assert db.count("User", {"email": "applied@b.co"}) == 1


@pytest.mark.parametrize(("exc", "status", "retry"), [
    (errors.ChangeRecordError("update_many on User was applied at db.internal"), 500, False),
    (errors.WriteOutcomeUnknown("update on User: connection lost at db.internal"), 500, False),
    (errors.DatabaseConnectionError("db.internal unreachable"), 503, True),
    (errors.OperationTimeoutError("find timed out"), 503, True),
])
def test_the_middleware_says_retry_only_where_nothing_was_applied(exc, status, retry):
    from django.test import RequestFactory

    from astro_db.contrib.django.middleware import AstroDBErrorMiddleware

    middleware = AstroDBErrorMiddleware(lambda request: None)
    response = middleware.process_exception(RequestFactory().post("/users"), exc)
    assert response.status_code == status
    assert (response.has_header("Retry-After")) is retry
    assert "db.internal" not in response.content.decode()


# --- the app config --------------------------------------------------------------------------

def test_ready_connects_once_and_get_database_returns_that_database():
    from django.apps import apps

    from astro_db.contrib.django import get_database

    app = apps.get_app_config("astro_db")
    assert app.connected
    assert get_database() is get_database() is app.database
    assert app.database.config.max_pool_size == 50  # from settings.ASTRO_DB["options"]


def test_a_failed_connect_in_ready_is_logged_and_the_project_still_starts(down_url, caplog):
    from django.apps import apps
    from django.test import override_settings

    app = apps.get_app_config("astro_db")
    previous = (app.database, app.connected)
    try:
        with override_settings(ASTRO_DB={"url": down_url, "options": DOWN_OPTIONS}), \
                caplog.at_level(logging.ERROR, logger="astro_db.contrib.django.apps"):
            app.ready()
        assert not app.connected
        assert any("will retry" in r.getMessage() for r in caplog.records)
        with pytest.raises(errors.DatabaseConnectionError):
            app.get_database()
    finally:
        app.use_database(*previous)


@pytest.mark.parametrize(
    ("setting", "expected_url"),
    [
        ("mongomock://localhost/site", "mongomock://localhost/site"),
        ({"url": "mongodb://db.example/astro", "options": {"maxPoolSize": 20, "useNewUrlParser": True}},
         "mongodb://db.example/astro"),
        (DatabaseConfig(url="mongodb://db.example/astro"), "mongodb://db.example/astro"),
    ],
    ids=["url", "seed-dict", "config"],
)
def test_settings_astro_db_takes_a_url_a_seed_dict_or_a_config(setting, expected_url):
    from astro_db.contrib.django.apps import config_from_settings

    with pytest.warns(DeprecationWarning) if isinstance(setting, dict) else contextlib.nullcontext():
        assert config_from_settings(setting).url == expected_url


def test_without_a_url_in_settings_the_environment_decides(monkeypatch):
    from astro_db.contrib.django.apps import config_from_settings

    monkeypatch.setenv("MONGODB_URL", "mongodb://env.example/astro")
    assert config_from_settings(None).url == "mongodb://env.example/astro"
    assert config_from_settings({"url": None, "options": {"maxPoolSize": 20}}).max_pool_size == 20
    monkeypatch.delenv("MONGODB_URL")
    assert config_from_settings(None).is_embedded


def test_a_bad_astro_db_setting_is_a_config_error_naming_it():
    from astro_db.contrib.django.apps import config_from_settings

    with pytest.raises(errors.ConfigError) as info:
        config_from_settings(["mongodb://x/astro"])
    assert info.value.key == "ASTRO_DB"


# --- manage.py astro_db ----------------------------------------------------------------------

def call(*args):
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    call_command("astro_db", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_hands_its_arguments_to_the_astro_db_cli():
    out, _ = call("--version")
    assert out.strip() == f"astro-db, version {__version__}"
    out, _ = call("--help")
    assert "Usage: manage.py astro_db" in out


def test_the_command_passes_the_configured_url_to_the_cli():
    import click

    from astro_db.cli import cli, pass_ctx
    from astro_db.contrib.django import get_database

    @cli.command("test-echo-url", hidden=True)
    @pass_ctx
    def echo_url(ctx):
        click.echo(ctx.url)

    try:
        out, _ = call("test-echo-url")
    finally:
        cli.commands.pop("test-echo-url")
    config = get_database().config
    assert out.strip() == (config.url or f"mongomock://localhost/{config.database_name}")


def test_a_failing_cli_command_is_a_command_error_with_its_exit_status():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as info:
        call("no-such-command")
    assert info.value.returncode == 2


def test_manage_py_astro_db_runs_the_cli_from_the_shell_with_its_exit_status():
    env = {**os.environ, "MONGODB_URL": "mongomock://localhost/site"}
    result = subprocess.run(
        [sys.executable, "manage.py", "astro_db", "--settings", "astro_site.settings", "no-such-command"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "Usage: manage.py astro_db [OPTIONS] COMMAND" in result.stderr
    assert "No such command 'no-such-command'" in result.stderr


# --- the test helper -------------------------------------------------------------------------

class TestMixinGivesEachTestAFreshDatabase(AstroDBTestMixin, SimpleTestCase):
    """Run by pytest as a unittest case: both tests write the same email, and both succeed."""

    def test_first(self):
        self.assert_fresh_and_used_by_views()

    def test_second(self):
        self.assert_fresh_and_used_by_views()

    def assert_fresh_and_used_by_views(self):
        from astro_db.contrib.django import get_database

        assert get_database() is self.db
        assert self.db.count("User", {}) == 0
        response = self.client.post("/users", data={"email": "same@example.com", "name": "S"},
                                    content_type="application/json")
        assert response.status_code == 201
        assert self.db.count("User", {}) == 1



def test_override_database_restores_the_projects_database():
    from astro_db.contrib.django import get_database

    before = get_database()
    with override_database() as fresh:
        assert get_database() is fresh
    assert get_database() is before
    assert not fresh.is_connected()


# --- web-sized bounds ---------------------------------------------------------------------------

WEB = {"operation_timeout_ms": 3000, "server_selection_timeout_ms": 3000, "connect_timeout_ms": 2000,
       "connect_budget_ms": 3000}


def _bounds(config) -> dict:
    return {key: getattr(config, key) for key in WEB}


def test_django_gives_its_database_web_sized_bounds_each_overridable(monkeypatch):
    from astro_db.contrib.django.apps import config_from_settings

    assert _bounds(config_from_settings("mongodb://db.example/astro")) == WEB
    assert _bounds(config_from_settings({"url": "mongodb://db.example/astro", "options": {"timeoutMS": 9000}})) == \
        {**WEB, "operation_timeout_ms": 9000}
    assert _bounds(config_from_settings({"url": "mongodb://db.example/astro", "connect_budget_ms": 800})) == \
        {**WEB, "connect_budget_ms": 800}
    assert config_from_settings("mongodb://db.example/astro?timeoutMS=1500").operation_timeout_ms == 1500
    assert config_from_settings(DatabaseConfig(url="mongodb://db.example/astro")).operation_timeout_ms == 30_000
    monkeypatch.setenv("MONGODB_URL", "mongodb://env.example/astro")
    monkeypatch.setenv("ASTRO_DB_CONNECT_BUDGET_MS", "1200")
    assert _bounds(config_from_settings(None)) == {**WEB, "connect_budget_ms": 1200}


def test_django_with_a_url_takes_the_environment_under_the_settings(monkeypatch):
    """The precedence rule of Database(): ASTRO_DB_* apply with a URL too, below the settings."""
    from astro_db.contrib.django.apps import config_from_settings

    monkeypatch.setenv("ASTRO_DB_CACHE_BUS", "changestream")
    monkeypatch.setenv("ASTRO_DB_CONNECT_BUDGET_MS", "1200")
    config = config_from_settings("mongodb://db.example/astro")
    assert config.cache_bus == "changestream"
    assert _bounds(config) == {**WEB, "connect_budget_ms": 1200}
    config = config_from_settings({"url": "mongodb://db.example/astro", "options": {"connect_budget_ms": 800}})
    assert _bounds(config) == {**WEB, "connect_budget_ms": 800} and config.cache_bus == "changestream"
    assert config_from_settings(DatabaseConfig(url="mongodb://db.example/astro")).cache_bus == "local"


def test_start_up_against_a_dead_url_is_bounded_by_the_web_connect_budget(down_url, monkeypatch):
    from django.apps import apps
    from django.test import override_settings
    from pymongo import errors as pm

    from astro_db.driver.connection import Connection

    deadlines: list[float] = []  # when each ping's bound would end (the connection's own clock)

    def refused(self, timeout_s: float) -> None:
        deadlines.append(self.clock() + timeout_s)
        raise pm.ServerSelectionTimeoutError("connection refused")

    monkeypatch.setattr(Connection, "_ping", refused)
    app = apps.get_app_config("astro_db")
    previous = (app.database, app.connected)
    try:
        began = time.monotonic()
        with override_settings(ASTRO_DB={"url": down_url}):
            app.ready()  # logs the failure and starts
        assert not app.connected and app.database.config.connect_budget_ms == 3000
        # every ping of connect()'s attempts ends within the 3 s budget (it was 30 s, 10 s per attempt)
        assert len(deadlines) == 3 and max(deadlines) <= began + 3.0 + 0.5  # building the Database comes first
    finally:
        app.use_database(*previous)
