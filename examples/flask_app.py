"""A small REST API over the four astro_db models, with the Flask extension.

    python examples/flask_app.py                      # embedded backend, http://127.0.0.1:5000
    export ASTRO_DB_ENCRYPTION_KEY="$(astro-db new-key)"  # a server needs a key: birth places are encrypted
    MONGODB_URL=mongodb://localhost:27017/astro python examples/flask_app.py

    curl -X POST localhost:5000/users -H 'Content-Type: application/json' \
         -d '{"email": "ann@example.com", "name": "Ann"}'
    curl localhost:5000/healthz

Routes: POST /users, GET /users/<id>, POST|GET /users/<id>/chart, POST|GET /users/<id>/insights
(GET takes ?from=&to=&min_energy=&limit=), POST|GET /users/<id>/timing (GET takes ?activity=),
GET /healthz. astro_db errors become JSON: 400 invalid input (a body that is not a JSON object,
a query number that is not finite), 404 unknown id, 409 duplicate, 503 database down. The
acting user comes from the X-User-Id / X-Roles headers: a stand-in for your authentication,
never trust these headers in production. On a server the app refuses to start without an
encryption key (ASTRO_DB_ENCRYPTION_KEY), naming it, instead of answering POST .../chart with a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify, request

from astro_db import errors
from astro_db.contrib.flask import AstroDB


def demo_actor() -> tuple[str, list[str]] | None:
    """The acting user for role-based access (demo: from headers; use your auth instead)."""
    user_id = request.headers.get("X-User-Id")
    if not user_id:
        return None
    return user_id, [r for r in request.headers.get("X-Roles", "self").split(",") if r]


astro = AstroDB(actor_loader=demo_actor)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The application factory: ``config`` overrides the defaults (e.g. ``ASTRO_DB_URL``)."""
    app = Flask(__name__)
    app.config.update(ASTRO_DB_OPTIONS={"maxPoolSize": 50})
    app.config.update(config or {})
    astro.init_app(app)
    with app.app_context():
        require_a_key(astro.database.config)
    app.add_url_rule("/users", view_func=create_user, methods=["POST"])
    app.add_url_rule("/users/<user_id>", view_func=get_user)
    app.add_url_rule("/users/<user_id>/chart", view_func=create_chart, methods=["POST"])
    app.add_url_rule("/users/<user_id>/chart", view_func=get_chart)
    app.add_url_rule("/users/<user_id>/insights", view_func=create_insight, methods=["POST"])
    app.add_url_rule("/users/<user_id>/insights", view_func=list_insights)
    app.add_url_rule("/users/<user_id>/timing", view_func=create_timing, methods=["POST"])
    app.add_url_rule("/users/<user_id>/timing", view_func=list_timing)
    return app


def require_a_key(config: Any) -> None:
    """Birth places are encrypted at rest: on a server, refuse to start without a key (a
    ConfigError naming the setting) rather than fail each POST .../chart with a 500."""
    if not config.is_embedded and not config.encryption_key and not config.allow_plaintext_sensitive:
        raise errors.ConfigError(
            "examples/flask_app.py: the database is a server and no encryption key is set, so every "
            "birth chart would be refused; make one and export it: "
            'export ASTRO_DB_ENCRYPTION_KEY="$(astro-db new-key)" (or ASTRO_DB_OPTIONS={"encryption_key": ...})',
            key="encryption_key",
        )


def body() -> dict[str, Any]:
    """The request's JSON object, or a JSON 400 (not JSON, another content type, too deep)."""
    data: dict[str, Any] = astro.json_body()
    return data


def owned(user_id: str) -> dict[str, Any]:
    """The request body, attached to the user (who must exist: 404 otherwise)."""
    astro.get_or_404("User", {"id": user_id})
    return {**body(), "userId": user_id}


def create_user() -> Any:
    user = astro.current_db.create("User", body())
    return jsonify(user.to_dict()), 201


def get_user(user_id: str) -> Any:
    return jsonify(astro.get_or_404("User", {"id": user_id}).to_dict())


def create_chart(user_id: str) -> Any:
    chart = astro.current_db.create("BirthChart", owned(user_id))
    return jsonify(chart.to_dict()), 201


def get_chart(user_id: str) -> Any:
    return jsonify(astro.get_or_404("BirthChart", {"userId": user_id}).to_dict())


def create_insight(user_id: str) -> Any:
    insight = astro.current_db.create("PlanetaryInsight", owned(user_id))
    return jsonify(insight.to_dict()), 201


def list_insights(user_id: str) -> Any:
    query: dict[str, Any] = {"userId": user_id}
    dates = {op: request.args[arg] for op, arg in (("$gte", "from"), ("$lt", "to")) if arg in request.args}
    if dates:
        query["date"] = dates
    if "min_energy" in request.args:
        query["energyLevel"] = {"$gte": astro.query_number("min_energy")}  # nan, inf: a 400
    limit = int(astro.query_number("limit", integer=True)) if "limit" in request.args else 31
    rows = astro.current_db.find("PlanetaryInsight", query, sort=[("date", 1)], limit=limit)
    return jsonify([row.to_dict() for row in rows])


def create_timing(user_id: str) -> Any:
    timing = astro.current_db.create("TimingRecommendation", owned(user_id))
    return jsonify(timing.to_dict()), 201


def list_timing(user_id: str) -> Any:
    query: dict[str, Any] = {"userId": user_id}
    if "activity" in request.args:
        query["activity"] = request.args["activity"]
    rows = astro.current_db.find("TimingRecommendation", query, sort=[("activity", 1)])
    windows = [
        {"activity": row.activity, **window.to_dict()}
        for row in rows for window in row.windows
    ]
    return jsonify(sorted(windows, key=lambda w: w["start"]))


if __name__ == "__main__":
    import os
    import sys

    # without MONGODB_URL: the embedded backend, chosen explicitly (debug only, data lost at exit)
    settings = {"DEBUG": True, "ASTRO_DB_URL": os.environ.get("MONGODB_URL") or "mongomock://localhost/flask_example"}
    try:
        application = create_app(settings)
    except errors.ConfigError as exc:
        sys.exit(str(exc))
    application.run()
