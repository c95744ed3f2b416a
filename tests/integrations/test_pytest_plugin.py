"""astro_db.testing: the pytest plugin (fixtures astro_db, astro_factories) and the factories."""

from __future__ import annotations

import datetime as dt

import pytest

from astro_db import Database, errors
from astro_db.testing import Factories, factories

pytest_plugins = ["pytester"]

MODELS = ("User", "BirthChart", "PlanetaryInsight", "TimingRecommendation")


def test_the_plugin_is_registered_under_the_astro_db_entry_point():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="pytest11") if e.name == "astro_db"]
    assert entry.value == "astro_db.testing"


def test_the_astro_db_fixture_is_a_fresh_connected_database(astro_db):
    assert isinstance(astro_db, Database)
    assert astro_db.is_connected()
    assert all(astro_db.count(model, {}) == 0 for model in MODELS)


def test_the_factories_make_valid_documents_of_every_model(astro_db, astro_factories):
    user = astro_db.create("User", astro_factories.user())
    astro_db.create("BirthChart", astro_factories.birth_chart(user.id))
    astro_db.create_many("PlanetaryInsight", [astro_factories.planetary_insight(user.id) for _ in range(3)])
    astro_db.create("TimingRecommendation", astro_factories.timing_recommendation(user.id))
    assert [astro_db.count(model, {}) for model in MODELS] == [1, 1, 3, 1]


def test_factory_calls_never_collide_on_unique_fields(astro_db):
    make = Factories()
    users = astro_db.create_many("User", [make.user() for _ in range(5)])
    insights = astro_db.create_many("PlanetaryInsight", [make.planetary_insight(users[0].id) for _ in range(5)])
    assert (len(users.failed), len(insights.failed)) == (0, 0)


def test_overrides_replace_fields_and_invalid_overrides_are_refused(astro_db):
    user = astro_db.create("User", factories.user(name="Zed", status="inactive"))
    assert (user.name, user.status) == ("Zed", "inactive")
    start = dt.datetime(2030, 1, 1, 9, tzinfo=dt.timezone.utc)
    timing = astro_db.create("TimingRecommendation", factories.timing_recommendation(user.id, start=start))
    assert timing.windows[0].start == start
    with pytest.raises(errors.ValidationError):
        astro_db.create("PlanetaryInsight", factories.planetary_insight(user.id, energyLevel=101))


def test_the_factories_are_json_ready():
    import json

    make = Factories()
    for data in (make.user(), make.birth_chart("0" * 24), make.planetary_insight("0" * 24),
                 make.timing_recommendation("0" * 24, start="2024-05-01T09:00:00Z")):
        json.dumps(data)


def test_a_users_project_gets_the_fixtures_and_an_isolated_database_per_test(pytester):
    pytester.makepyfile(
        """
        def test_one(astro_db, astro_factories):
            astro_db.create("User", astro_factories.user(email="same@example.com"))
            assert astro_db.count("User", {}) == 1

        def test_two(astro_db, astro_factories):
            astro_db.create("User", astro_factories.user(email="same@example.com"))
            assert astro_db.count("User", {}) == 1
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_with_astro_db_test_uri_the_fixture_uses_a_unique_database_and_drops_it(monkeypatch):
    from astro_db.testing import database_for_tests

    monkeypatch.setenv("ASTRO_DB_TEST_URI", "mongomock://localhost/ignored")
    fixture = database_for_tests()
    db = next(fixture)
    assert db.config.url.startswith("mongomock://localhost/astro_test_")
    db.create("User", factories.user())
    dropped: list[str] = []
    monkeypatch.setattr(db.mongo.client, "drop_database", dropped.append)
    fixture.close()
    assert dropped == [db.config.database_name]
    assert not db.is_connected()
