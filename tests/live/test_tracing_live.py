"""OpenTelemetry spans against a live server: the server's address on the operation span, and
PyMongo's own command spans (opentelemetry-instrumentation-pymongo) nested under it, with no
document or filter value in any span."""

from __future__ import annotations

import pytest
from pymongo import monitoring
from pymongo.uri_parser import parse_uri

from astro_db import Database
from astro_db.errors import DuplicateKeyError

pytest.importorskip("opentelemetry.sdk.trace", reason="needs the tracing extra and opentelemetry-sdk (the dev extra)")

from opentelemetry.trace import SpanKind  # noqa: E402
from otel import provider, recording, texts  # noqa: E402 - tests/otel.py

SECRET = "zq-live-secret-51c9"


@pytest.fixture
def spans():
    with recording() as exporter:
        yield exporter


@pytest.fixture
def pymongo_spans(spans):
    """PyMongo's command spans, to the same exporter, for clients made while the test runs."""
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.pymongo")
    instrumentor = instrumentation.PymongoInstrumentor()
    before = list(monitoring._LISTENERS.command_listeners)
    instrumentor.instrument(tracer_provider=provider())
    try:
        yield spans
    finally:
        instrumentor.uninstrument()
        # uninstrument() only disables its listener, which PyMongo keeps registered for every client
        # made after (PyMongo has no unregister): tests of the listeners a client gets would see it
        monitoring._LISTENERS.command_listeners[:] = before


def open_db(url: str, **options) -> Database:
    return Database(url, server_selection_timeout_ms=5000, min_pool_size=0, **options).connect()


def test_the_operation_span_names_the_server_that_answered(live_url, spans):
    host, port = parse_uri(live_url)["nodelist"][0]
    db = open_db(live_url)
    try:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        spans.clear()
        db.find_one("User", {"id": user.id})
    finally:
        db.disconnect()
    (span,) = [s for s in spans.get_finished_spans() if s.name == "astro_db.find_one"]
    assert span.attributes["server.address"] == host
    assert span.attributes["server.port"] == port
    assert span.attributes["db.system"] == "mongodb"
    assert span.attributes["db.namespace"] == db.config.database_name
    assert span.attributes["db.collection.name"] == "users"
    assert span.attributes["astro_db.driver_calls"] == 1


def test_pymongo_command_spans_are_children_of_the_operation_span_and_no_span_holds_a_value(live_url, pymongo_spans):
    db = open_db(live_url)
    try:
        pymongo_spans.clear()
        secret_mail = f"{SECRET}@example.com"
        user = db.create("User", {"email": secret_mail, "name": f"Name {SECRET}"})
        db.find_one("User", {"email": secret_mail})
        db.update("User", {"id": user.id}, {"name": f"Renamed {SECRET}"})
        db.count("User", {"name": {"$in": [SECRET]}})
        with pytest.raises(DuplicateKeyError):
            db.create("User", {"email": secret_mail, "name": "Dup"})
        db.delete("User", {"email": secret_mail})
        db.explain("User", {"email": secret_mail})
    finally:
        db.disconnect()
    finished = pymongo_spans.get_finished_spans()
    ours = {s.context.span_id: s for s in finished if s.name.startswith("astro_db.")}
    commands = [s for s in finished if not s.name.startswith("astro_db.") and not s.name.endswith(".endSessions")]
    assert [s.name for s in ours.values()] == ["astro_db.create", "astro_db.find_one", "astro_db.update", "astro_db.count",
                                               "astro_db.create", "astro_db.delete", "astro_db.explain"]
    assert ours[max(ours, key=lambda i: ours[i].start_time)].attributes["astro_db.kind"] == "tool"
    assert commands, "the PyMongo instrumentation made no span"
    assert all(c.kind is SpanKind.CLIENT and c.parent is not None and c.parent.span_id in ours for c in commands)
    # (endSessions is the client closing at disconnect(), outside any operation)
    by_parent = {}
    for command in commands:
        by_parent.setdefault(ours[command.parent.span_id].name, set()).add(command.name.rsplit(".", 1)[1])
    assert "find" in by_parent["astro_db.find_one"]
    assert "aggregate" in by_parent["astro_db.count"]  # count_documents is an aggregate command
    assert "explain" in by_parent["astro_db.explain"]
    leaks = [(s.name, t) for s in finished for t in texts(s) if SECRET in t]
    assert leaks == []
