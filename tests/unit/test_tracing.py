"""OpenTelemetry spans (docs/monitoring.md, "Tracing"), on the embedded backend: one span per
operation, what it holds, what it never holds, nesting, and the extra being optional."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pymongo.errors as pm
import pytest

from astro_db import Database
from astro_db.errors import DatabaseConnectionError, DuplicateKeyError, ValidationError
from astro_db.monitoring import tracing
from astro_db.ops import Executor, Operation

pytest.importorskip("opentelemetry.sdk.trace", reason="needs the tracing extra and opentelemetry-sdk (the dev extra)")

from opentelemetry import trace  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402
from otel import recording, texts  # noqa: E402 - tests/otel.py

ROOT = Path(__file__).resolve().parents[2]
SECRET = "zq-secret-7f3a"  # never in a span: not in a name, attribute, status or event


@pytest.fixture
def spans():
    with recording() as exporter:
        yield exporter


@pytest.fixture
def db():
    database = Database(f"mongomock://localhost/tr{uuid.uuid4().hex[:8]}", retry_attempts=3).connect()
    database.waits = []
    database.executor.runtime.retry.sleep = database.waits.append  # no real waiting
    yield database
    database.disconnect()


def finished(spans, name: str | None = None) -> list:
    return [s for s in spans.get_finished_spans() if name is None or s.name == name]


def only(spans, name: str):
    found = finished(spans, name)
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


def chart(user_id) -> dict:
    return {"userId": user_id, "birthData": {"date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
                                             "location": {"name": "London", "coordinates": [-0.1, 51.5]}}}


class Flaky:
    """A collection whose ``method`` fails ``times`` times with ``exc`` before it works."""

    def __init__(self, real, method: str, exc, times: int) -> None:
        self.real, self.method, self.exc, self.times, self.calls = real, method, exc, times, 0

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls <= self.times:
                raise self.exc
            return attr(*args, **kwargs)

        return call


def replace_collection(db, model: str, make):
    rt = db.executor.runtime
    info = rt.registry.resolve(model)
    rt.gateway.collections[info.collection] = make(rt.coll(info))


# --- one span per operation, and what it holds --------------------------------------------------

CALLS = {
    "find": ("read", lambda db, u: db.find("User", {"id": u.id})),
    "find_one": ("read", lambda db, u: db.find_one("User", {"id": u.id})),
    "count": ("read", lambda db, u: db.count("User", {})),
    "aggregate": ("read", lambda db, u: db.aggregate("User", [{"$match": {"status": "active"}}])),
    "audit_trail": ("read", lambda db, u: db.audit_trail("User", u.id)),
    "create": ("write", lambda db, u: db.create("User", {"email": "bob@example.com", "name": "Bob"})),
    "create_many": ("write", lambda db, u: db.create_many("User", [{"email": "cy@example.com", "name": "Cy"}])),
    "update": ("write", lambda db, u: db.update("User", {"id": u.id}, {"name": "Ann B."})),
    "update_many": ("write", lambda db, u: db.update_many("User", {"status": "active"}, {"name": "All"})),
    "delete": ("write", lambda db, u: db.delete("User", {"id": u.id})),
    "delete_many": ("write", lambda db, u: db.delete_many("User", {"name": "nobody"})),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_operation_makes_one_span_named_after_it_with_its_kind_model_and_namespace(db, spans, name):
    kind, call = CALLS[name]
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    spans.clear()
    call(db, user)
    ours = [s for s in finished(spans) if s.name.startswith("astro_db.")]
    assert [s.name for s in ours] == [f"astro_db.{name}"]  # one span, whatever the driver calls made
    span = ours[0]
    attributes = dict(span.attributes)
    assert attributes["db.system"] == "mongodb"
    assert attributes["db.operation.name"] == name
    assert attributes["db.namespace"] == db.config.database_name
    assert attributes["db.collection.name"] == "users"
    assert attributes["astro_db.model"] == "User"
    assert attributes["astro_db.kind"] == kind
    assert attributes["astro_db.retries"] == 0
    assert attributes["astro_db.driver_calls"] >= 1
    assert span.kind is trace.SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert "astro_db.actor.id" not in attributes  # the trusted app has no actor
    assert "server.address" not in attributes  # the embedded backend has no server


def test_the_model_is_named_however_the_caller_named_it_and_left_out_when_unknown(db, spans):
    from astro_db.errors import UnknownModelError
    from astro_db.models import BirthChart

    db.count(BirthChart, {})
    db.count("birthCharts", {})
    with pytest.raises(UnknownModelError):
        db.count("Horoscope", {})
    by_class, by_collection, unknown = finished(spans, "astro_db.count")
    assert by_class.attributes["astro_db.model"] == by_collection.attributes["astro_db.model"] == "BirthChart"
    assert by_class.attributes["db.collection.name"] == "birthCharts"
    assert "astro_db.model" not in unknown.attributes and "db.collection.name" not in unknown.attributes
    assert unknown.attributes["error.type"] == "astro_db.errors.UnknownModelError"


def test_a_failure_of_tracing_itself_never_fails_the_operation(db, spans, monkeypatch, caplog):
    def broken(config):
        raise RuntimeError("exporter trouble")

    monkeypatch.setattr(tracing, "_namespace", broken)
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    assert db.find_one("User", {"id": user.id}).email == "ann@example.com"
    assert [s.name for s in finished(spans)] == ["astro_db.create", "astro_db.find_one"]  # still ended
    assert "the span of find_one was not completed: RuntimeError" in caplog.text


def test_a_write_and_its_change_record_are_one_span_counting_both_driver_calls(db, spans):
    db.create("User", {"email": "ann@example.com", "name": "Ann"})  # audit on: the record is a second call
    span = only(spans, "astro_db.create")
    assert span.attributes["astro_db.driver_calls"] == 2


def test_the_span_carries_the_actors_id_and_not_its_roles_or_request(db, spans):
    admin = db.as_actor("ops-admin-42", "admin", request_id="req-9d1")
    admin.count("User", {})
    span = only(spans, "astro_db.count")
    assert span.attributes["astro_db.actor.id"] == "ops-admin-42"
    assert not any("admin" == t or "req-9d1" in t for t in texts(span))


def test_cache_hit_is_true_only_for_a_read_answered_from_the_query_cache(db, spans):
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    spans.clear()
    db.find_one("User", {"id": user.id}, cache=True)  # a miss: fetched and stored
    db.find_one("User", {"id": user.id}, cache=True)  # a hit: no driver call
    db.find_one("User", {"id": user.id})  # the cache not asked for
    first, second, third = finished(spans, "astro_db.find_one")
    assert (first.attributes["astro_db.cache.hit"], first.attributes["astro_db.driver_calls"]) == (False, 1)
    assert (second.attributes["astro_db.cache.hit"], second.attributes["astro_db.driver_calls"]) == (True, 0)
    assert third.attributes["astro_db.cache.hit"] is False
    db.create("User", {"email": "bob@example.com", "name": "Bob"})
    assert "astro_db.cache.hit" not in only(spans, "astro_db.create").attributes  # writes never hit


def test_a_stale_answer_during_an_outage_is_a_cache_hit_marked_stale(db, spans):
    db.count("User", {}, stale_ok=True)  # remembered
    replace_collection(db, "User", lambda coll: Flaky(coll, "count_documents",
                                                      pm.ServerSelectionTimeoutError("no server"), times=99))
    spans.clear()
    assert db.count("User", {}, stale_ok=True) == 0
    span = only(spans, "astro_db.count")
    assert span.attributes["astro_db.cache.hit"] is True and span.attributes["astro_db.stale"] is True
    assert span.attributes["astro_db.driver_calls"] == 1 and span.attributes["astro_db.retries"] == 2
    assert span.status.status_code is StatusCode.UNSET  # answered: not an error


def test_a_span_sampled_out_is_current_but_computes_nothing(db, spans, monkeypatch):
    """The SDK samples a span out: it is non-recording, no attribute is computed (no ``Trace``),
    yet it is the current span while the driver call runs, so the driver's spans follow its
    sampling decision."""
    from otel import WhileRecording

    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    spans.clear()
    monkeypatch.setattr(WhileRecording, "on", False)
    seen = []
    db.executor.call(None, "probe", lambda: seen.append((tracing.current(), trace.get_current_span())))
    assert db.find_one("User", {"id": user.id}).email == "ann@example.com"
    (state, current), = seen
    assert state is None and not current.is_recording() and current.get_span_context().is_valid
    assert finished(spans) == []


def test_retries_count_the_attempts_after_the_first(db, spans):
    db.create("User", {"email": "ann@example.com", "name": "Ann"})
    replace_collection(db, "User", lambda coll: Flaky(coll, "find", pm.AutoReconnect("connection reset"), times=2))
    spans.clear()
    assert len(db.find("User", {})) == 1
    span = only(spans, "astro_db.find")
    assert span.attributes["astro_db.retries"] == 2 and span.attributes["astro_db.driver_calls"] == 1
    assert len(db.waits) == 2


def test_a_failure_is_status_error_with_its_type_and_an_exception_event_without_its_message(db, spans):
    failure = pm.ServerSelectionTimeoutError(f"no server for mongodb://app:{SECRET}@db.example.com, {SECRET}")
    replace_collection(db, "User", lambda coll: Flaky(coll, "count_documents", failure, times=99))
    with pytest.raises(DatabaseConnectionError):
        db.count("User", {"name": SECRET})
    span = only(spans, "astro_db.count")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "DatabaseConnectionError"
    assert span.attributes["error.type"] == "astro_db.errors.DatabaseConnectionError"
    assert span.attributes["astro_db.retries"] == 2
    assert [(e.name, dict(e.attributes)) for e in span.events] == [
        ("exception", {"exception.type": "astro_db.errors.DatabaseConnectionError"})]
    assert not any(SECRET in t for t in texts(span))


def test_a_call_refused_before_any_io_is_an_error_span_with_no_driver_call(db, spans):
    with pytest.raises(ValidationError):
        db.create("User", {"email": f"not-an-email-{SECRET}", "name": "X"})
    span = only(spans, "astro_db.create")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "astro_db.errors.ValidationError"
    assert span.attributes["astro_db.driver_calls"] == 0
    assert not any(SECRET in t for t in texts(span))


def test_no_document_value_or_filter_value_reaches_any_span(db, spans):
    """Distinctive strings in documents, filters, updates, pipelines and refused input: none of
    them appears anywhere in any span of any call."""
    secret_mail = f"{SECRET}@example.com"
    user = db.create("User", {"email": secret_mail, "name": f"Name {SECRET}"})
    db.create_many("User", [{"email": f"b.{SECRET}@example.com", "name": SECRET}])
    db.find("User", {"email": secret_mail}, cache=True)
    db.find("User", {"email": secret_mail}, cache=True)
    db.find_one("User", {"name": {"$in": [SECRET, f"x{SECRET}"]}}, sort=[("name", 1)])
    db.count("User", {"$or": [{"email": secret_mail}, {"name": SECRET}]})
    db.aggregate("User", [{"$match": {"name": SECRET}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}])
    db.update("User", {"email": secret_mail}, {"name": f"Renamed {SECRET}"})
    db.update_many("User", {"name": SECRET}, {"$set": {"name": f"Again {SECRET}"}})
    db.create("BirthChart", {**chart(user.id), "birthData": {**chart(user.id)["birthData"],
                                                              "location": {"name": SECRET, "coordinates": [1, 2]}}})
    db.audit_trail("User", user.id)
    with pytest.raises(DuplicateKeyError):
        db.create("User", {"email": secret_mail, "name": "Dup"})
    with pytest.raises(ValidationError):
        db.update("User", {"email": secret_mail}, {"email": f"bad {SECRET}"})
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal: the point is what the span holds
        db.find("User", {f"$where{SECRET}": SECRET})
    db.delete("User", {"email": secret_mail})
    db.delete_many("User", {"name": {"$regex": f"^Again {SECRET}"}})
    db.explain("User", {"email": secret_mail})  # the embedded backend explains nothing: no driver call, no span
    seen = finished(spans)
    assert len([s for s in seen if s.name.startswith("astro_db.")]) >= 16
    leaks = [(s.name, t) for s in seen for t in texts(s) if SECRET in t]
    assert leaks == []


# --- nesting --------------------------------------------------------------------------------------

def test_the_operation_span_is_current_while_the_driver_call_runs(db, spans):
    """A span started inside the driver call (as PyMongo's instrumentation starts its command
    spans) is a child of the operation's span."""
    tracer = trace.get_tracer("test")

    class Spanning:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            attr = getattr(self.real, name)
            if name != "find_one":
                return attr

            def call(*args, **kwargs):
                with tracer.start_as_current_span("driver.find"):
                    return attr(*args, **kwargs)

            return call

    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    replace_collection(db, "User", Spanning)
    with tracer.start_as_current_span("request"):
        db.find_one("User", {"id": user.id})
    request, operation, driver = only(spans, "request"), only(spans, "astro_db.find_one"), only(spans, "driver.find")
    assert driver.parent.span_id == operation.context.span_id
    assert operation.parent.span_id == request.context.span_id  # under the app's own span
    assert driver.context.trace_id == operation.context.trace_id == request.context.trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached


def test_tooling_driver_calls_are_spans_of_kind_tool_with_their_model(db, spans):
    db.sync_indexes()
    sync = finished(spans, "astro_db.sync_indexes")
    assert sorted(s.attributes["astro_db.model"] for s in sync) == sorted(i.name for i in db.executor.runtime.registry)
    assert {s.attributes["astro_db.kind"] for s in sync} == {"tool"}
    spans.clear()
    inner = []
    db.executor.call(None, "reconcile changes", lambda: inner.append(trace.get_current_span()))
    span = only(spans, "astro_db.reconcile_changes")
    assert inner[0].get_span_context().span_id == span.context.span_id
    assert "astro_db.model" not in span.attributes and span.attributes["astro_db.driver_calls"] == 1


def test_cleanup_key_rotation_and_reconciliation_make_tool_spans_and_data_spans(spans):
    import base64
    import os

    key = base64.b64encode(os.urandom(32)).decode()
    database = Database(f"mongomock://localhost/tr{uuid.uuid4().hex[:8]}", encryption_key=key).connect()
    database.create("User", {"email": "ann@example.com", "name": "Ann"})
    spans.clear()
    database.cleanup(dry_run=True)
    database.rotate_keys(dry_run=True)
    database.reconcile_changes()
    names = [s.name for s in finished(spans)]
    assert names[0] == "astro_db.count" and "astro_db.distinct" in names  # cleanup: its data call, its look-ups
    assert "astro_db.rotate_key" in names and "astro_db.reconcile_changes" in names
    kinds = {s.name: s.attributes["astro_db.kind"] for s in finished(spans)}
    assert kinds == {"astro_db.count": "read", "astro_db.distinct": "tool", "astro_db.rotate_key": "tool",
                     "astro_db.reconcile_changes": "tool",
                     "astro_db.resume_erasures": "tool"}  # reconcile finishes interrupted erasures too
    database.disconnect()


def test_calls_that_make_no_driver_call_make_no_span_and_backup_makes_tool_spans(db, spans, tmp_path):
    from astro_db import backup

    db.create("User", {"email": "ann@example.com", "name": "Ann"})
    spans.clear()
    db.metrics()
    assert db.health()["status"] == "ok"
    assert finished(spans) == []
    backup.backup(db, tmp_path / "repo")  # its driver calls run through Executor.call: tool spans
    assert finished(spans) and {s.attributes["astro_db.kind"] for s in finished(spans)} == {"tool"}
    assert {s.name for s in finished(spans)} == {"astro_db.backup"}


# --- switched off, and optional -------------------------------------------------------------------

def test_tracing_false_makes_no_span(spans):
    database = Database(f"mongomock://localhost/tr{uuid.uuid4().hex[:8]}", tracing=False).connect()
    user = database.create("User", {"email": "ann@example.com", "name": "Ann"})
    database.find_one("User", {"id": user.id})
    database.sync_indexes()
    assert finished(spans) == []
    database.disconnect()


def test_tracing_is_switched_off_by_the_environment():
    from astro_db import DatabaseConfig

    assert DatabaseConfig.from_env({"ASTRO_DB_TRACING": "0"}).tracing is False
    assert DatabaseConfig.from_env({}).tracing is True


def test_tracing_is_a_boolean_setting():
    from astro_db.errors import ConfigError

    with pytest.raises(ConfigError, match="'tracing' must be bool"):
        Database("mongomock://localhost/x", tracing="yes")


def test_every_operation_method_of_the_executor_is_traced():
    """A new executor method taking an Operation must get its kind in ``tracing.KINDS``."""
    taking_an_operation = {
        name for name, fn in inspect.getmembers(Executor, inspect.isfunction)
        if not name.startswith("_") and list(inspect.signature(inspect.unwrap(fn)).parameters)[1:2] == ["op"]
    }
    assert taking_an_operation == set(tracing.KINDS)
    assert all(hasattr(getattr(Executor, name), "__wrapped__") for name in [*tracing.KINDS, "call"])
    assert Operation  # the type those methods take


def run_python(script: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_with_the_api_and_no_sdk_no_span_is_started_and_nothing_is_computed():
    """No tracer provider set (a fresh process): the operation runs without starting a span, and
    no ``Trace`` (the per-operation state the attributes are built from) is ever made."""
    out = run_python("""
        from opentelemetry import trace
        from astro_db import Database
        from astro_db.monitoring import tracing

        def refuse(*args, **kwargs):
            raise AssertionError("tracing work without an SDK")

        tracing.Trace.__init__ = refuse
        tracing._tracer.start_span = refuse
        db = Database("mongomock://localhost/nosdk").connect()
        assert db.config.tracing and tracing.AVAILABLE
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        seen = []
        db.executor.call(None, "probe", lambda: seen.append((tracing.current(), trace.get_current_span().is_recording())))
        assert db.find_one("User", {"id": user.id}).email == "ann@example.com"
        assert seen == [(None, False)], seen
        print("ok")
    """)
    assert out == "ok"


def test_the_provider_is_asked_once_and_asked_again_when_one_is_set_later():
    """Without an SDK the API's provider is asked at the first operation only (its answer kept
    while the API's global provider is the same object); a provider the application sets later,
    after operations ran untraced, is seen at the next operation and its spans recorded."""
    out = run_python("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from astro_db import Database

        asked = []
        real = trace.get_tracer_provider

        def counted():
            asked.append(1)
            return real()

        trace.get_tracer_provider = counted
        db = Database("mongomock://localhost/later").connect()
        before = len(asked)  # the Database itself asks (tracing's listener), and its setup's calls may
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        for _ in range(5):
            db.find_one("User", {"id": user.id})
        db.executor.call(None, "probe", lambda: None)
        untraced = len(asked) - before
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        db.update("User", {"id": user.id}, {"name": "Anne"})
        db.find_one("User", {"id": user.id})
        db.executor.call(None, "probe", lambda: None)
        names = [span.name for span in exporter.get_finished_spans()]
        print(untraced <= 1, len(asked) - before - untraced, names)
    """)
    assert out == "True 1 ['astro_db.update', 'astro_db.find_one', 'astro_db.probe']"


def test_without_opentelemetry_nothing_fails_and_the_executor_is_left_unwrapped():
    """In a process where ``opentelemetry`` cannot be imported, astro_db imports, runs every kind
    of call with ``tracing=True`` (the default), and its executor methods are the plain ones."""
    script = """
        import sys

        class NoOpenTelemetry:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError("opentelemetry is not installed")
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        from astro_db import Database
        from astro_db.monitoring import tracing
        from astro_db.ops import Executor

        assert tracing.AVAILABLE is False
        assert not hasattr(Executor.find_one, "__wrapped__") and not hasattr(Executor.call, "__wrapped__")
        db = Database("mongomock://localhost/plain").connect()
        assert db.config.tracing is True
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        assert db.find_one("User", {"id": user.id}, cache=True).email == "ann@example.com"
        assert db.count("User", {}) == 1 and db.delete("User", {"id": user.id})
        assert tracing.listeners(db.config) == []
        assert not any(m.startswith("opentelemetry") for m in sys.modules)
        print("ok")
    """
    assert run_python(script) == "ok"


def test_an_operation_taking_only_its_operation_is_wrapped_without_a_star_args_call():
    """The span wrapper of an executor operation whose parameters are ``(self, op)`` (all but
    ``audit_trail``) takes exactly those two (no ``*args`` packed and unpacked per call); the
    others keep the general wrapper. What the wrapper does is the same either way (the spans of
    the tests above)."""
    for name in tracing.KINDS:
        wrapper = getattr(Executor, name)
        code = wrapper.__code__
        star = bool(code.co_flags & inspect.CO_VARARGS)
        assert star is (name == "audit_trail"), name
        assert code.co_argcount == 2 and wrapper.__wrapped__.__name__ == name
    assert tracing._takes_only_an_operation(lambda self, op: None)
    assert not tracing._takes_only_an_operation(lambda self, op, document_id: None)
    assert not tracing._takes_only_an_operation(lambda self, op=None: None)
    assert not tracing._takes_only_an_operation(lambda self, *ops: None)
