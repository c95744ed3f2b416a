"""The single-document write path stays short without dropping a guarantee (issue 27: the own
CPU of create and update). What it no longer does per call, and that what it gives is unchanged.
Counts, identities and equalities, never times."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as _dt
import inspect
import weakref

import pytest
from bson import ObjectId

from astro_db.cache.bus import LocalBus, Notice
from astro_db.cache.store import _top_fields
from astro_db.errors import EncryptionError, ValidationError
from astro_db.events import WriteEvent, Written
from astro_db.models import MODELS, User
from astro_db.models import hydrate as hydration
from astro_db.models.plan import doc_plan
from astro_db.ops import writes
from astro_db.ops.operation import Operation
from astro_db.ops.steps import seal as seal_step
from astro_db.query.walker import FILTER, UPDATE, Node, Walker
from tests.models import samples

from .security_data import new_db

# --- events: one dict update instead of a frozen dataclass's __setattr__ per field -----------------


@pytest.mark.parametrize("cls", [Written, WriteEvent, Operation, Node])
def test_the_events_own_init_takes_exactly_the_dataclass_fields_in_order_with_their_defaults(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default is None, f.name  # time: made when the event is; options: a new dict
        else:
            assert p.default is inspect.Parameter.empty, f.name


def test_an_operation_is_built_as_its_dataclass_would_be_frozen_comparable_and_replaceable():
    op = Operation("find", "User", None, None, {"a": 1}, None, {"lean": True})
    assert op == Operation("find", "User", query={"a": 1}, options={"lean": True}) and op.permission == "read"
    bare = Operation("create")
    assert (bare.model, bare.actor, bare.transaction, bare.query, bare.data, bare.options) == (None,) * 5 + ({},)
    assert bare.options is not Operation("create").options  # a new dict each, as default_factory makes
    assert dataclasses.replace(op, name="count").name == "count" and op.name == "find"
    assert set(vars(op)) == {f.name for f in dataclasses.fields(Operation)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.name = "delete"  # type: ignore[misc]


def test_a_calls_own_filter_and_update_node_is_made_once_per_model_and_is_what_it_was():
    seen = []

    class Spy:
        def visit(self, node, value):
            seen.append(node)
            return value

    walker = Walker((Spy(),))
    for _ in range(2):
        walker.filter(User, {"name": "Ann"})
        walker.update(User, {"name": "Bo"})
    assert seen[0] is seen[2] and seen[1] is seen[3]  # the same frozen value each call: not built again
    assert seen[0] == Node(FILTER, User, 0, "", "", "query") and seen[1] == Node(UPDATE, User)
    walker.pipeline(User, [{"$match": {"name": "Ann"}}])  # a pipeline's nodes are made per call, as before
    assert sorted((n.kind, n.stage, n.key) for n in seen[4:]) == [("filter", "$match", "$match"), ("pipeline", "", ""),
                                                                  ("stage", "$match", "$match")]
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].kind = UPDATE  # type: ignore[misc]


def test_the_events_stay_frozen_comparable_and_replaceable():
    oid = ObjectId()
    written = Written("create", (oid,), ("name",), documents=({"_id": oid},), op_id=oid)
    assert written == Written("create", (oid,), ("name",), (), ({"_id": oid},), False, oid)
    assert dataclasses.replace(written, recorded=True).recorded and not written.recorded
    with pytest.raises(dataclasses.FrozenInstanceError):
        written.action = "update"  # type: ignore[misc]
    before = _dt.datetime.now(_dt.timezone.utc)
    event = WriteEvent(model="User", collection="users", action="create", document_ids=(oid,), fields=("name",),
                       database=None)
    assert before <= event.time <= _dt.datetime.now(_dt.timezone.utc) and event.time.tzinfo is _dt.timezone.utc
    assert (event.session, event.changes, event.recorded, event.op_id) == (None, (), False, None)
    moved = dataclasses.replace(event, model="Other")
    assert moved.model == "Other" and moved.time == event.time and moved.document_ids == (oid,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.model = "Other"  # type: ignore[misc]


def test_what_a_single_write_announces_is_what_the_general_path_builds():
    doc = {"_id": ObjectId(), "name": "Ann", "_rev": 3, "updatedAt": _dt.datetime(2026, 1, 1)}
    op = ObjectId()
    one = writes._written("update", [doc], ("name",), op)
    general = Written("update", (doc["_id"],), ("name",), (writes._created(doc),), documents=(doc,), op_id=op)
    assert one == general and one.changes[0].rev == 3 and type(one.changes[0]) is type(general.changes[0])
    for stored in ({"_id": 1}, {"_id": 1, "_rev": None}, {"_id": 1, "_rev": 2.0}):  # no revision yet; one stored as a double
        change = writes._written("create", [stored], (), op).changes[0]
        assert change == writes._created(stored) and type(change.rev) is int and change.image is stored
    assert writes._fields_of({"_id": 1, "a": 2, "b": 3}) == ("a", "b")
    assert writes._fields_of({"a": 2, "_id": 1, "b": 3}) == ("a", "b")


# --- a create: validated once, sealed without a copy when nothing is sealed, built from its own document


def test_a_valid_create_enters_no_masking_context_and_an_invalid_one_is_still_masked(db, monkeypatch):
    real = writes.masked_errors
    entered = []
    monkeypatch.setattr(writes, "masked_errors", lambda cls: entered.append(cls) or real(cls))
    db.create(User, {"email": "ann@example.com", "name": "Ann"})
    assert entered == []
    with pytest.raises(ValidationError) as caught:
        db.create(User, {"email": "secret.person@@example.com", "name": "Ann"})
    assert entered == [User]
    assert "secret.person" not in str(caught.value) and "secret.person" not in str(caught.value.errors)


def test_without_a_key_a_new_document_is_checked_in_place_not_copied():
    db = new_db(allow_plaintext_sensitive=True)
    try:
        rt = db.executor.runtime
        info = rt.registry.resolve("User")
        son = writes.new_document(info, {"email": "ann@example.com", "name": "Ann"})
        kept = copy.deepcopy(son)
        assert seal_step.document(rt, info, son) is son and son == kept
        # the checks a sealing makes are still made on every sensitive value
        with pytest.raises(EncryptionError, match="would read back as an envelope"):
            seal_step.document(rt, info, {**son, "name": "enc:v2:not-really"})
        with pytest.raises(EncryptionError, match="only string values"):
            seal_step.document(rt, info, {**son, "name": 5})
        # nested paths, lists and lists of sub-documents are reached too
        chart = writes.new_document(rt.registry.resolve("BirthChart"), samples.chart_input())
        chart["birthData"]["location"]["name"] = "enc:v2:x"
        with pytest.raises(EncryptionError, match="birthData.location.name"):
            seal_step.document(rt, rt.registry.resolve("BirthChart"), chart)
        insight = writes.new_document(rt.registry.resolve("PlanetaryInsight"), samples.insight_input())
        assert seal_step.document(rt, rt.registry.resolve("PlanetaryInsight"), insight) is insight
        insight["recommendations"] = ["fine", "enc:v2:x"]
        with pytest.raises(EncryptionError, match="recommendations"):
            seal_step.document(rt, rt.registry.resolve("PlanetaryInsight"), insight)
        timing = writes.new_document(rt.registry.resolve("TimingRecommendation"), samples.timing_input())
        assert seal_step.document(rt, rt.registry.resolve("TimingRecommendation"), timing) is timing
        timing["risks"][0]["description"] = "enc:v2:x"
        with pytest.raises(EncryptionError, match="risks.description"):
            seal_step.document(rt, rt.registry.resolve("TimingRecommendation"), timing)
    finally:
        db.disconnect()
    strict = new_db(allow_plaintext_sensitive=False)
    try:
        rt = strict.executor.runtime
        info = rt.registry.resolve("User")
        with pytest.raises(EncryptionError, match="sensitive field"):
            seal_step.document(rt, info, dict(son))
    finally:
        strict.disconnect()


SAMPLES = {"User": samples.user_input, "BirthChart": samples.chart_input, "PlanetaryInsight": samples.insight_input,
           "TimingRecommendation": samples.timing_input}


def _state(doc):
    """An instance's data, recursively, with each value's type: what hydration must reproduce."""
    if hasattr(doc, "_data"):
        return (type(doc), doc._created, doc._initialised, list(doc._changed_fields),
                {k: _state(v) for k, v in doc._data.items()})
    if isinstance(doc, list):
        return [_state(v) for v in doc]
    return (type(doc), doc)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_creates_answer_is_the_instance_hydration_of_its_stored_document_gives(db, name):
    info = db.executor.runtime.registry.resolve(name)
    son = writes.new_document(info, SAMPLES[name]())
    son["_rev"] = 2  # an unknown key (a continued life's revision) is kept as it is
    assert _state(hydration.hydrate_encoded(info.cls, son)) == _state(hydration.hydrate(info.cls, copy.deepcopy(son)))


def test_a_create_converts_only_the_values_the_codec_did_not_leave_in_python_form(db, monkeypatch):
    plan = doc_plan(User)
    encoded, read = hydration.encoded_plan(User), hydration.read_plan(User)
    for key, fp in plan.by_key.items():
        as_is = encoded.keys[key][1] == hydration._AS_IS
        assert as_is == (fp.mongo_is_python or fp.python_is_identity), key
    assert encoded.keys["email"][1] == hydration._AS_IS and read.keys["email"][1] != hydration._AS_IS
    used = []
    for plan in (encoded, read):  # each plan's builder (compiled, else the loop)
        monkeypatch.setattr(plan, "build", lambda son, plan=plan, real=plan.build: used.append(plan) or real(son))
    user = db.create(User, {"email": "Ann@Example.com", "name": " Ann ", "status": "active"})
    assert used == [encoded]  # a create's answer: the encoded plan (found in place), not a read's
    loop = []
    monkeypatch.undo()
    monkeypatch.setitem(encoded.build.__globals__, "LOOP", lambda plan, son: loop.append(plan) or hydration._build(plan, son))
    son = writes.new_document(db.executor.runtime.registry.resolve("User"), {"email": "bo@example.com", "name": "Bo"})
    assert _state(hydration.hydrate_encoded(User, dict(son, id=son["_id"]))) == _state(
        hydration.hydrate(User, dict(son, id=son["_id"])))  # another spelling: the encoded plan's loop
    assert loop[0] is encoded
    assert (user.email, user.name, user.status) == ("ann@example.com", "Ann", "active")
    assert _state(user) == _state(db.find_one(User, {"id": user.id}))


# --- the after-write step: the query cache's notice and the in-process bus -----------------------


def test_the_notice_fields_are_the_top_level_names_whatever_the_spelling():
    for names in [("a", "b"), ("a.b", "c"), ("a.0.b", "a.c", "d"), (), ("x",)]:
        assert _top_fields(names) == frozenset(n.split(".", 1)[0] for n in names)
    assert _top_fields((1, "a.b")) == frozenset({"1", "a"})  # not a string: the general way


class _Counted(weakref.WeakSet):  # type: ignore[type-arg]
    iterations = 0

    def __iter__(self):
        type(self).iterations += 1
        return super().__iter__()


class _Listener:
    def __init__(self):
        self.applied = []

    def apply(self, notice):
        self.applied.append(notice)
        return 0

    def drop(self, model):
        self.applied.append(model)
        return 0

    def drop_all(self, reason):
        return 0


def test_a_bus_with_only_the_publishing_cache_iterates_no_listeners_and_still_counts_the_message():
    bus = LocalBus(("test-alone",))
    bus._listeners = _Counted()
    alone, other = _Listener(), _Listener()
    bus.attach(alone)
    notice = Notice("User", frozenset({b"x"}), frozenset({"name"}))
    bus.publish("User", origin=alone, notice=notice)
    assert _Counted.iterations == 0 and alone.applied == [] and bus.figures.sent == 1
    bus.attach(other)
    bus.publish("User", origin=alone, notice=notice)
    assert _Counted.iterations == 1 and other.applied == [notice] and alone.applied == [] and bus.figures.sent == 2
    bus.publish("User", origin=None, notice=notice)  # no origin: every listener hears it
    assert sorted(map(len, (alone.applied, other.applied))) == [1, 2]


def test_the_after_write_step_enters_no_bound_context_unless_an_outcome_was_read_back(db, monkeypatch):
    def refuse(self):
        raise AssertionError("not on this path")

    monkeypatch.setattr(writes.WriteRunner, "_bound_after", refuse)
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    assert db.update(User, {"id": user.id}, {"name": "Bo"}).name == "Bo"


def test_a_write_to_a_model_with_nothing_cached_judges_no_entry_but_still_advances_its_generation(monkeypatch):
    from astro_db import Database

    with Database("mongomock://localhost/wp_cache", cache_models=("User",), ensure_indexes=False) as db:
        cache = db.executor.runtime.cache
        judged = []
        real = type(cache)._candidates
        monkeypatch.setattr(type(cache), "_candidates", lambda self, notice: judged.append(notice.model) or real(self, notice))
        user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
        before, counts = cache.generation("User"), cache.stats()
        db.update(User, {"id": user.id}, {"name": "Bo"})
        assert judged == [] and cache.generation("User")[1] == before[1] + 1
        assert (cache.stats()["invalidations"], cache.stats()["kept"]) == (counts["invalidations"], counts["kept"])
        db.find(User, {"status": "active"})  # an entry of the model: the next write judges it
        db.update(User, {"id": user.id}, {"name": "Cy"})
        assert judged == ["User"] and db.find(User, {"status": "active"}, lean=True)[0]["name"] == "Cy"


def test_a_write_nobody_could_have_cached_builds_no_notice_but_advances_the_generation_and_counts_the_message(monkeypatch):
    from astro_db import Database

    with Database("mongomock://localhost/wp_quiet", cache_models=("User",), ensure_indexes=False) as db:
        cache = db.executor.runtime.cache
        built = []
        real = type(cache).notice
        monkeypatch.setattr(type(cache), "notice", lambda self, event: built.append(event.action) or real(self, event))
        under_way = cache.generation("User")  # a read begun before the write
        user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
        db.update(User, {"id": user.id}, {"name": "Bo"})
        assert built == [] and cache.generation("User")[1] == under_way[1] + 2
        assert cache.bus_stats()["sent"] == 2
        assert not cache.put(("User", "find_one", None, b"k"), {"_id": user.id}, under_way)  # its answer is not stored
        with db.transaction() as tx:  # inside a transaction: the notice waits for the commit, as before
            db.update(User, {"id": user.id}, {"name": "Cy"}, transaction=tx)
        assert built == ["update"]
        other = _Listener()  # a second cache of the process hears the local bus: it is told what changed
        cache.peers.attach(other)
        db.update(User, {"id": user.id}, {"name": "Di"})
        assert built == ["update", "update"] and len(other.applied) == 1 and other.applied[0].ids is not None
        assert cache.peers.members == 2
        del other  # gone: the bus counts its members down, and writes are quiet again
        __import__("gc").collect()
        assert cache.peers.members == 1
        db.update(User, {"id": user.id}, {"name": "Dot"})
        assert built == ["update", "update"]
        db.find(User, {"status": "active"})  # an entry of the model held here: the write is judged against it
        db.update(User, {"id": user.id}, {"name": "Ed"})
        assert built == ["update", "update", "update"]
        assert db.find(User, {"status": "active"}, lean=True)[0]["name"] == "Ed"


def test_with_the_records_off_a_write_only_the_cache_hears_of_builds_no_event_and_any_other_hook_gets_one(monkeypatch):
    """Hooks off (no change records, no app hook): a write outside a transaction to a model the
    cache holds nothing of makes no ``WriteEvent`` (the after-write step asks the cache's
    ``unseen_write`` itself), and still advances the generation and counts the message. A cached
    model, a transaction or an app's hook: the event is made, as before. With the records on and
    nothing else to hear of the write, the records are written with no event either."""
    from astro_db import Database

    events = []
    real = WriteEvent.__init__

    def counted(self, *args, **kwargs):
        events.append(args[2] if len(args) > 2 else kwargs.get("action"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(WriteEvent, "__init__", counted)
    with Database("mongomock://localhost/wp_noevent", cache_models=("User",), audit=False, journal=False,
                  ensure_indexes=False) as db:
        cache = db.executor.runtime.cache
        under_way = cache.generation("User")
        user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
        assert db.update(User, {"id": user.id}, {"name": "Bo"}, returning=False) is True
        db.update(User, {"id": user.id}, {"name": "Bea"})
        assert events == [] and cache.generation("User")[1] == under_way[1] + 3
        assert cache.bus_stats()["sent"] == 3
        assert not cache.put(("User", "find_one", None, b"k"), {"_id": user.id}, under_way)
        with db.transaction() as tx:
            db.update(User, {"id": user.id}, {"name": "Cy"}, transaction=tx)
        assert events == ["update"]
        db.find(User, {"status": "active"})  # an entry of the model: the write is judged with its event
        db.update(User, {"id": user.id}, {"name": "Di"})
        assert events == ["update", "update"] and db.find(User, {"status": "active"}, lean=True)[0]["name"] == "Di"
        heard = []
        db.executor.runtime.hooks.append(lambda event: heard.append((event.action, event.document_ids)))
        cache.clear()
        db.update(User, {"id": user.id}, {"name": "Ed"})
        assert events[-1] == "update" and heard == [("update", (user.id,))]
    events.clear()
    with Database("mongomock://localhost/wp_event", ensure_indexes=False) as db:  # the records on (the defaults)
        user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
        db.update(User, {"id": user.id}, {"name": "Bo"})
        # the records are the only hook left once the cache is done: written without an event
        assert events == [] and len(db.audit_trail(User, user.id)) == 2
        db.executor.runtime.hooks.append(lambda event: heard.append((event.action, event.document_ids)))
        db.update(User, {"id": user.id}, {"name": "Cy"})
        assert events == ["update"] and heard[-1] == ("update", (user.id,)) and len(db.audit_trail(User, user.id)) == 3


def test_a_create_nobody_hears_of_builds_not_even_what_it_wrote_and_a_heard_one_tells_the_same(monkeypatch):
    """Hooks off and a cache holding nothing of the model: a single create does not build its
    ``Written`` (the after-write step gets the ``partial`` that makes it and never calls it). With
    a hook that hears of it (an app's, or the records on), the event is the one it always was."""
    from astro_db import Database

    made = []
    real = Written.one
    monkeypatch.setattr(Written, "one", classmethod(lambda cls, *a, **k: made.append(a[0]) or real(*a, **k)))
    with Database("mongomock://localhost/wp_lazy", cache_models=("User",), audit=False, journal=False,
                  ensure_indexes=False) as db:
        user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
        assert made == [] and db.find_one(User, {"id": user.id}).name == "Ann"
        heard = []
        db.executor.runtime.hooks.append(lambda event: heard.append(event))
        bo = db.create(User, {"email": "bo@example.com", "name": "Bo"})
        assert made == ["create"] and len(heard) == 1
        event = heard[0]
        assert (event.action, event.document_ids, event.fields) == ("create", (bo.id,), (
            "__v", "email", "name", "status", "createdAt", "updatedAt"))
        assert event.documents[0]["_id"] == bo.id and event.changes[0][:2] == (bo.id, 0) and not event.recorded
    made.clear()
    with Database("mongomock://localhost/wp_lazy_records", ensure_indexes=False, one_command_writes=False) as db:
        user = db.create(User, {"email": "ann@example.com", "name": "Ann"})  # the records on: built and recorded
        assert made == ["create"] and len(db.audit_trail(User, user.id)) == 1


def test_a_new_document_built_from_plans_only_is_not_walked_for_keys_and_a_free_form_one_still_is(db, monkeypatch):
    from mongoengine.fields import DictField

    from astro_db.models import AstroDocument
    from astro_db.models.fields import TextField
    from astro_db.registry import ModelInfo

    assert {name: doc_plan(cls).closed for name, cls in MODELS.items()} == {
        "User": True, "PlanetaryInsight": True, "TimingRecommendation": True,
        "BirthChart": False}  # its birth place's GeoJSON point is a dict the caller writes

    class Slug(TextField):  # a subclass may override validate: not trusted to give a string
        pass

    class Free(AstroDocument):
        meta = {"collection": "wpFree"}
        slug = Slug()
        extra = DictField()

    class Sluggish(AstroDocument):
        meta = {"collection": "wpSluggish"}
        slug = Slug()

    assert not doc_plan(Free).closed and not doc_plan(Sluggish).closed
    settled = [writes._keys_closed(cls) for cls in (*MODELS.values(), Free, Sluggish)]  # once per class
    assert settled == [True, False, True, True, False, False]
    walked = []
    real = writes.check_document_keys
    monkeypatch.setattr(writes, "check_document_keys", lambda doc, path="": walked.append(doc) or real(doc, path))
    db.create(User, samples.user_input())
    db.create("PlanetaryInsight", samples.insight_input())
    db.create_many("TimingRecommendation", [samples.timing_input()])
    assert walked == []
    db.create("BirthChart", samples.chart_input())
    assert len(walked) == 1
    point = {"type": "Point", "coordinates": [2.35, 48.86], "$where": "x"}
    bad = samples.chart_input()
    bad["birth_data"]["location"]["coordinates"] = point
    with pytest.raises(ValidationError, match=r"key '\$where' is not allowed in stored data"):
        db.create("BirthChart", bad)
    with pytest.raises(ValidationError, match="key .__proto__. is not allowed in stored data"):
        writes.new_document(ModelInfo("Free", Free, "wpFree"), {"slug": "a", "extra": {"__proto__": 1}})


def test_the_service_clock_gives_the_exact_millisecond_of_the_system_clock(monkeypatch):
    from astro_db.ops import runtime

    epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    rng = __import__("random").Random(27)
    samples_ns = [0, 999_999, 1_000_000, 1_733_500_000_999_999_999, 4_102_444_800_000_000_000 - 1,  # 2100
                  *(rng.randrange(0, 4_294_967_295_000_000_000) for _ in range(20_000))]  # up to 2106
    for ns in samples_ns:
        monkeypatch.setattr(runtime, "_time_ns", lambda ns=ns: ns)
        now = runtime.utcnow()
        assert now == epoch + _dt.timedelta(milliseconds=ns // 1_000_000) and now.tzinfo is _dt.timezone.utc
    monkeypatch.undo()
    before = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    assert before <= runtime.utcnow() <= _dt.datetime.now(_dt.timezone.utc)


def test_leaves_and_lists_of_leaves_are_encoded_inline_with_the_same_refusals(monkeypatch):
    from astro_db.models import PlanetaryInsight, TimingRecommendation, codec

    dispatched = []
    real = codec._encode_field
    monkeypatch.setattr(codec, "_encode_field", lambda fp, *rest: dispatched.append(fp.stored) or real(fp, *rest))
    good = {"user_id": ObjectId(), "date": "2026-01-01", "energy_level": 5, "recommendations": [" a ", "b"], "summary": "s"}
    assert codec.encode_new(PlanetaryInsight, good)["recommendations"] == ["a", "b"]
    assert dispatched == []  # neither the list (straight to the list encoder), nor its items, nor the leaves
    bad = {**good, "energy_level": 500, "recommendations": [" ok ", 5, None, "x" * 501], "summary": 7}
    with pytest.raises(ValidationError) as caught:
        codec.encode_new(PlanetaryInsight, bad)
    assert {k: v[:26] for k, v in caught.value.errors.items()} == {
        "energyLevel": "must be 0-100, got 500", "recommendations.1": "must be a string, got 5",
        "recommendations.2": "must be a string, got None", "recommendations.3": "must be 1-500 characters, ",
        "summary": "must be a string, got 7"}
    with pytest.raises(ValidationError) as caught:  # embedded documents in lists: as before
        codec.encode_new(TimingRecommendation, {"user_id": ObjectId(), "activity": "x", "risks": [{"level": "q"}],
                                                "windows": [{"start": "2026-01-01", "end": 3, "score": 200}]})
    assert sorted(caught.value.errors) == ["risks.0.description", "risks.0.level", "windows.0.end", "windows.0.score"]


def test_an_updates_scalar_values_are_not_walked_for_keys_and_its_documents_still_are(db, monkeypatch):
    from types import MappingProxyType

    from astro_db.query import pipeline

    walked = []
    real = pipeline.check_document_keys
    monkeypatch.setattr(pipeline, "check_document_keys", lambda value, path="": walked.append(path) or real(value, path))
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    db.update(User, {"id": user.id}, {"name": "Bo", "status": "suspended"})
    assert walked == []
    chart = db.create("BirthChart", samples.chart_input(user_id=str(user.id)))
    place = {"name": "Lyon", "coordinates": {"type": "Point", "coordinates": [4.8, 45.7]}}
    db.update("BirthChart", {"id": chart.id}, MappingProxyType({"birth_data.location": place}))  # any Mapping
    assert walked == ["birthData.location"]
    with pytest.raises(ValidationError):
        db.update("BirthChart", {"id": chart.id}, {"birth_data.location": {**place, "$where": "1"}})


def test_an_updates_duplicate_key_named_only_by_its_index_is_given_the_index_fields(db):
    from pymongo import errors as pm

    from astro_db.errors import DuplicateKeyError

    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    rt = db.executor.runtime
    real = rt.coll

    class Refusing:  # a server that names only the index of a refused update (as some emulators do)
        def __init__(self, coll):
            self.coll = coll

        def find_one_and_update(self, *args, **kwargs):
            message = "E11000 duplicate key error collection: users index: login_unique dup key"
            raise pm.DuplicateKeyError(message, 11000, {"errmsg": message, "code": 11000})

        def list_indexes(self, *args, **kwargs):  # an index whose name does not spell its fields
            return [{"name": "_id_", "key": {"_id": 1}}, {"name": "login_unique", "key": {"email": 1}}]

        def __getattr__(self, name):
            return getattr(self.coll, name)

    rt.coll = lambda info: Refusing(real(info))  # type: ignore[method-assign]
    try:
        with pytest.raises(DuplicateKeyError) as caught:
            db.update(User, {"id": user.id}, {"email": "bo@example.com"})
    finally:
        rt.coll = real  # type: ignore[method-assign]
    assert caught.value.fields == ("email",)


def test_a_default_whose_to_python_is_the_identity_is_stored_without_to_mongo(monkeypatch):
    from astro_db.models import codec

    version = doc_plan(User).by_key["__v"]
    assert version.python_is_identity and version.mongo_is_python and version.default == 0
    called = []
    monkeypatch.setattr(version, "to_mongo", lambda value: called.append(value) or value)
    son = codec.encode_new(User, {"email": "ann@example.com", "name": "Ann"})
    assert son["__v"] == 0 and type(son["__v"]) is int and called == []


def test_an_update_of_a_field_that_is_no_personal_path_is_passed_by_the_sealing_and_one_that_is_still_checked(monkeypatch):
    from astro_db.security import crypto as crypto_module

    db = new_db(allow_plaintext_sensitive=True)
    try:
        user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
        insight = db.create("PlanetaryInsight", samples.insight_input(user_id=user.id))
        normed = []
        real = crypto_module.norm_path
        monkeypatch.setattr(crypto_module, "norm_path", lambda path: normed.append(path) or real(path))
        assert db.update("PlanetaryInsight", {"id": insight.id}, {"energy_level": 5}).energy_level == 5
        assert normed == []
        with pytest.raises(EncryptionError, match="would read back as an envelope"):
            db.update("PlanetaryInsight", {"id": insight.id}, {"summary": "enc:v2:x"})
        with pytest.raises(EncryptionError, match="would read back as an envelope"):
            db.update("PlanetaryInsight", {"id": insight.id}, {"$push": {"recommendations": "enc:v2:x"}})
        assert normed == ["summary", "recommendations"]
        assert db.update("PlanetaryInsight", {"id": insight.id}, {"summary": "Calm."}).summary == "Calm."
    finally:
        db.disconnect()


def test_the_trusted_walkers_are_keyed_by_identity_and_another_crypto_gets_its_own(db, monkeypatch):
    from astro_db.ops.steps import compile as compile_step
    from astro_db.registry import ModelRegistry
    from astro_db.security.access import Guard, authorize
    from astro_db.security.crypto import FieldCrypto

    for cls in (FieldCrypto, ModelRegistry, Guard):  # the cache's key relies on identity
        assert cls.__eq__ is object.__eq__ and cls.__hash__ is object.__hash__, cls
    rt = db.executor.runtime
    trusted = authorize(None, rt.registry.resolve("User"), "read")
    monkeypatch.setattr(compile_step, "id", lambda obj: pytest.fail("no id() per call"), raising=False)
    first = compile_step.walker(rt, trusted)
    assert compile_step.walker(rt, trusted) is first
    other = FieldCrypto(None, rt.registry, allow_plaintext=True)
    monkeypatch.setattr(rt, "crypto", other)  # a plain attribute (set through Runtime.__setattr__)
    again = compile_step.walker(rt, trusted)
    assert again is not first and again.rules[1].crypto is other


# --- the update path: one walk looked up per call, models resolved once per rule, $set advanced directly


def test_an_updates_filter_and_update_share_one_walk_and_strict_still_binds_the_filter_only(db, monkeypatch):
    from astro_db.errors import QueryError
    from astro_db.ops.steps import compile as compile_step

    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    looked = []
    real = compile_step.walker
    monkeypatch.setattr(compile_step, "walker", lambda rt, guard, *, strict=False: looked.append(strict) or real(
        rt, guard, strict=strict))
    assert db.update(User, {"id": user.id}, {"name": "Bo"}).name == "Bo"
    assert looked == [False]
    looked.clear()
    assert db.update(User, {"email": "ann@example.com"}, {"name": "Cy"}, strict=True).name == "Cy"
    assert looked == [True, False]  # the strict walk for the filter, the plain one for the update
    looked.clear()
    assert db.update(User, {"email": "ann@example.com"}, {"name": "Cy"}).name == "Cy"
    assert looked == [False]  # one walk for both
    looked.clear()
    # a by-id filter takes its compiled form (a literal id, which strict admits): the update's walk only
    assert db.update(User, {"id": user.id}, {"name": "Cy"}, strict=True).name == "Cy"
    assert looked == [False]
    with pytest.raises(QueryError, match="strict"):
        db.update(User, {"name": {"$ne": None}}, {"name": "Di"}, strict=True)
    with pytest.raises(ValidationError):  # the update's refusal, masked as before
        db.update(User, {"id": user.id}, {"name": ""})
    assert db.find_one(User, {"id": user.id}).name == "Cy"


def test_the_seal_rule_resolves_each_model_once_and_seals_as_before(monkeypatch):
    from astro_db.security.filters import SealRule

    db = new_db()
    try:
        rt = db.executor.runtime
        resolved = []
        real = type(rt.registry).resolve
        monkeypatch.setattr(type(rt.registry), "resolve", lambda self, model: resolved.append(model) or real(self, model))
        rule = SealRule(rt.crypto, rt.registry)
        walker = Walker((rule,))
        for _ in range(3):
            assert walker.filter(User, {"name": "Ann"}) == rt.crypto.seal_filter(real(rt.registry, User), {"name": "Ann"})
        assert resolved == [User] and rule.infos == {User: real(rt.registry, User)}
    finally:
        db.disconnect()


@pytest.mark.parametrize("update", [
    {"$set": {"name": "Bo"}},
    {"$set": {"name": "Bo", "updatedAt": _dt.datetime(2020, 1, 1)}},
    {"$set": {"name": "Bo"}, "$inc": {"n": 1}},
    {"$unset": {"name": ""}},
    {"$set": {"updatedAt": 1}},
])
def test_a_set_alone_is_advanced_to_exactly_what_the_general_path_makes(update):
    from astro_db.changes import revision

    op = ObjectId()
    general = {opname: dict(spec) for opname, spec in update.items()}  # the general path, as it was
    setter = general.setdefault("$set", {})
    setter.pop("updatedAt", None)
    setter["_op"] = op
    general.setdefault("$inc", {})["_rev"] = 1
    general.setdefault("$currentDate", {})["updatedAt"] = True
    before = copy.deepcopy(update)
    out = revision.advance(update, op)
    assert out == general and list(out) == list(general) and [list(v) for v in out.values()] == [list(v) for v in general.values()]
    assert update == before  # the caller's update is not changed


# --- create_many: a batch sealed with one look-up, its changes built without a call per document


def test_a_batch_is_sealed_as_each_document_would_be_with_one_look_at_the_fields(monkeypatch):
    db = new_db(allow_plaintext_sensitive=True)
    try:
        rt = db.executor.runtime
        info = rt.registry.resolve("PlanetaryInsight")
        sons = [writes.new_document(info, samples.insight_input()) for _ in range(3)]
        kept = copy.deepcopy(sons)
        sealed_one = []
        monkeypatch.setattr(type(rt.crypto), "seal_document", lambda self, i, son: sealed_one.append(son))
        out = seal_step.documents(rt, info, sons)
        assert sealed_one == [] and all(a is b for a, b in zip(out, sons)) and sons == kept  # checked in place
        sons[2]["recommendations"] = ["fine", "enc:v2:x"]
        with pytest.raises(EncryptionError, match="recommendations"):
            seal_step.documents(rt, info, sons)
    finally:
        db.disconnect()
        monkeypatch.undo()
    keyed = new_db(encryption_key=base64.b64encode(bytes(range(32))).decode())
    try:
        rt = keyed.executor.runtime
        info = rt.registry.resolve("PlanetaryInsight")
        sons = [writes.new_document(info, samples.insight_input()) for _ in range(2)]
        out = seal_step.documents(rt, info, sons)
        assert [d["_id"] for d in out] == [d["_id"] for d in sons] and all(a is not b for a, b in zip(out, sons))
        assert all(d["summary"] != s["summary"] == "A bright day." for d, s in zip(out, sons))  # sealed copies
    finally:
        keyed.disconnect()


def test_the_changes_of_many_documents_are_what_each_documents_own_would_be():
    docs = [{"_id": ObjectId(), "_rev": 3, "updatedAt": _dt.datetime(2024, 1, 1)}, {"_id": ObjectId(), "a": 1},
            {"_id": ObjectId(), "_rev": None, "updatedAt": None}]
    written = writes._written("create", docs, ("a",), "op")
    assert written.changes == tuple(writes._created(d) for d in docs)
    assert all(type(c) is type(writes._created(docs[0])) for c in written.changes)
    assert written.ids == tuple(d["_id"] for d in docs) and written.documents == tuple(docs)


def test_an_update_touching_no_sensitive_path_is_left_as_it_is_by_the_seal_rule():
    keyed = new_db(encryption_key=base64.b64encode(bytes(range(32))).decode())
    try:
        rt = keyed.executor.runtime
        info = rt.registry.resolve("PlanetaryInsight")
        plain = {"$set": {"energyLevel": 5}, "$inc": {"__v": 1}}
        assert rt.crypto.seal_update(info, plain) is plain and plain == {"$set": {"energyLevel": 5}, "$inc": {"__v": 1}}
        sensitive = {"$set": {"energyLevel": 5, "summary": "A bright day."}}
        sealed = rt.crypto.seal_update(info, sensitive)
        assert sealed is not sensitive and sealed["$set"]["energyLevel"] == 5
        assert sealed["$set"]["summary"] != "A bright day." and sensitive["$set"]["summary"] == "A bright day."
        with pytest.raises(Exception, match="encrypted field"):  # a refusal is still made for a dotted or sensitive key
            rt.crypto.seal_update(info, {"$pull": {"recommendations": "x"}})
    finally:
        keyed.disconnect()


def test_the_runtimes_crypto_is_a_plain_attribute_and_setting_one_with_a_vault_attaches_it(db):
    from astro_db.ops.runtime import Runtime
    from astro_db.security.crypto import FieldCrypto

    rt = db.executor.runtime
    assert "crypto" in vars(rt) and not isinstance(getattr(Runtime, "crypto", None), property)  # read with no call
    attached = []

    class Vault:
        namespace = "keys.vault"

        def attach(self, collection, run):
            attached.append((collection, run))

    other = FieldCrypto(None, rt.registry, allow_plaintext=True)
    other.vault = Vault()
    rt.crypto = other
    assert rt.crypto is other and len(attached) == 1
    assert attached[0][1]("key vault read", lambda: "answered") == "answered"  # the run step, as a function
    plain = FieldCrypto(None, rt.registry, allow_plaintext=True)
    rt.crypto = plain  # no vault: nothing to attach
    assert rt.crypto is plain and len(attached) == 1
