"""The per-call path stays short without dropping a guarantee: what the hub precomputes, what it
skips when there is nothing to do, and what it still checks (issue 27's per-call CPU). Counts and
identities, never times."""

from __future__ import annotations

import datetime as _dt
import unicodedata

import pytest
from bson import ObjectId
from spies import calls_in

from astro_db.errors import PermissionDeniedError
from astro_db.models import PlanetaryInsight, User, fields
from astro_db.models import hydrate as hydration
from astro_db.ops.steps import cache as cache_step
from astro_db.ops.steps import compile as compile_step
from astro_db.ops.steps import hydrate as hydrate_step
from astro_db.ops.steps import route as route_step
from astro_db.security.access import Actor, authorize


def _reference_email(value: str) -> str:
    """``canonical_email`` without its ASCII short way (the full NFKC fold)."""
    value = unicodedata.normalize("NFKC", value).strip()
    for _ in range(4):
        folded = unicodedata.normalize("NFKC", value.lower()).strip()
        if folded == value:
            break
        value = folded
    return value


def test_an_ascii_email_is_folded_without_unicode_normalisation_to_the_same_spelling(monkeypatch):
    samples = [" Ann.Lee+X@Example.COM\t", "bob@example.com", "\x0bQ@W.E ", "".join(chr(c) for c in range(33, 127)) + "@a.b"]
    expected = [_reference_email(s) for s in samples]
    calls = []
    real = unicodedata.normalize
    monkeypatch.setattr(unicodedata, "normalize", lambda form, text: calls.append(text) or real(form, text))
    assert [fields.canonical_email(s) for s in samples] == expected
    assert calls == []
    assert fields.canonical_email("ＡＮＮ@ｅｘａｍｐｌｅ.com") == "ann@example.com"  # not ASCII: the full fold
    assert calls


def test_hydrate_many_looks_the_plan_and_the_signals_up_once(db, monkeypatch):
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    stored = [db.create(PlanetaryInsight, {"userId": user.id, "date": f"2026-01-{day:02d}T00:00:00Z", "energyLevel": 5,
                                           "recommendations": ["Rest"]}, lean=True) for day in range(1, 8)]
    one_by_one = [hydration.hydrate(PlanetaryInsight, doc) for doc in stored]
    looked = []
    real = hydration.read_plan
    monkeypatch.setattr(hydration, "read_plan", lambda cls: looked.append(cls) or real(cls))
    many = hydration.hydrate_many(PlanetaryInsight, stored)
    assert looked == [PlanetaryInsight]
    assert [d.to_dict() for d in many] == [d.to_dict() for d in one_by_one]


def test_the_trusted_apps_walker_is_built_once_and_an_actors_is_not_shared(db):
    rt = db.executor.runtime
    trusted = authorize(None, rt.registry.resolve("User"), "read")
    assert compile_step.walker(rt, trusted) is compile_step.walker(rt, trusted)
    assert compile_step.walker(rt, trusted, strict=True) is not compile_step.walker(rt, trusted)
    assert len(compile_step.walker(rt, trusted).rules) == 2  # checks and sealing: the scope rules are no-ops
    me = Actor(str(ObjectId()), roles=["self"])
    guard = authorize(me, rt.registry.resolve("User"), "read")
    walker = compile_step.walker(rt, guard)
    assert walker is not compile_step.walker(rt, guard) and guard in walker.rules
    assert walker.filter(User, {"name": "Ann"}) == {"$and": [{"name": "Ann"}, {"_id": ObjectId(me.id)}]}


def test_the_kept_walks_and_by_id_shapes_go_with_their_database_and_its_keys():
    """The trusted walks and the by-id shapes are kept on the runtime, not in a module: once a
    Database (with a field encryption key) is disconnected and dropped, nothing of astro_db's
    holds its ``FieldCrypto``, and so its keys, any longer."""
    import gc
    import weakref

    from .security_data import KEY_A, new_db

    keyed = new_db(encryption_key=KEY_A)
    ann = keyed.create(User, {"email": "ann@example.com", "name": "Ann"})
    assert keyed.find_one(User, {"id": ann.id}).name == "Ann"
    assert keyed.find_one(User, {"id": str(ann.id)}).name == "Ann"  # the by-id shape's compiled form
    rt = keyed.executor.runtime
    assert rt.trusted_walks and rt.by_id_shapes == {(rt.crypto, User, "id"): True}
    crypto = weakref.ref(rt.crypto)
    keyed.disconnect()
    del keyed, rt, ann
    gc.collect()
    assert crypto() is None


def test_a_read_that_wants_no_cache_computes_no_cache_key_and_fresh_answers_get_no_stale_mark(db, monkeypatch):
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})

    def refuse(*args, **kwargs):
        raise AssertionError("not on this path")

    monkeypatch.setattr(cache_step, "cache_key", refuse)
    monkeypatch.setattr(hydrate_step, "mark", refuse)
    assert db.find_one(User, {"id": user.id}).name == "Ann"
    assert [u.id for u in db.find(User, {"id": user.id})] == [user.id]


def test_a_server_answer_outside_the_actors_scope_is_still_refused_on_the_bare_path(db, monkeypatch):
    mine = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    other = db.create(User, {"email": "bob@example.com", "name": "Bob"})
    foreign = db.mongo.users.find_one({"_id": other.id})

    class Lying:
        def find_one(self, *args, **kwargs):
            return foreign

    monkeypatch.setattr(route_step, "read", lambda *args, **kwargs: (Lying(), "primary"))
    me = db.as_actor(str(mine.id), roles=["self"])
    with pytest.raises(PermissionDeniedError, match="outside the scope"):
        me.find_one(User, {"id": mine.id})


def test_opening_a_read_looks_at_top_level_values_in_place_and_opens_only_ciphertext(db, monkeypatch):
    from bson import Binary

    from astro_db.security import crypto as crypto_mod

    rt = db.executor.runtime
    crypto = rt.crypto
    opened = []
    real = crypto_mod.FieldCrypto._open
    monkeypatch.setattr(crypto_mod.FieldCrypto, "_open",
                        lambda self, value, *args, **kwargs: opened.append(value) or real(self, value, *args, **kwargs))
    insight = rt.registry.resolve("PlanetaryInsight")
    plain = {"_id": ObjectId(), "summary": "calm", "recommendations": ["Rest", "Walk"], "energyLevel": 5}
    kept = plain["recommendations"]
    assert crypto.open_document(insight, dict(plain)) == plain
    assert opened == []  # plaintext is not handed to the opener value by value
    assert plain["recommendations"] is kept
    envelope, csfle = "enc:v2:00000000:AAAA", Binary(b"\x01sealed", 6)
    out = crypto.open_document(insight, {"_id": ObjectId(), "summary": csfle, "recommendations": ["Rest", envelope, None]})
    assert opened == ["Rest", envelope, None, csfle]  # a list holding ciphertext is opened item by item, as before
    assert crypto_mod.is_unreadable(out["summary"]) and out["recommendations"][0] == "Rest"
    assert crypto_mod.is_unreadable(out["recommendations"][1]) and out["recommendations"][2] is None
    user = rt.registry.resolve("User")
    assert crypto.open_document(user, {"_id": 1, "email": "a@b.co", "emailIndex": "h", "name": "Ann"}) == {
        "_id": 1, "email": "a@b.co", "name": "Ann"}  # a top-level blind index is never shown
    opened.clear()
    docs = [{"_id": n, "summary": envelope if n == 3 else "calm", "recommendations": ["Rest"]} for n in range(5)]
    assert crypto.open_documents(insight, docs) is docs  # a result opened in place, in one pass
    assert opened == [envelope] and [crypto_mod.is_unreadable(d["summary"]) for d in docs] == [False] * 3 + [True, False]
    chart = rt.registry.resolve("BirthChart")  # nested paths are still walked
    doc = {"_id": 2, "birthData": {"location": {"name": envelope, "nameIndex": "h"}, "date": "d"}}
    assert crypto_mod.is_unreadable(crypto.open_document(chart, doc)["birthData"]["location"]["name"])
    assert "nameIndex" not in doc["birthData"]["location"] and doc["birthData"]["date"] == "d"


class _Text(str):
    pass


@pytest.mark.parametrize("keyed", [False, True])
def test_a_documents_top_level_values_are_looked_at_in_place_and_only_possible_ciphertext_reaches_the_steps(
        keyed, monkeypatch):
    """``open_document`` of a model whose sensitive paths are all top-level (a User) looks at each
    value in place: plain text, a list of plain text, None or a missing value need no step (the
    blind index still dropped); an envelope, a list holding one or a non-text item, a CSFLE binary,
    a str subclass or any other value goes to the steps (``_open_each``), which open it or make it
    ``UNREADABLE``. Either way the document is what the steps alone make of it."""
    import copy

    from bson import Binary

    from astro_db.security import crypto as crypto_mod

    from .security_data import KEY_A, new_db

    db = new_db(encryption_key=KEY_A) if keyed else new_db()
    try:
        rt = db.executor.runtime
        crypto, user = rt.crypto, rt.registry.resolve("User")
        sealed = crypto.seal_document(user, {"_id": ObjectId(), "email": "ann@example.com", "name": "Ann"}) if keyed else None
        envelope, csfle = "enc:v2:00000000:AAAA", Binary(b"\x01sealed", 6)
        plain_cases = [{"email": "a@b.co", "emailIndex": "h", "name": "Ann"}, {"email": None, "name": ["Ann", "Bo"]},
                       {"name": []}, {}]
        sealed_cases = [{"email": envelope, "emailIndex": "h", "name": "Ann"}, {"email": "a@b.co", "name": csfle},
                        {"name": ["Ann", envelope]}, {"name": ["Ann", 5]}, {"name": _Text("enc:x")}, {"name": 5},
                        {"email": "a enc: b", "name": ["a enc: b"]}]
        if sealed is not None:
            sealed_cases.append({k: v for k, v in sealed.items() if k != "_id"})
        crypto.open_document(user, {"_id": 0})  # the model's plan made
        steps = []
        real = crypto_mod.FieldCrypto._open_each
        monkeypatch.setattr(crypto_mod.FieldCrypto, "_open_each",
                            lambda self, *args: steps.append(args[1]) or real(self, *args))
        for case in plain_cases + sealed_cases:
            doc = {"_id": sealed["_id"] if sealed is not None else ObjectId(), **case}
            expected = copy.deepcopy(doc)
            real(crypto, user, (expected,), None, False)  # the steps alone
            steps.clear()
            assert crypto.open_document(user, doc) is doc
            assert doc.keys() == expected.keys() and repr(doc) == repr(expected), case
            assert len(steps) == (0 if case in plain_cases else 1), case
            assert "emailIndex" not in doc
    finally:
        db.disconnect()


def test_a_list_of_plain_text_is_looked_at_in_one_search_and_one_with_an_envelope_is_still_opened(db, monkeypatch):
    from bson import Binary

    from astro_db.security import crypto as crypto_mod

    rt = db.executor.runtime
    insight = rt.registry.resolve("PlanetaryInsight")
    docs = [{"_id": n, "summary": "calm", "recommendations": ["Rest", "Walk", "Run", "Read", "Sleep"]} for n in range(20)]
    rt.crypto.open_documents(insight, [dict(d) for d in docs])  # the plan built outside the count
    calls, _ = calls_in(lambda: rt.crypto.open_documents(insight, docs))
    # 14 per document when each item was checked; 5 now (the summary's checks, the list's and its join)
    assert calls / len(docs) <= 6
    inside = rt.crypto.open_document(insight, {"_id": 1, "recommendations": ["Rest", "a enc: b"]})
    assert inside["recommendations"] == ["Rest", "a enc: b"]  # "enc:" inside a value: checked item by item, plaintext
    opened = []
    real = crypto_mod.FieldCrypto._open
    monkeypatch.setattr(crypto_mod.FieldCrypto, "_open",
                        lambda self, value, *args, **kwargs: opened.append(value) or real(self, value, *args, **kwargs))
    envelope, csfle = "enc:v2:00000000:AAAA", Binary(b"\x01sealed", 6)
    for items in (["Rest", envelope], [envelope], ["Rest", csfle], [csfle, "Walk"]):
        opened.clear()
        out = rt.crypto.open_document(insight, {"_id": 1, "recommendations": list(items)})
        assert opened == items and [crypto_mod.is_unreadable(v) for v in out["recommendations"]] == [
            not isinstance(v, str) or v.startswith("enc:") for v in items]
    opened.clear()
    out = rt.crypto.open_document(insight, {"_id": 1, "recommendations": ["Rest", 5, None]})  # not all text: as before
    assert opened == [] and out["recommendations"] == ["Rest", 5, None]


def test_hydrating_an_insight_stays_within_its_function_call_budget(db):
    """The read plan (``models.hydrate.ReadPlan``) converts each stored value with at most one call:
    67 function calls per insight of this result before it (cProfile's count, C functions
    included), 35 with it, 31 since a list of text is converted in the build itself, 10 since
    the class's builder is compiled (``hydrate.compiled_builder``: its dates, ids and text
    converted in place, no look-up per key)."""
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    stored = [db.create(PlanetaryInsight, {"userId": user.id, "date": f"2026-01-{day:02d}T00:00:00Z", "energyLevel": 5,
                                           "recommendations": [" Rest ", "Walk"], "summary": "calm"}, lean=True)
              for day in range(1, 21)]
    expected = [PlanetaryInsight._from_son(dict(doc)) for doc in stored]
    copies = [dict(doc) for doc in stored]
    hydration.hydrate_many(PlanetaryInsight, [dict(doc) for doc in stored])  # the plan built outside the count
    calls, many = calls_in(lambda: hydration.hydrate_many(PlanetaryInsight, copies))
    assert calls / len(copies) <= 12
    assert [d._data for d in many] == [d._data for d in expected]
    assert all(d.date.tzinfo is not None and d.date.utcoffset().total_seconds() == 0 for d in many)


@pytest.mark.parametrize("stored", ["solo", [" a ", 5, None], (" b ",), [], None])
def test_a_list_of_text_converted_in_the_build_is_what_from_son_makes_of_it(stored):
    son = {"_id": ObjectId(), "userId": ObjectId(), "date": _dt.datetime(2026, 1, 1), "energyLevel": 3,
           "recommendations": stored, "summary": " s "}
    built, expected = hydration.hydrate(PlanetaryInsight, dict(son)), PlanetaryInsight._from_son(dict(son))
    assert built._data == expected._data and type(built.recommendations) is type(expected.recommendations)


def test_a_date_as_pymongo_reads_it_is_made_utc_exactly_without_its_python_utcoffset(monkeypatch):
    import random

    import bson
    from bson.codec_options import CodecOptions
    from bson.tz_util import FixedOffset

    rng = random.Random(27)
    ms = [0, -1, 1, -62135596800000, 253402300799999, *(rng.randrange(-62135596800000, 253402300799999) for _ in range(5000))]
    read = bson.decode(bson.encode({str(i): bson.DatetimeMS(m).as_datetime() for i, m in enumerate(ms)}),
                       CodecOptions(tz_aware=True))  # as a tz-aware client reads them: PyMongo's own UTC
    expected = {k: v.astimezone(_dt.timezone.utc) for k, v in read.items()}
    asked = []
    real = FixedOffset.utcoffset
    monkeypatch.setattr(FixedOffset, "utcoffset", lambda self, value: asked.append(1) or real(self, value))
    converted = {k: fields.to_utc(v) for k, v in read.items()}
    assert asked == []
    assert converted == expected and all(v.tzinfo is _dt.timezone.utc for v in converted.values())
    assert [repr(v) for v in converted.values()] == [repr(v) for v in expected.values()]
    stored = {"_id": ObjectId(), "userId": ObjectId(), "date": read["1"], "energyLevel": 3, "recommendations": ["a"],
              "summary": "s", "createdAt": read["2"], "updatedAt": read["3"]}
    built = hydration.hydrate(PlanetaryInsight, stored)
    assert asked == [] and built.date == expected["1"] and built.date.tzinfo is _dt.timezone.utc


def test_a_repeated_read_skips_what_its_first_call_settled(db, monkeypatch):
    """After the first by-id find_one: the route's key, the cache's bus, the stale check and the
    monitor's new-shape and new-table paths are not asked again (each settled by the first call)."""
    from astro_db.cache import store as cache_store
    from astro_db.driver import routing
    from astro_db.monitoring import monitor as monitoring
    from astro_db.ops import executor as executor_module

    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    assert db.find_one(User, {"id": user.id}).name == "Ann"
    asked: list[str] = []

    def noting(name, real):
        def wrapper(*args, **kwargs):
            asked.append(name)
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(routing.ReadPreference, "key", property(noting("key", routing.ReadPreference.key.fget)))
    monkeypatch.setattr(cache_store.QueryCache, "enabled", property(noting("enabled", cache_store.QueryCache.enabled.fget)))
    monkeypatch.setattr(executor_module, "stale_age", noting("stale_age", executor_module.stale_age))
    monkeypatch.setattr(monitoring.Monitor, "_count_shape", noting("_count_shape", monitoring.Monitor._count_shape))
    monkeypatch.setattr(monitoring.Monitor, "_stats", noting("_stats", monitoring.Monitor._stats))
    for _ in range(3):
        assert db.find_one(User, {"id": user.id}).name == "Ann"
    assert asked == []
    shapes = db.executor.runtime.monitor.query_shapes()
    assert [s["count"] for s in shapes if s["operation"] == "find_one"] == [4]  # still counted
    assert db.metrics()["operations"]["User"]["find_one"]["count"] == 4
    assert db.find_one(User, {"id": user.id}, cache=True).name == "Ann"  # asked for: the cache looks at itself
    assert "enabled" in asked


def test_with_no_tracer_provider_an_operation_runs_without_building_a_traced_call(db, monkeypatch):
    from astro_db.monitoring import tracing

    if not tracing.AVAILABLE:
        pytest.skip("the tracing extra is not installed")
    from opentelemetry import trace

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())  # as with no SDK set
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)  # the API's global too (tracing keeps its answer per global)

    def refuse(*args, **kwargs):
        raise AssertionError("no span is made without a tracer provider, so no traced call is built")

    monkeypatch.setattr(tracing, "_traced", refuse)
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    assert db.find_one(User, {"id": user.id}).name == "Ann"
    assert db.executor.call(None, "ping", lambda: 1) == 1


def test_a_find_one_with_no_options_validates_none_and_one_with_options_still_does(db, monkeypatch):
    from astro_db.errors import QueryError

    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    real = compile_step.find_options
    checked: list[object] = []
    monkeypatch.setattr(compile_step, "find_options", lambda *args, **kwargs: checked.append(args[2]) or real(*args, **kwargs))
    assert db.find_one(User, {"id": user.id}).name == "Ann"
    assert checked == []
    assert db.find_one(User, {"id": user.id}, sort=[("name", 1)]).name == "Ann"
    with pytest.raises(QueryError):
        db.find_one(User, {"id": user.id}, sort=[("nope", 1)])
    assert len(checked) == 2


def test_no_per_call_listener_unless_asked_for_and_tracings_only_with_a_recording_provider(monkeypatch):
    """docs/monitoring.md: by default no option makes PyMongo publish per-call events; the
    monitor's command and pool listeners come with ``command_monitoring=True``, tracing's server
    listener with a recording tracer provider set when the Database is made (and ``tracing`` on)."""
    from pymongo import monitoring as pm_monitoring

    from astro_db import Database
    from astro_db.monitoring import tracing

    def per_call_listeners(**options):
        rt = Database("mongodb://localhost:1/readfast", allow_plaintext_sensitive=True, **options).executor.runtime
        return sorted(type(x).__name__ for x in rt.listeners
                      if isinstance(x, (pm_monitoring.CommandListener, pm_monitoring.ConnectionPoolListener)))

    if tracing.AVAILABLE:
        from opentelemetry import trace

        monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())  # no SDK set
    assert per_call_listeners() == []
    assert per_call_listeners(monitoring=False) == []
    assert per_call_listeners(command_monitoring=True) == ["CommandEvents", "PoolEvents"]
    if tracing.AVAILABLE:
        sdk = pytest.importorskip("opentelemetry.sdk.trace")
        monkeypatch.setattr(trace, "get_tracer_provider", lambda: sdk.TracerProvider())  # an SDK set before
        assert per_call_listeners() == ["ServerListener"]
        assert per_call_listeners(tracing=False) == []
