"""The web integrations on day one: no silent in-memory database in production, a bad role is
the client's error, and a server error lands in the framework's own log."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from astro_db import errors
from astro_db.contrib.flask import AstroDB
from astro_db.testing import Factories

from .helpers import load_example

flask_app = load_example("flask_app")
make = Factories()


def bare_app(**config) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


# --- Flask: no URL, no start ------------------------------------------------------------------

def test_flask_refuses_to_start_without_a_url_in_production(monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    app = bare_app()
    with pytest.raises(errors.ConfigError, match="no database URL.*ASTRO_DB_URL or MONGODB_URL") as info:
        AstroDB(app)
    assert info.value.key == "url"
    assert "astro_db" not in app.extensions  # nothing half-registered


@pytest.mark.parametrize("switch", ["DEBUG", "TESTING"])
def test_flask_allows_the_embedded_default_in_debug_or_testing(monkeypatch, switch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    ext = AstroDB(bare_app(**{switch: True}))
    assert ext.database.config.is_embedded


@pytest.mark.parametrize("config", [{"ASTRO_DB_URL": "mongomock://localhost/chosen"}, {"MONGODB_URL": "mongomock://localhost/chosen"}])
def test_flask_with_an_explicit_url_starts_in_production(monkeypatch, config):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    assert AstroDB(bare_app(**config)).database.config.url == "mongomock://localhost/chosen"


def test_flask_takes_the_url_from_the_environment(monkeypatch):
    monkeypatch.setenv("MONGODB_URL", "mongomock://localhost/from_env")
    assert AstroDB(bare_app()).database.config.url == "mongomock://localhost/from_env"


# --- Flask: a bad role is a 400, a server error is logged -----------------------------------

@pytest.fixture
def example(embedded_url):
    app = flask_app.create_app({"ASTRO_DB_URL": embedded_url, "TESTING": True})
    yield app
    flask_app.astro.close(app)


def test_a_bad_x_roles_header_is_a_400_naming_the_role(example):
    client = example.test_client()
    user = client.post("/users", json={"email": "ann@example.com", "name": "Ann"}).get_json()
    response = client.get(f"/users/{user['id']}", headers={"X-User-Id": user["id"], "X-Roles": "superuser"})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "ValidationError"
    assert "unknown role(s) superuser" in body["errors"]["roles"]


def test_a_malformed_actor_id_is_a_400_too(example):
    response = example.test_client().get("/users/0123456789abcdef01234567", headers={"X-User-Id": "not-an-id"})
    assert response.status_code == 400
    assert "24 hex" in response.get_json()["errors"]["actor"]


def test_a_server_error_is_logged_on_the_flask_app_logger(embedded_url, caplog):
    app = bare_app(ASTRO_DB_URL=embedded_url)
    AstroDB(app)

    @app.get("/boom")
    def boom():
        raise errors.AstroDBError("failed (code 1) at db.internal")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/boom")
    assert response.status_code == 500
    [record] = [r for r in caplog.records if r.name == app.logger.name]
    assert "failed (code 1) at db.internal" in record.getMessage() and record.exc_info is not None


# --- Django ---------------------------------------------------------------------------------

@pytest.fixture
def django_settings(monkeypatch):
    """Django set up on the example project's settings, as test_django_project does (Django
    settings are process-wide, so every test module must agree on them)."""
    import sys

    import django
    from django.conf import settings

    from .helpers import EXAMPLES

    if not settings.configured:
        monkeypatch.syspath_prepend(str(EXAMPLES / "django_project"))
        monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "astro_site.settings")
        monkeypatch.setenv("MONGODB_URL", "mongomock://localhost/astro_site_tests")
        django.setup()
        sys.path.append(str(EXAMPLES / "django_project"))  # keep the project importable after the test
    return settings


def test_django_refuses_to_start_without_a_url_unless_debug(django_settings, monkeypatch):
    from django.test import override_settings

    from astro_db.contrib.django.apps import AstroDBConfig
    import astro_db.contrib.django as package

    monkeypatch.delenv("MONGODB_URL", raising=False)
    app = AstroDBConfig("astro_db.contrib.django", package)
    with override_settings(DEBUG=False, ASTRO_DB=None):
        with pytest.raises(errors.ConfigError, match="settings.ASTRO_DB or MONGODB_URL"):
            app.ready()
    with override_settings(DEBUG=True, ASTRO_DB=None):
        app.ready()
        assert app.database.config.is_embedded
    with override_settings(DEBUG=False, ASTRO_DB="mongomock://localhost/chosen"):
        app.ready()
        assert app.database.config.url == "mongomock://localhost/chosen"


def test_django_middleware_logs_a_server_error_on_django_request(django_settings, caplog):
    from django.test import RequestFactory

    from astro_db.contrib.django.middleware import AstroDBErrorMiddleware

    middleware = AstroDBErrorMiddleware(lambda request: None)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = middleware.process_exception(RequestFactory().get("/x"), errors.AstroDBError("failed at db.internal"))
    assert response.status_code == 500
    assert [r.name for r in caplog.records if "failed at db.internal" in r.getMessage()] == ["django.request"]
