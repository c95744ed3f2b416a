"""examples/flask_app.py through Flask's test client: the REST API, its errors, /healthz."""

from __future__ import annotations

import json

import pytest

from astro_db.testing import Factories

from .helpers import DOWN_OPTIONS, load_example

flask_app = load_example("flask_app")
make = Factories()


@pytest.fixture
def app(embedded_url):
    app = flask_app.create_app({"ASTRO_DB_URL": embedded_url, "TESTING": True})
    yield app
    flask_app.astro.close(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def user(client):
    response = client.post("/users", json={"email": "Ann@Example.com", "name": "Ann"})
    assert response.status_code == 201
    return response.get_json()


def stored(app, model, query=None):
    with app.app_context():
        return flask_app.astro.db.count(model, query or {})


def test_creating_a_user_returns_201_and_the_stored_user(client, user):
    assert user["email"] == "ann@example.com"
    assert client.get(f"/users/{user['id']}").get_json() == user


def test_a_chart_is_created_for_a_user_and_read_back(client, user):
    chart = make.birth_chart(user["id"])
    created = client.post(f"/users/{user['id']}/chart", json=chart)
    assert created.status_code == 201
    fetched = client.get(f"/users/{user['id']}/chart").get_json()
    assert fetched["id"] == created.get_json()["id"]
    assert fetched["userId"] == user["id"]
    assert [p["body"] for p in fetched["positions"]] == ["Sun", "Moon", "Ascendant"]


def test_insights_are_listed_in_date_order_and_filtered(client, user):
    for day, level in (("2024-03-03", 90), ("2024-03-01", 40), ("2024-03-02", 75)):
        body = make.planetary_insight(user["id"], date=day, energyLevel=level)
        assert client.post(f"/users/{user['id']}/insights", json=body).status_code == 201

    listed = client.get(f"/users/{user['id']}/insights").get_json()
    assert [i["date"][:10] for i in listed] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    high = client.get(f"/users/{user['id']}/insights?min_energy=70&from=2024-03-02").get_json()
    assert [i["energyLevel"] for i in high] == [75, 90]
    window = client.get(f"/users/{user['id']}/insights?from=2024-03-01&to=2024-03-02").get_json()
    assert [i["energyLevel"] for i in window] == [40]


def test_timing_windows_of_every_activity_come_back_sorted_by_start(client, user):
    later = make.timing_recommendation(user["id"], activity="negotiation", start="2024-05-01T09:00:00Z")
    sooner = make.timing_recommendation(user["id"], activity="interview", start="2024-04-01T09:00:00Z")
    for body in (later, sooner):
        assert client.post(f"/users/{user['id']}/timing", json=body).status_code == 201

    windows = client.get(f"/users/{user['id']}/timing").get_json()
    assert [w["activity"] for w in windows] == ["interview", "interview", "negotiation", "negotiation"]
    assert [w["start"] for w in windows] == sorted(w["start"] for w in windows)
    only = client.get(f"/users/{user['id']}/timing?activity=negotiation").get_json()
    assert {w["activity"] for w in only} == {"negotiation"}


def test_invalid_input_is_a_400_naming_each_field_and_writes_nothing(app, client):
    response = client.post("/users", json={"email": "not-an-email", "name": ""})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "ValidationError"
    assert set(body["errors"]) == {"email", "name"}
    assert stored(app, "User") == 0


def test_an_out_of_range_insight_is_a_400_and_not_stored(app, client, user):
    body = make.planetary_insight(user["id"], energyLevel=150)
    response = client.post(f"/users/{user['id']}/insights", json=body)
    assert response.status_code == 400
    assert "energyLevel" in response.get_json()["errors"]
    assert stored(app, "PlanetaryInsight") == 0


def test_a_body_that_is_not_a_json_object_is_a_400(client):
    response = client.post("/users", data="email=a@b.co", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"body": "send Content-Type: application/json, got 'application/x-www-form-urlencoded'"}


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("data, content_type, says", [
    (DEEP, "application/json", "nests deeper than 64 levels"),  # RecursionError and an HTML 500 before
    ('{"email": "a@b.co", "name": ' + "[" * 70 + "]" * 70 + "}", "application/json", "nests deeper than 64 levels"),
    ("not json", "application/json", "is not valid JSON"),
    (b"\xff\xfe\x00", "application/json", "is not valid JSON"),
    ('{"email": "a@b.co", "name": NaN}', "application/json", "is not valid JSON: NaN is not JSON"),
    ("", "application/json", "the body is empty"),
    ('["a list"]', "application/json", "send a JSON object, got list"),
    ('{"email": "a@b.co", "name": "Ann"}', "text/plain", "send Content-Type: application/json, got 'text/plain'"),
    ('{"email": "a@b.co", "name": "Ann"}', None, "send Content-Type: application/json, got 'none'"),
])
def test_any_body_that_cannot_be_parsed_is_a_json_400_and_writes_nothing(app, client, data, content_type, says):
    response = client.post("/users", data=data, content_type=content_type)
    assert response.status_code == 400 and response.is_json
    assert response.get_json()["error"] == "ValidationError"
    assert says in response.get_json()["errors"]["body"]
    assert stored(app, "User") == 0


def test_a_json_content_type_with_a_charset_or_a_suffix_is_json(client):
    for n, content_type in enumerate(("application/json; charset=utf-8", "application/merge-patch+json")):
        data = json.dumps({"email": f"ann{n}@b.co", "name": "Ann"})
        response = client.post("/users", data=data, content_type=content_type)
        assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
def test_a_non_finite_number_in_the_query_string_is_a_400(client, user, value):
    response = client.get(f"/users/{user['id']}/insights?min_energy={value}")
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"min_energy": f"must be a finite number, got {value!r}"}


@pytest.mark.parametrize("value, says", [("2.5", "must be a whole number"), ("nan", "must be a finite number")])
def test_a_limit_must_be_a_finite_whole_number(client, user, value, says):
    response = client.get(f"/users/{user['id']}/insights?limit={value}")
    assert response.status_code == 400 and says in response.get_json()["errors"]["limit"]


def test_a_malformed_id_in_the_path_is_a_400(client):
    response = client.get("/users/not-an-id")
    assert response.status_code == 400
    assert response.get_json()["error"] == "ValidationError"


def test_a_non_numeric_filter_is_a_400(client, user):
    response = client.get(f"/users/{user['id']}/insights?min_energy=lots")
    assert response.status_code == 400
    assert "min_energy" in response.get_json()["errors"]


def test_an_unknown_user_is_a_json_404(client):
    missing = "0" * 24
    response = client.get(f"/users/{missing}")
    assert response.status_code == 404
    assert response.get_json() == {"error": "NotFound", "message": f"no User with id={missing} was found"}
    assert client.post(f"/users/{missing}/chart", json=make.birth_chart(missing)).status_code == 404


def test_a_duplicate_email_is_a_409_naming_the_field(app, client, user):
    response = client.post("/users", json={"email": "ANN@example.com", "name": "Ann again"})
    assert response.status_code == 409
    assert response.get_json()["fields"] == ["email"]
    assert stored(app, "User") == 1


def test_a_duplicate_insight_day_is_a_409(client, user):
    body = make.planetary_insight(user["id"], date="2024-03-01")
    assert client.post(f"/users/{user['id']}/insights", json=body).status_code == 201
    again = client.post(f"/users/{user['id']}/insights", json={**body, "energyLevel": 12})
    assert again.status_code == 409
    assert set(again.get_json()["fields"]) == {"userId", "date"}


def test_healthz_is_200_with_the_health_report(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"
    assert response.headers["Cache-Control"] == "no-store"


def test_with_the_server_down_healthz_is_503_and_requests_get_a_json_503(down_url):
    from astro_db.security import new_key

    options = {**DOWN_OPTIONS, "encryption_key": new_key()}  # a server: the example wants a key
    app = flask_app.create_app({"ASTRO_DB_URL": down_url, "ASTRO_DB_OPTIONS": options, "TESTING": True})
    client = app.test_client()

    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["status"] == "down"

    response = client.post("/users", json={"email": "a@b.co", "name": "A"})
    assert response.status_code == 503
    assert response.get_json()["error"] == "DatabaseConnectionError"
    assert "127.0.0.1" not in response.get_data(as_text=True)  # no internals in the response
    assert response.headers["Retry-After"] == "1"


def test_a_self_scoped_user_sees_only_their_own_documents(client, user):
    other = client.post("/users", json={"email": "bob@example.com", "name": "Bob"}).get_json()
    for owner in (user, other):
        assert client.post(f"/users/{owner['id']}/chart", json=make.birth_chart(owner["id"])).status_code == 201
    as_ann = {"X-User-Id": user["id"], "X-Roles": "self"}

    assert client.get(f"/users/{user['id']}/chart", headers=as_ann).status_code == 200
    assert client.get(f"/users/{other['id']}/chart", headers=as_ann).status_code == 404
    assert client.get(f"/users/{other['id']}", headers=as_ann).status_code == 404


def test_a_reader_may_not_write_and_gets_a_403(app, client):
    response = client.post("/users", json={"email": "c@d.co", "name": "C"},
                           headers={"X-User-Id": "svc-report", "X-Roles": "reader"})
    assert response.status_code == 403
    assert response.get_json()["error"] == "PermissionDeniedError"
    assert stored(app, "User") == 0


def test_on_a_server_without_an_encryption_key_the_app_refuses_to_start_naming_it(down_url, monkeypatch):
    """POST /users/<id>/chart was a 500 (EncryptionError, reason only in the server log); the
    app now stops at start-up, before it connects or writes anything, naming the setting."""
    from astro_db import errors

    monkeypatch.delenv("ASTRO_DB_ENCRYPTION_KEY", raising=False)
    with pytest.raises(errors.ConfigError, match=r"ASTRO_DB_ENCRYPTION_KEY=.*astro-db new-key") as caught:
        flask_app.create_app({"ASTRO_DB_URL": down_url, "TESTING": True})
    assert caught.value.key == "encryption_key"


def test_on_a_server_with_a_key_the_app_starts(down_url):
    from astro_db.security import new_key

    app = flask_app.create_app({"ASTRO_DB_URL": down_url, "TESTING": True, "ASTRO_DB_OPTIONS": {"encryption_key": new_key()}})
    flask_app.astro.close(app)
