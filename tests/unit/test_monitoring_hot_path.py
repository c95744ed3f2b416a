"""The monitor's per-call work: read shapes masked once per shape, lock-free pool check-outs."""

from __future__ import annotations

import datetime as _dt
import re
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from bson import ObjectId
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_db import DatabaseConfig
from astro_db.monitoring import Monitor
from astro_db.monitoring import monitor as monitor_module
from astro_db.monitoring.listeners import PoolEvents
from astro_db.monitoring.monitor import MAX_SHAPES, POOL_FOLD_AT
from astro_db.monitoring.shapes import mask, shape_key
from astro_db.registry import default_registry

SECRET = "secret.person@example.com"


def monitor() -> Monitor:
    return Monitor(DatabaseConfig(url="mongomock://localhost/m").health, default_registry(), max_pool_size=4)


# --- shape_key: a hashable stand-in for mask ------------------------------------------------

leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                   st.sampled_from(["<str>", "<ObjectId>", "[", "$in"]),  # user data shaped like our markers
                   st.builds(ObjectId), st.just(_dt.datetime(2020, 1, 1)), st.just(re.compile("a")))
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.sampled_from(["a", "b", "$in", "$gt", "[", "<str>"]), inner, max_size=3)), max_leaves=8)


@settings(max_examples=examples(500), deadline=None)
@given(values, values)
def test_shape_key_is_equal_exactly_when_the_masked_shapes_are(a: Any, b: Any) -> None:
    assert (shape_key(a) == shape_key(b)) == (mask(a) == mask(b))
    hash(shape_key(a))


@pytest.mark.parametrize("a, b", [
    ({"a": 1}, {"a": "1"}),
    ({"a": [1]}, {"a": 1}),
    ({}, []),
    ({"a": {"$in": [1]}}, {"a": {"$in": [1, "x"]}}),
    ({"a": "<ObjectId>"}, {"a": ObjectId()}),  # a string that looks like a placeholder is a string
    ({"[": 1}, [1]),
])
def test_different_shapes_have_different_keys(a: Any, b: Any) -> None:
    assert mask(a) != mask(b) and shape_key(a) != shape_key(b)


def test_key_order_does_not_make_another_shape() -> None:
    a, b = {"a": 1, "b": {"$gt": 2, "$lt": 3}}, {"b": {"$lt": 1, "$gt": 0}, "a": 7}
    assert mask(a) == mask(b) and shape_key(a) == shape_key(b)
    assert shape_key([a, b]) == shape_key([a]) and mask([a, b]) == mask([a])


# --- note_query: masked once per shape, never served another shape's entry --------------------

def test_a_read_shape_is_masked_once_and_counted_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    masked: list[Any] = []

    def counting_mask(value: Any) -> Any:
        masked.append(value)
        return mask(value)

    monkeypatch.setattr(monitor_module, "mask", counting_mask)
    mon = monitor()
    for _ in range(100):
        mon.note_query("User", "find", {"_id": ObjectId(), "email": SECRET})
    assert len(masked) == 1
    (entry,) = mon.query_shapes()
    assert entry["count"] == 100 and entry["filter"] == {"_id": "<ObjectId>", "email": "<str>"}
    assert SECRET not in repr(mon.query_shapes()) and SECRET not in repr(mon.snapshot())


def test_a_different_shape_gets_its_own_entry_not_a_cached_one() -> None:
    mon = monitor()
    mon.note_query("User", "find", {"age": 30})
    mon.note_query("User", "find", {"age": "30"})
    mon.note_query("User", "find", {"age": {"$gt": 30}})
    mon.note_query("User", "find", {"age": 30}, [("age", 1)])
    mon.note_query("User", "count", {"age": 30})
    mon.note_query("BirthChart", "find", {"age": 30})
    shapes = mon.query_shapes()
    assert len(shapes) == 6 and all(entry["count"] == 1 for entry in shapes)
    filters = [entry["filter"] for entry in shapes if entry["model"] == "User" and entry["operation"] == "find"]
    assert {"age": "<int>"} in filters and {"age": "<str>"} in filters and {"age": {"$gt": "<int>"}} in filters


def test_the_shape_table_stays_bounded_and_known_shapes_still_count() -> None:
    mon = monitor()
    for i in range(MAX_SHAPES + 20):
        mon.note_query("User", "find", {f"f{i}": 1})
    mon.note_query("User", "find", {"f0": 2})
    assert mon.snapshot()["query_shapes"] == MAX_SHAPES
    assert next(e for e in mon.query_shapes() if e["filter"] == {"f0": "<int>"})["count"] == 2


def test_the_slow_log_gets_the_cached_shape_of_the_call(caplog: pytest.LogCaptureFixture) -> None:
    mon = monitor()
    mon.note_query("User", "find", {"email": "first@example.com"})
    with caplog.at_level("WARNING", logger="astro_db.monitoring"):
        mon.record_operation("User", "find", 10.0, query=({"email": SECRET}, None))  # the cached shape, not this value
    assert '{"email":"<str>"}' in caplog.text and SECRET not in caplog.text


# --- the pool: check-outs and check-ins without the lock --------------------------------------

def test_concurrent_check_outs_and_check_ins_are_all_counted() -> None:
    mon = monitor()
    _, pool, _ = mon.listeners(commands=True)  # command_monitoring=True: the pool figures are the pool events'
    per_thread, threads = 3 * POOL_FOLD_AT, 8
    start = threading.Barrier(threads + 1)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            pool.connection_checked_out(SimpleNamespace(duration=0.001))
            pool.connection_checked_in(SimpleNamespace())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    readings = [mon.pool_figures() for _ in range(50)]  # reading folds while the others append
    for worker in workers:
        worker.join()
    figures = mon.pool_figures()
    assert figures["checkouts"] == threads * per_thread and figures["checked_out"] == 0
    assert figures["wait_ms"]["count"] == threads * per_thread
    assert all(0 <= r["checked_out"] <= threads for r in readings)


def test_pending_pool_events_are_folded_before_they_pile_up() -> None:
    mon = monitor()
    _, pool, _ = mon.listeners(commands=True)
    assert isinstance(pool, PoolEvents)
    for _ in range(10 * POOL_FOLD_AT):
        pool.connection_checked_out(SimpleNamespace(duration=None))
    assert len(mon._pool_pending) < POOL_FOLD_AT  # bounded without anyone reading the figures
    figures = mon.snapshot()["pool"]
    assert figures["checkouts"] == 10 * POOL_FOLD_AT and figures["checked_out"] == 10 * POOL_FOLD_AT
    assert figures["wait_ms"]["count"] == 0  # no duration given: no wait recorded


def test_pool_event_still_takes_check_outs_and_check_ins_by_name() -> None:
    mon = monitor()
    mon.listeners(commands=True)
    mon.pool_event("checked_out", 0.004)
    mon.pool_event("checked_out", 0.004)
    mon.pool_event("checked_in")
    raw = mon.raw()
    assert raw["pool"]["checkouts"] == 2 and raw["pool"]["checked_out"] == 1 and raw["pool_wait"].count == 2
    assert mon.pool_figures()["saturation"] == 0.25


def test_concurrent_reads_of_new_shapes_are_each_recorded_once_and_all_counted() -> None:
    mon = monitor()
    threads, calls = 8, 500
    start = threading.Barrier(threads)
    filters = [{"email": SECRET}, {"_id": ObjectId()}, {"age": {"$gt": 3}}]

    def work() -> None:
        start.wait()  # every thread meets the three shapes for the first time together
        for i in range(calls):
            mon.record_operation("User", "find", 0.001, query=(filters[i % 3], None))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    shapes = mon.query_shapes()
    assert len(shapes) == 3 and sum(entry["count"] for entry in shapes) == threads * calls
    assert mon.snapshot()["operations"]["User"]["find"]["count"] == threads * calls


# --- command events: queued lock-free, folded on reading ------------------------------------------

class _CountingLock:
    """The monitor's lock, counting who takes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def __enter__(self) -> None:
        self.taken += 1
        self._lock.acquire()

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()


def test_command_and_pool_events_never_take_the_monitor_lock_and_lose_no_figure():
    from astro_db.monitoring.listeners import CommandEvents

    mon = monitor()
    lock = mon._lock = _CountingLock()  # type: ignore[assignment]
    commands, pool, _ = mon.listeners(commands=True)
    assert isinstance(commands, CommandEvents) and isinstance(pool, PoolEvents)
    for n in range(300):
        pool.connection_checked_out(SimpleNamespace(duration=0.001))
        commands.started(SimpleNamespace(request_id=n, command={"find": "users", "filter": {}}, command_name="find"))
        reply = {"ok": 1, "writeErrors": [{"code": 11000}]} if n % 100 == 0 else {"ok": 1, "cursor": {}}
        commands.succeeded(SimpleNamespace(request_id=n, command_name="find", duration_micros=1000 + n, reply=reply))
        pool.connection_checked_in(SimpleNamespace())
    assert lock.taken == 0  # 1,200 events, not one lock taken on the calling thread
    figures = mon.snapshot()
    find = figures["commands"]["User"]["find"]
    assert find["count"] == 300 and find["errors"] == {"DuplicateKey": 3}
    assert find["latency_ms"]["count"] == 300 and find["latency_ms"]["max"] == 1.299
    assert figures["pool"]["checkouts"] == 300 and figures["pool"]["checked_out"] == 0
    assert figures["pool"]["wait_ms"]["count"] == 300
    assert lock.taken >= 1


def test_queued_command_events_are_folded_at_the_bound():
    from astro_db.monitoring.listeners import CommandEvents
    from astro_db.monitoring.monitor import COMMAND_FOLD_AT

    mon = monitor()
    commands, _, _ = mon.listeners(commands=True)
    assert isinstance(commands, CommandEvents)
    for n in range(COMMAND_FOLD_AT + 5):
        commands.started(SimpleNamespace(request_id=n, command={"insert": "users"}, command_name="insert"))
        commands.succeeded(SimpleNamespace(request_id=n, command_name="insert", duration_micros=10, reply={"ok": 1}))
    assert len(mon._command_pending) < COMMAND_FOLD_AT  # memory stays bounded between readings
    assert mon.snapshot()["commands"]["User"]["insert"]["count"] == COMMAND_FOLD_AT + 5


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.floats(min_value=-1.0, max_value=1e6, allow_nan=False), max_size=40))
def test_record_many_is_record_one_by_one(values):
    from astro_db.monitoring.histogram import LatencyHistogram

    one, many = LatencyHistogram(), LatencyHistogram()
    for value in values:
        one.record(value)
    many.record_many(list(values))
    assert (one.counts, one.count, one.min_ms, one.max_ms) == (many.counts, many.count, many.min_ms, many.max_ms)
    assert one.sum_ms == pytest.approx(many.sum_ms)


# --- the run step's record: queued lock-free, folded on reading ------------------------------------

def test_a_calls_record_takes_no_lock_and_every_reader_sees_it():
    """A write's record and a read of a shape already kept are queued without the lock; each way
    of reading the figures (``snapshot``, ``raw``, ``window``, ``query_shapes``) folds them first."""
    from astro_db.monitoring.monitor import OPERATION_FOLD_AT

    mon = monitor()
    mon.record_operation("User", "find", 0.001, query=({"email": SECRET}, None))  # a new shape: counted on the spot
    lock = mon._lock = _CountingLock()  # type: ignore[assignment]
    for n in range(300):
        mon.record_operation("User", "create", 0.002, "DuplicateKeyError" if n % 100 == 0 else None)
        mon.record_operation("User", "find", 0.001, "DatabaseConnectionError" if n == 7 else None,
                             query=({"email": f"{n}@example.com"}, None))
    assert lock.taken == 0 and 600 < OPERATION_FOLD_AT
    assert mon.window()["operations"] == 601 and mon.window()["errors"] == 1  # the caller's duplicates left out
    assert next(e for e in mon.query_shapes() if e["operation"] == "find")["count"] == 301
    raw = mon.raw()["operations"]
    assert raw[("User", "create")][0] == 300 and raw[("User", "create")][1] == {"DuplicateKeyError": 3}
    figures = mon.snapshot()["operations"]["User"]
    assert figures["create"]["count"] == 300 and figures["find"]["count"] == 301
    assert figures["find"]["errors"] == {"DatabaseConnectionError": 1}
    assert figures["create"]["latency_ms"]["max"] == 2.0
    assert lock.taken >= 4


def test_queued_calls_are_folded_at_the_bound_without_a_reader():
    from astro_db.monitoring.monitor import OPERATION_FOLD_AT

    mon = monitor()
    for _ in range(3 * OPERATION_FOLD_AT + 5):
        mon.record_operation("User", "update", 0.001)
    assert len(mon._operation_pending) < OPERATION_FOLD_AT  # memory stays bounded between readings
    assert mon.snapshot()["operations"]["User"]["update"]["count"] == 3 * OPERATION_FOLD_AT + 5


def test_calls_recorded_while_others_read_are_all_counted_once():
    """Eight threads record writes and reads while another reads the figures (each reading
    folds the queue the writers append to): no call is lost or counted twice."""
    mon = monitor()
    threads, calls = 8, 2_000
    start = threading.Barrier(threads + 1)

    def work() -> None:
        start.wait()
        for i in range(calls):
            if i % 2:
                mon.record_operation("User", "create", 0.001)
            else:
                mon.record_operation("User", "find", 0.001, query=({"email": SECRET}, None))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    seen = [mon.window()["operations"] for _ in range(200)]
    for worker in workers:
        worker.join()
    figures = mon.snapshot()
    assert figures["operations"]["User"]["create"]["count"] == threads * calls // 2
    assert figures["operations"]["User"]["find"]["count"] == threads * calls // 2
    assert figures["window"]["operations"] == threads * calls
    assert sum(e["count"] for e in mon.query_shapes()) == threads * calls // 2
    assert seen == sorted(seen)  # a reading never goes back: nothing folded is undone


def test_a_call_queued_late_does_not_reset_the_window_a_later_second_took_over():
    """A call whose second was read before another thread's call three seconds later (a window of
    three: the same slot), but appended after it, is past the window when folded: it is left
    out, and the later call's count stands (driven by a clock that holds the first thread)."""
    mon = Monitor(DatabaseConfig(url="mongomock://localhost/m", health_window_s=3).health, default_registry(),
                  max_pool_size=4)
    now, held, release = [100.0], threading.Event(), threading.Event()

    def clock() -> float:
        if threading.current_thread().name == "late":
            second = now[0]
            held.set()
            release.wait(5)  # read at 100, appended after the main thread's call at 103
            return second
        return now[0]

    mon._window.clock = clock  # type: ignore[method-assign]
    late = threading.Thread(target=mon.record_operation, args=("User", "find", 0.001), name="late")
    late.start()
    assert held.wait(5)
    now[0] = 103.0
    mon.record_operation("User", "find", 0.001)
    release.set()
    late.join(5)
    assert [item[4] for item in mon._operation_pending] == [103, 100]
    assert mon.window()["operations"] == 1  # the call at 103; the one at 100 has left the window
    assert mon.snapshot()["operations"]["User"]["find"]["count"] == 2  # both counted in the totals
