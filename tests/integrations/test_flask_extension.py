"""astro_db.contrib.flask: configuration, one Database per app, errors as JSON, actors, health."""

from __future__ import annotations

import threading

import pytest
from flask import Flask, current_app, jsonify

from astro_db import Database, errors
from astro_db.contrib.flask import AstroDB, config_from_flask

from .helpers import DOWN_OPTIONS


def make_app(**config) -> Flask:
    app = Flask(__name__)
    app.config.update({"TESTING": True, **config})
    return app


# --- configuration ---------------------------------------------------------------------------

def test_config_reads_astro_db_url_before_mongodb_url_and_applies_options(embedded_url):
    config = config_from_flask({"ASTRO_DB_URL": embedded_url, "MONGODB_URL": "mongodb://other/x",
                                "ASTRO_DB_OPTIONS": {"maxPoolSize": 50, "server_selection_timeout_ms": 500}})
    assert config.url == embedded_url
    assert (config.max_pool_size, config.server_selection_timeout_ms) == (50, 500)
    assert config_from_flask({"MONGODB_URL": embedded_url}).url == embedded_url


def test_without_a_url_in_app_config_the_environment_decides(monkeypatch, embedded_url):
    monkeypatch.setenv("MONGODB_URL", embedded_url)
    assert config_from_flask({}).url == embedded_url
    monkeypatch.delenv("MONGODB_URL")
    assert config_from_flask({}).is_embedded


@pytest.mark.parametrize("options", [{"maxPoolSize": 0}, {"noSuchOption": 1}, "maxPoolSize=5"])
def test_bad_options_fail_at_init_app_naming_the_key(options):
    with pytest.raises(errors.ConfigError):
        AstroDB(make_app(ASTRO_DB_OPTIONS=options))


# --- one Database per app --------------------------------------------------------------------

def test_init_app_gives_each_app_its_own_database_reachable_from_requests(embedded_url):
    ext = AstroDB()
    first, second = make_app(ASTRO_DB_URL=embedded_url), make_app(ASTRO_DB_URL=embedded_url)
    ext.init_app(first)
    ext.init_app(second)

    @first.get("/who")
    def who():
        same = current_app.extensions["astro_db"].db is ext.db
        return jsonify(db=id(ext.db), same=same)

    with first.app_context():
        ext.db.create("User", {"email": "a@b.co", "name": "A"})
        first_db = ext.db
    with second.app_context():
        assert ext.db is not first_db
        assert ext.db.count("User", {}) == 0
    assert first.test_client().get("/who").get_json() == {"db": id(first_db), "same": True}


def test_request_threads_share_one_connected_database(embedded_url):
    app = make_app(ASTRO_DB_URL=embedded_url)
    ext = AstroDB(app)

    @app.get("/db")
    def which():
        return jsonify(id=id(ext.db), connected=ext.db.is_connected())

    seen: list[dict] = []

    def call() -> None:
        seen.append(app.test_client().get("/db").get_json())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert {s["id"] for s in seen} == {id(ext.database)}
    assert all(s["connected"] for s in seen)


def test_an_extension_bound_to_an_app_works_outside_a_request(embedded_url):
    ext = AstroDB(make_app(ASTRO_DB_URL=embedded_url))
    assert ext.db.create("User", {"email": "a@b.co", "name": "A"}).email == "a@b.co"


def test_connecting_is_lazy_so_the_app_starts_while_the_database_is_down(down_url):
    app = make_app(ASTRO_DB_URL=down_url, ASTRO_DB_OPTIONS=DOWN_OPTIONS)
    ext = AstroDB(app)  # no error: nothing connects yet
    assert ext.database.is_connected() is False


def test_eager_connect_fails_at_init_app_when_the_database_is_down(down_url):
    app = make_app(ASTRO_DB_URL=down_url, ASTRO_DB_OPTIONS=DOWN_OPTIONS, ASTRO_DB_EAGER_CONNECT=True)
    with pytest.raises(errors.DatabaseConnectionError):
        AstroDB(app)


def test_a_failed_lazy_connect_is_retried_by_the_next_request(embedded_url, monkeypatch):
    database = Database(embedded_url)
    real_connect = database.connect
    calls = []

    def flaky_connect():
        calls.append(1)
        if len(calls) == 1:
            raise errors.DatabaseConnectionError("server starting")
        return real_connect()

    monkeypatch.setattr(database, "connect", flaky_connect)
    app = make_app()
    ext = AstroDB(app, database=database)

    @app.get("/count")
    def count():
        return jsonify(users=ext.db.count("User", {}))

    client = app.test_client()
    assert client.get("/count").status_code == 503
    assert client.get("/count").get_json() == {"users": 0}
    assert client.get("/count").status_code == 200
    assert len(calls) == 2  # connected once, then kept


def test_an_app_without_init_app_gets_a_clear_error():
    ext = AstroDB()
    with make_app().app_context(), pytest.raises(errors.ConfigError, match="init_app"):
        ext.db  # noqa: B018


# --- errors as JSON --------------------------------------------------------------------------

ERROR_CASES = [
    (errors.ValidationError(errors={"energyLevel": "must be 0-100, got 150"}), 400,
     {"errors": {"energyLevel": "must be 0-100, got 150"}}),
    (errors.QueryError("operator $where is not allowed"), 400, {"message": "operator $where is not allowed"}),
    (errors.UnknownModelError("unknown model 'Horoscope'"), 400, {}),
    (errors.PermissionDeniedError("reader may not create User"), 403, {"message": "reader may not create User"}),
    (errors.DuplicateKeyError("duplicate email", fields=("email",)), 409, {"fields": ["email"]}),
    (errors.TransactionError("write conflict"), 409, {}),
    (errors.DatabaseConnectionError("db.internal:27017 unreachable"), 503, {}),
    (errors.OperationTimeoutError("find on User timed out at db.internal"), 503, {}),
    (errors.PoolExhaustedError("no pooled connection"), 503, {}),
    (errors.TransactionNotSupportedError("standalone mongod at db.internal"), 500, {}),
    (errors.AstroDBError("failed (code 1) at db.internal"), 500, {"message": "internal database error"}),
    # a write that was applied must not be repeated: not a 503, no Retry-After
    (errors.ChangeRecordError("update on PlanetaryInsight was applied, but ... db.internal", missing=[1]), 500,
     {"applied": True, "message": "the change was saved, but the request did not finish (its record could not be "
                                  "written yet); do not send it again: it would be applied twice"}),
]


class OutcomeUnknownError(errors.OperationTimeoutError):
    """An error that reports its write's outcome as unknown (``applied = None``)."""

    applied = None


UNKNOWN_OUTCOME = {"applied": None, "message": "it is not known whether the change was saved; read the data "
                                              "back before sending the request again: it may have been applied"}
ERROR_CASES.append((OutcomeUnknownError("update on PlanetaryInsight timed out at db.internal"), 500, UNKNOWN_OUTCOME))
ERROR_CASES.append((errors.WriteOutcomeUnknown("update on PlanetaryInsight: connection lost at db.internal", ids=[1]), 500,
                    UNKNOWN_OUTCOME))


@pytest.mark.parametrize(("exc", "status", "expected"), ERROR_CASES, ids=lambda v: type(v).__name__)
def test_astro_db_errors_become_json_responses(embedded_url, exc, status, expected):
    app = make_app(ASTRO_DB_URL=embedded_url)
    AstroDB(app)

    @app.get("/boom")
    def boom():
        raise exc

    response = app.test_client().get("/boom")
    body = response.get_json()
    assert response.status_code == status
    assert body["error"] == type(exc).__name__
    assert body.items() >= expected.items()
    assert ("Retry-After" in response.headers) is (status == 503)  # "try again" only where nothing was applied
    assert ("applied" in body) is (getattr(exc, "applied", False) is not False)
    if status >= 500:
        assert "db.internal" not in response.get_data(as_text=True)


def test_an_applied_inc_whose_record_fails_is_answered_not_to_be_repeated(embedded_url, monkeypatch):
    import datetime as dt

    from pymongo import errors as pm

    from astro_db.changes import log as change_log

    app = make_app(ASTRO_DB_URL=embedded_url, ASTRO_DB_OPTIONS={"retry_attempts": 1})
    ext = AstroDB(app)
    with app.app_context():
        user = ext.db.create("User", {"email": "inc@b.co", "name": "A"})
        insight = ext.db.create("PlanetaryInsight", {"userId": str(user.id), "date": dt.datetime(2026, 1, 1),
                                                      "energyLevel": 50, "recommendations": ["Rest"]})

    @app.post("/insights/<insight_id>/boost")
    def boost(insight_id):
        return jsonify(ext.db.update("PlanetaryInsight", {"id": insight_id}, {"$inc": {"energyLevel": 5}}).to_dict())

    def lost(coll, recs, session):
        raise pm.AutoReconnect("connection closed")

    monkeypatch.setattr(change_log, "_insert", lost)
    response = app.test_client().post(f"/insights/{insight.id}/boost")
    assert response.status_code == 500 and "Retry-After" not in response.headers
    assert response.get_json()["applied"] is True and "do not send it again" in response.get_json()["message"]
    with app.app_context():
        assert ext.db.find_one("PlanetaryInsight", {"id": insight.id}).energy_level == 55  # applied once


def test_an_update_many_stopped_part_way_by_an_outage_is_answered_not_to_be_repeated(embedded_url, monkeypatch):
    """A ``$push`` to many documents is made document by document: the server going away after the
    first raised the outage's ``DatabaseConnectionError`` (503, ``Retry-After: 1``), and a client
    sending it again pushed twice to that document. The error now says ``applied`` (500)."""
    import datetime as dt

    from pymongo import errors as pm

    from astro_db.driver import gateway

    app = make_app(ASTRO_DB_URL=embedded_url, ASTRO_DB_OPTIONS={"retry_attempts": 1})
    ext = AstroDB(app)
    with app.app_context():
        user = ext.db.create("User", {"email": "push@b.co", "name": "A"})
        for day in (1, 2, 3):
            ext.db.create("PlanetaryInsight", {"userId": str(user.id), "date": dt.datetime(2026, 1, day),
                                               "energyLevel": 50, "recommendations": ["Rest"]})

    @app.post("/users/<user_id>/advice")
    def advise(user_id):
        return jsonify(updated=ext.db.update_many("PlanetaryInsight", {"userId": user_id},
                                                  {"$push": {"recommendations": "Walk"}}))

    updated = []
    real_update, real_find_one = gateway.Collection.find_one_and_update, gateway.Collection.find_one

    def find_one_and_update(self, *args, **kwargs):
        doc = real_update(self, *args, **kwargs)
        updated.append(doc["_id"])
        return doc

    def find_one(self, *args, **kwargs):
        if updated:  # the server went away after the first document's update (and its records)
            raise pm.AutoReconnect("connection closed")
        return real_find_one(self, *args, **kwargs)

    monkeypatch.setattr(gateway.Collection, "find_one_and_update", find_one_and_update)
    monkeypatch.setattr(gateway.Collection, "find_one", find_one)
    response = app.test_client().post(f"/users/{user.id}/advice")
    monkeypatch.setattr(gateway.Collection, "find_one", real_find_one)
    assert len(updated) == 1
    assert response.status_code == 500 and "Retry-After" not in response.headers, response.get_json()
    body = response.get_json()
    assert body["error"] == "DatabaseConnectionError" and body["applied"] is True
    assert "do not send it again" in body["message"]
    with app.app_context():
        pushed = [i.recommendations for i in ext.db.find("PlanetaryInsight", {"userId": str(user.id)})]
    assert sorted(pushed) == [["Rest"], ["Rest"], ["Rest", "Walk"]]


def test_error_handlers_can_be_left_to_the_app(embedded_url):
    app = make_app(ASTRO_DB_URL=embedded_url, ASTRO_DB_ERROR_HANDLERS=False, TESTING=False)
    AstroDB(app)

    @app.get("/boom")
    def boom():
        raise errors.QueryError("nope")

    assert app.test_client().get("/boom").status_code == 500


def test_get_or_404_returns_the_document_or_a_json_404(embedded_url):
    app = make_app(ASTRO_DB_URL=embedded_url)
    ext = AstroDB(app)
    with app.app_context():
        user = ext.db.create("User", {"email": "a@b.co", "name": "A"})

    @app.get("/users/<user_id>")
    def get_user(user_id):
        return jsonify(ext.get_or_404("User", {"id": user_id}).to_dict())

    client = app.test_client()
    assert client.get(f"/users/{user.id}").get_json()["email"] == "a@b.co"
    missing = client.get(f"/users/{'f' * 24}")
    assert missing.status_code == 404
    assert missing.get_json()["error"] == "NotFound"


# --- the acting user -------------------------------------------------------------------------

class FakeRBAC:
    """Stands in for ``db.as_actor`` (role-based access): records calls, returns a view."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, actor_id, roles):
        self.calls.append((actor_id, tuple(roles)))
        return ("view", actor_id, tuple(roles))


def actor_app(embedded_url, monkeypatch, loader):
    app = make_app(ASTRO_DB_URL=embedded_url)
    ext = AstroDB(app, actor_loader=loader)
    rbac = FakeRBAC()
    with app.app_context():
        monkeypatch.setattr(ext.db, "as_actor", rbac, raising=False)

    @app.get("/whoami")
    def whoami():
        first, second = ext.current_db, ext.current_db
        assert first is second  # computed once per request
        return jsonify(view=None if first is ext.db else list(first))

    return app, rbac


def test_current_db_acts_for_the_user_the_actor_loader_returns(embedded_url, monkeypatch):
    from flask import request

    def loader():
        uid = request.headers.get("X-User")
        return (uid, ["self", "reader"]) if uid else None

    app, rbac = actor_app(embedded_url, monkeypatch, loader)
    client = app.test_client()
    assert client.get("/whoami", headers={"X-User": "u1"}).get_json() == {"view": ["view", "u1", ["self", "reader"]]}
    assert client.get("/whoami").get_json() == {"view": None}  # no actor: the plain db
    assert rbac.calls == [("u1", ("self", "reader"))]


def test_an_actor_loader_returning_garbage_is_a_500_config_error(embedded_url, monkeypatch):
    app, _ = actor_app(embedded_url, monkeypatch, lambda: "u1")
    response = app.test_client().get("/whoami")
    assert response.status_code == 500
    assert response.get_json()["error"] == "ConfigError"


# --- health ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code"), [("ok", 200), ("degraded", 200), ("down", 503)])
def test_healthz_answers_with_db_health_and_its_status(embedded_url, monkeypatch, status, code):
    app = make_app(ASTRO_DB_URL=embedded_url)
    ext = AstroDB(app)
    report = {"status": status, "latency_ms": 1.5, "reasons": [] if status == "ok" else ["slow queries"]}
    with app.app_context():
        monkeypatch.setattr(ext.db, "health", lambda: report, raising=False)
    response = app.test_client().get("/healthz")
    assert response.status_code == code
    assert response.get_json() == report


def test_healthz_detail_can_be_cut_to_status_and_latency(embedded_url):
    app = make_app(ASTRO_DB_URL=embedded_url, ASTRO_DB_HEALTH_DETAIL=False)
    AstroDB(app)
    body = app.test_client().get("/healthz").get_json()
    assert set(body) == {"status", "latency_ms"}
    assert body["status"] == "ok"


def test_healthz_can_move_or_be_turned_off(embedded_url):
    moved = make_app(ASTRO_DB_URL=embedded_url, ASTRO_DB_HEALTH_URL="/ops/health")
    AstroDB(moved)
    assert moved.test_client().get("/ops/health").status_code == 200
    off = make_app(ASTRO_DB_URL=embedded_url, ASTRO_DB_HEALTH_URL=None)
    AstroDB(off)
    assert off.test_client().get("/healthz").status_code == 404


# --- web-sized bounds ---------------------------------------------------------------------------

WEB = {"operation_timeout_ms": 3000, "server_selection_timeout_ms": 3000, "connect_timeout_ms": 2000,
       "connect_budget_ms": 3000}


def bounds(config) -> dict:
    return {key: getattr(config, key) for key in WEB}


def test_flask_gives_its_database_web_sized_bounds_by_default():
    from astro_db.contrib._http import WEB_DEFAULTS

    assert dict(WEB_DEFAULTS) == WEB
    assert bounds(config_from_flask({"ASTRO_DB_URL": "mongodb://db.example/astro"})) == WEB
    ext = AstroDB(make_app(ASTRO_DB_URL="mongomock://localhost/web_bounds"))
    assert bounds(ext._database or next(iter(ext._states.values())).database.config) == WEB


def test_each_web_bound_yields_to_the_apps_own_setting(monkeypatch):
    config = config_from_flask({"ASTRO_DB_URL": "mongodb://db.example/astro",
                                "ASTRO_DB_OPTIONS": {"timeoutMS": 8000, "connect_budget_ms": 500}})
    assert bounds(config) == {**WEB, "operation_timeout_ms": 8000, "connect_budget_ms": 500}
    config = config_from_flask({"ASTRO_DB_URL": "mongodb://db.example/astro?serverSelectionTimeoutMS=700&timeoutMS=900"})
    assert config.operation_timeout_ms == 900
    assert "serverSelectionTimeoutMS" not in config.client_options()  # the URL's 700 ms is what the client gets
    monkeypatch.setenv("MONGODB_URL", "mongodb://env.example/astro")
    monkeypatch.setenv("ASTRO_DB_OPERATION_TIMEOUT_MS", "12000")
    assert bounds(config_from_flask({})) == {**WEB, "operation_timeout_ms": 12000}


def test_flask_with_a_url_takes_the_environment_under_the_apps_settings(monkeypatch):
    """The precedence rule of Database(): ASTRO_DB_* apply with a URL too, below the app's own."""
    monkeypatch.setenv("ASTRO_DB_CACHE_BUS", "changestream")
    monkeypatch.setenv("ASTRO_DB_CONNECT_BUDGET_MS", "1200")
    monkeypatch.setenv("ASTRO_DB_MAX_POOL_SIZE", "40")
    config = config_from_flask({"ASTRO_DB_URL": "mongodb://db.example/astro", "ASTRO_DB_OPTIONS": {"maxPoolSize": 50}})
    assert config.cache_bus == "changestream" and config.max_pool_size == 50
    assert bounds(config) == {**WEB, "connect_budget_ms": 1200}  # the variable, not the web default


def test_requests_waiting_for_a_failing_connect_share_its_failure_instead_of_queueing_their_own():
    from astro_db.contrib._http import ConnectOnce

    entered, release, waiting = threading.Event(), threading.Event(), threading.Event()

    class Down:
        connects = 0

        def connect(self):
            Down.connects += 1
            entered.set()
            release.wait(10)
            raise errors.DatabaseConnectionError("could not reach MongoDB")

    class SignallingLock:
        """The state's lock, telling the test when a second request waits for it."""

        def __init__(self) -> None:
            self.lock, self.users = threading.Lock(), 0

        def __enter__(self):
            self.users += 1
            if self.users > 1:
                waiting.set()
            return self.lock.__enter__()

        def __exit__(self, *exc):
            return self.lock.__exit__(*exc)

    state = ConnectOnce(Down())
    state._lock = SignallingLock()
    outcomes: list[BaseException] = []

    def request():
        try:
            state.get()
        except errors.AstroDBError as exc:
            outcomes.append(exc)

    first = threading.Thread(target=request)
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=request)
    second.start()
    assert waiting.wait(10)  # the second request waits for the first one's connect
    release.set()
    first.join(10)
    second.join(10)
    assert Down.connects == 1  # one connect budget spent, not one per waiting request
    assert [type(e) for e in outcomes] == [errors.DatabaseConnectionError] * 2
    with pytest.raises(errors.DatabaseConnectionError):
        state.get()
    assert Down.connects == 2  # the next request (nobody was waiting) tries again
