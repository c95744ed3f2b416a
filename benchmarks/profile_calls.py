"""Where astro_db's own client CPU goes, per call: ``python benchmarks/profile_calls.py``.

Runs hooks-off calls (``audit=False, journal=False``) of create, update (a one-field ``$set`` by
id; ``update_nr`` is the same with ``returning=False``, against raw ``update_one``), find_one by
id (hydrated, as the benchmark calls it), find lean and hydrated (``find``, 20 insights each)
find_one of a User by id (hydrated: ``find_one_user``), and the ODM benchmark's large nested model
(``benchmarks/odm``: LARGE_DOC_NESTED, five embedded documents of text, a list of two, seven of
integers): ``nested_create``, ``nested_update`` (a ``$set`` of ``embedded_str_doc_1.field1`` by
id, the nested document returned and hydrated; ``nested_update_nr`` with ``returning=False``,
against raw ``update_one``) and ``nested_find`` (``find_one`` by ``embedded_str_doc_1.unique_id``,
hydrated), on the spec's data file with ``--data DIR`` (as ``odm_bench.py``) or generated
documents of its shape, against an nx-27017 server
started the way ``benchmarks/run.py`` starts it (the patched launcher), and the same calls in raw
PyMongo on a plain client of its own (``tz_aware=True``, no listeners). The two sides run in
small interleaved batches (``--rounds`` batches of ``--batch`` calls each, inputs rebuilt outside
the timing), so a noisy shared machine slows both alike. Prints, per call kind, the median client
CPU per call (``time.process_time``) of both and astro_db's overhead (astro_db minus raw, in
microseconds), then, with ``--top N``, the Python function calls per call (C functions
included, as cProfile counts them: independent of the machine's load) and the N functions with the most own CPU time in a cProfile
run of ``--calls`` astro_db calls (``--sort cumulative`` for the chain, ``--only astro_db`` to
keep astro_db's own functions).

``--no-budget`` opens astro_db with ``operation_timeout_ms=None`` (no time budget: no
client-side timeout, so what PyMongo itself does per bounded command is left out: the budget's
price inside the driver). ``--no-monitoring`` opens astro_db with ``monitoring=False`` (no listener of the monitor's, not
even the heartbeat one); ``--command-monitoring`` with ``command_monitoring=True`` (the monitor's
per-call command and pool listeners, which the default leaves off), to see what PyMongo's event
publishing costs. ``--records`` opens it as shipped (audit and journal on), so a write
also writes its change records (on the server, with ``--no-driver`` too: only the model's
collections answer at once), to see what they cost the client. ``--no-driver`` replaces astro_db's collections by ones that answer at
once with a copy of a stored document (no driver, no I/O, no listeners): what is left is
astro_db's own CPU per call, the steadiest figure on a noisy machine (the raw column is then 0).
``--tracing off|on|sdk`` sets OpenTelemetry tracing (docs/monitoring.md, "Tracing"): ``off`` is
``tracing=False``; ``on`` (the default) is the config's default, which with ``opentelemetry-api``
installed and no SDK makes non-recording spans; ``sdk`` installs an SDK ``TracerProvider`` whose
processor hands every finished span to an exporter that drops it (the cost of recording a span,
not of shipping it). ``--tracing-cost`` puts the same astro_db calls with ``tracing=False`` on the
raw side (a second Database on the same server), so the overhead column is what tracing costs
per call, measured interleaved in one process.

``--cold`` measures astro_db's own CPU the way it runs under a real driver: each astro_db call
answered at once (as ``--no-driver``) and timed alone (``time.thread_time`` around it), once
back to back (``hot``: the caches hold its code and data from the call before) and once right
after an untimed raw PyMongo call of the same kind to the server (``cold``: a socket round trip,
a wait and the driver's own code between two of astro_db's calls, as in any application). On the
benchmark machine the same code costs about three times as much cold as hot, which is why
astro_db's overhead beside the driver is several times its ``--no-driver`` figure. Also printed:
the raw call's own CPU timed the same way, and ``1 + cold / raw``, the ratio the overhead alone
would give. ``--cold --sections`` says where that cost goes: for each kind with sections declared
(``SECTIONS``: create, update_nr, find_one), the functions of its path named there are wrapped
(where defined and wherever imported by name) to time themselves inside the call
(``time.perf_counter_ns``: no system call between two sections; a section includes the ones
nested under it), and the call is run hot and cold as above; printed, per section, the median hot
and cold microseconds and their difference, and over the table how much code one call touches
(Python calls and distinct code objects, C function calls and distinct C functions, counted once
with ``sys.setprofile``, independent of the machine's load). The wrappers add a frame and two
clock reads per section, so the sections' sum is a little above the plain ``--cold`` figure.
``--cold --primitives`` times alone, hot and cold (after a raw ``find_one``), the building blocks
the paths are made of that raw PyMongo's own call does not run (``primitives()``: a fresh
ObjectId, ``utcnow``, the email rule, a context variable, ``pymongo.timeout`` and the run step's
whole bound, what ``pymongo.timeout`` sets done in place (PyMongo's private ``_csot`` context
variables: a figure for comparison, not something astro_db does), a lock, ``bisect``, a
thread-local read, and for scale a bare Python call and a chain of 20 distinct small functions).
``--cold --against TREE`` is the A/B of a change: two worker processes (``--worker``), one
importing this tree's ``astro_db`` and one TREE's (a checkout, e.g. a throwaway worktree of
``main``), each with its own server, asked in turn for one batch of each kind hot and cold, the
side that goes first alternating every batch, so both see the same load; printed, per kind, the
median hot and cold of each, new/old of cold and each side's Python calls per call
(``sys.setprofile``). An A/A run (TREE = this tree) shows the noise: within about 2.5% on a
quiet machine at ``--rounds 100``.
``--decompose`` splits the interleaved ratio in two: per kind, four sides in one run (the side
that goes first rotating every batch): raw PyMongo, the same raw call under
``pymongo.timeout(30)`` (astro_db's default budget, PyMongo's client-side operation timeout),
astro_db with ``operation_timeout_ms=None`` and astro_db as configured. Printed: each side's
median client CPU per call, the budget's price inside PyMongo (raw under the budget minus raw:
the remaining time computed, ``maxTimeMS`` and the socket's timeout set per command), astro_db's
own cost beside a bounded call (astro_db minus raw under the budget), both ratios, and what a
1.3x bound leaves astro_db's own code once the budget is paid (``0.3 x raw - budget``).
Figures, never assertions; the server's CPU is not in them.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher

import datetime as _dt  # noqa: E402

import pymongo  # noqa: E402
from bson import ObjectId  # noqa: E402
from odm.data import load as load_odm_data  # noqa: E402
from odm.models import COLLECTIONS as ODM_COLLECTIONS  # noqa: E402
from odm.models import LargeNested  # noqa: E402
from odm.tasks import stored as odm_stored  # noqa: E402
from odm.tasks import with_unique_ids  # noqa: E402
from pymongo import ReturnDocument  # noqa: E402
from workloads import stored_insight, stored_user, user_input  # noqa: E402

from astro_db import Database  # noqa: E402
from astro_db.models import PlanetaryInsight, User  # noqa: E402

KINDS = ("create", "update", "update_nr", "find_one", "find_lean", "find", "find_one_user",
         "nested_create", "nested_update", "nested_update_nr", "nested_find")
NESTED = ODM_COLLECTIONS["nested"]
Call = Callable[[int], Any]


def cpu_per_call(fn: Call, calls: int) -> float:
    """Client CPU per call of ``fn(0..calls-1)``, in microseconds."""
    started = time.process_time()
    for i in range(calls):
        fn(i)
    return (time.process_time() - started) / calls * 1e6


Kind = tuple[Call, Call, Callable[[], None]]


def each_call(fn: Call, calls: int, between: Call | None = None) -> float:
    """Median thread CPU of one ``fn(i)`` over ``i`` in ``0..calls-1``, in microseconds; with
    ``between``, ``between(i)`` runs untimed after each call (``--cold``)."""
    clock = time.thread_time
    spent = []
    for i in range(calls):
        started = clock()
        fn(i)
        spent.append(clock() - started)
        if between is not None:
            between(i)
    return statistics.median(spent) * 1e6


def cold_table(table: dict[str, Kind], instant: dict[str, Kind], kinds: list[str], rounds: int, batch: int) -> None:
    """``--cold``: astro_db's own CPU per call (``instant``: answered at once) hot and cold, and
    the raw call's (``table``), medians of ``rounds`` rounds of ``batch`` calls in rotated order."""
    print(f"# astro_db's own CPU per call (answered at once), timed alone: hot (back to back) and cold (after an "
          f"untimed raw PyMongo call of the same kind); {rounds} rounds of {batch} calls, medians, microseconds")
    print(f"{'call':<16} {'hot':>7} {'cold':>7} {'cold/hot':>8} {'raw':>8} {'1+cold/raw':>10}")
    for kind in kinds:
        hot, cold, raw = _cold_row(table[kind], instant[kind], rounds, batch)
        print(f"{kind:<16} {hot:>7.1f} {cold:>7.1f} {cold / hot:>7.2f}x {raw:>8.1f} {1 + cold / raw:>9.2f}x", flush=True)


def _cold_row(raw_kind: Kind, own_kind: Kind, rounds: int, batch: int) -> tuple[float, float, float]:
    raw_call, own = raw_kind[0], own_kind[1]

    def prepare() -> None:  # untimed: fresh inputs (create inserts new documents every batch)
        raw_kind[2]()
        own_kind[2]()

    sides: dict[str, Callable[[], float]] = {
        "hot": lambda: each_call(own, batch),
        "cold": lambda: each_call(own, batch, raw_call),
        "raw": lambda: each_call(raw_call, batch),
    }
    for measure in sides.values():  # warm-up
        prepare()
        measure()
    figures: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names[r % 3:] + names[:r % 3]:
            prepare()
            figures[name].append(sides[name]())
    hot, cold, raw = (statistics.median(figures[name]) for name in names)
    return hot, cold, raw


# ``--sections``: the parts of each kind's path timed inside one call, as "label=module:Qual.name"
# with two spaces of indent per level of nesting (a section's time includes the ones under it).
SECTIONS: dict[str, tuple[str, ...]] = {
    "create": (
        "Database.create=astro_db.database:Database.create",
        "  Operation=astro_db.ops.operation:Operation.__init__",
        "  executor=astro_db.ops.executor:Executor.create",
        "    resolve=astro_db.ops.steps.resolve:call",
        "    authorize=astro_db.ops.steps.authorize:check",
        "    compile=astro_db.ops.steps.compile:document",
        "      codec=astro_db.models.codec:encode_new",
        "    new_id=astro_db.ids:new_id",  # both ObjectIds: the _id (in compile), the op id (in insert_one)
        "    WriteRunner=astro_db.ops.writes:WriteRunner.__init__",
        "    seal=astro_db.ops.steps.seal:document",
        "    insert_one=astro_db.ops.writes:WriteRunner.insert_one",
        "      run=astro_db.ops.steps.run:call",
        "        record=astro_db.monitoring.monitor:Monitor.record_operation",
        "      hooks=astro_db.ops.steps.hooks:after_write",
        "    hydrate=astro_db.ops.steps.hydrate:created",
    ),
    "update_nr": (
        "Database.update=astro_db.database:Database.update",
        "  Operation=astro_db.database:Database._op",
        "  executor=astro_db.ops.executor:Executor.update",
        "    resolve=astro_db.ops.steps.resolve:call",
        "    authorize=astro_db.ops.steps.authorize:check",
        "    compile=astro_db.ops.steps.compile:filter_and_update",
        "      filter=astro_db.ops.steps.compile:filter",
        "      update=astro_db.query.walker:Walker.update",
        "    WriteRunner=astro_db.ops.writes:WriteRunner.__init__",
        "    update_one=astro_db.ops.writes:WriteRunner.update_one",
        "      run=astro_db.ops.steps.run:call",
        "        record=astro_db.monitoring.monitor:Monitor.record_operation",
        "      Written=astro_db.events:Written.__init__",
        "      hooks=astro_db.ops.steps.hooks:after_write",
    ),
    "find_one": (
        "Database.find_one=astro_db.database:Database.find_one",
        "  Operation=astro_db.ops.operation:Operation.__init__",
        "  executor=astro_db.ops.executor:Executor.find_one",
        "    resolve=astro_db.ops.steps.resolve:call",
        "    authorize=astro_db.ops.steps.authorize:check",
        "    compile=astro_db.ops.steps.compile:read",
        "    route=astro_db.ops.steps.route:read",
        "    cache+run=astro_db.ops.steps.cache:read_through",
        "      run=astro_db.ops.steps.run:call",
        "        record=astro_db.monitoring.monitor:Monitor.record_operation",
        "    open=astro_db.ops.steps.open:document",
        "    hydrate=astro_db.ops.steps.hydrate:one",
    ),
}


class Sections:
    """``--sections``: every function named in ``specs`` wrapped, where it is defined and in every
    module holding it (under any name), to add the ``time.perf_counter_ns`` it took (its nested
    sections included) to ``spent``; ``unwrap`` puts the originals back."""

    def __init__(self, specs: tuple[str, ...]) -> None:
        import importlib

        self.labels: list[str] = []
        self.depths: list[int] = []
        self.spent: list[int] = [0] * len(specs)
        self.undo: list[tuple[Any, str, Any]] = []
        for slot, spec in enumerate(specs):
            label, _, target = spec.strip().partition("=")
            module_name, _, qualname = target.partition(":")
            if not qualname:
                raise SystemExit(f"--sections: {spec.strip()!r} is not label=module:Qual.name")
            owner: Any = importlib.import_module(module_name)
            *path, attr = qualname.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = owner.__dict__[attr]
            if not callable(original):
                raise SystemExit(f"--sections: {target} is not a function")
            timed = self._timed(original, slot)
            self._swap(owner, attr, timed)
            if not path:  # a module function: also wherever a module holds it, by any name
                for module in list(sys.modules.values()):  # (``changes.revision.new_op_id = new_id``)
                    names = getattr(module, "__dict__", None)
                    if module is owner or not isinstance(names, dict):
                        continue
                    for name, value in list(names.items()):
                        if value is original:
                            self._swap(module, name, timed)
            self.labels.append(label.strip())
            self.depths.append((len(spec) - len(spec.lstrip(" "))) // 2)

    def _timed(self, fn: Callable[..., Any], slot: int) -> Callable[..., Any]:
        spent, clock = self.spent, time.perf_counter_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[slot] += clock() - started

        return timed

    def _swap(self, owner: Any, attr: str, value: Any) -> None:
        self.undo.append((owner, attr, owner.__dict__[attr]))
        setattr(owner, attr, value)

    def unwrap(self) -> None:
        for owner, attr, original in reversed(self.undo):
            setattr(owner, attr, original)
        self.undo.clear()

    def each_call(self, fn: Call, calls: int, between: Call | None = None) -> list[list[float]]:
        """Per section, its time in each of ``calls`` calls of ``fn`` (µs); as ``each_call``."""
        spent = self.spent
        rows: list[list[float]] = [[] for _ in self.labels]
        for i in range(calls):
            for slot in range(len(spent)):
                spent[slot] = 0
            fn(i)
            for slot, took in enumerate(spent):
                rows[slot].append(took / 1e3)
            if between is not None:
                between(i)
        return rows


def path_counts(fn: Callable[[], Any]) -> tuple[int, int, int, int]:
    """One call of ``fn`` under ``sys.setprofile``: Python calls, distinct code objects, calls of
    C functions, distinct C functions (``--sections``: how much code a call touches)."""
    py: list[Any] = []
    c: list[Any] = []

    def watch(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            py.append(frame.f_code)
        elif event == "c_call":
            c.append(arg)

    sys.setprofile(watch)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return len(py) - 1, len(set(py)) - 1, len(c) - 1, len({id(f) for f in c}) - 1  # setprofile(None) itself


def sections_table(table: dict[str, Kind], instant: dict[str, Kind], kinds: list[str], rounds: int, batch: int) -> None:
    """``--cold --sections``: per kind of ``SECTIONS``, each section's time inside one call (its
    nested sections included), hot and cold, medians of ``rounds`` rounds of ``batch`` calls."""
    print(f"# astro_db's own time per section of a call (answered at once; perf_counter_ns inside the call, "
          f"nested sections included), hot and cold; {rounds} rounds of {batch} calls, medians, microseconds")
    for kind in kinds:
        specs = SECTIONS.get(kind)
        if specs is None:
            print(f"\n## {kind}: no sections declared (profile_calls.SECTIONS)")
            continue
        raw_call, own, setup = table[kind][0], instant[kind][1], instant[kind][2]
        setup()
        own(0)
        counts = path_counts(partial(own, 1))
        sections = Sections(specs)
        try:
            figures: dict[str, list[list[float]]] = {"hot": [[] for _ in specs], "cold": [[] for _ in specs]}
            for r in range(rounds + 1):  # the first round warms up
                for name in ("hot", "cold") if r % 2 == 0 else ("cold", "hot"):
                    table[kind][2]()
                    setup()
                    rows = sections.each_call(own, batch, raw_call if name == "cold" else None)
                    if r:
                        for slot, row in enumerate(rows):
                            figures[name][slot].append(statistics.median(row))
        finally:
            sections.unwrap()
        print(f"\n## {kind}: {counts[0]} Python calls ({counts[1]} distinct code objects), {counts[2]} calls of "
              f"{counts[3]} distinct C functions per call")
        print(f"{'section':<34} {'hot':>7} {'cold':>7} {'cold-hot':>8}")
        for slot, label in enumerate(sections.labels):
            hot, cold = statistics.median(figures["hot"][slot]), statistics.median(figures["cold"][slot])
            print(f"{'  ' * sections.depths[slot] + label:<34} {hot:>7.1f} {cold:>7.1f} {cold - hot:>8.1f}", flush=True)


def primitives() -> dict[str, Callable[[], Any]]:
    """``--primitives``: the building blocks astro_db's calls are made of that raw PyMongo's own
    ``find_one`` does not run, each alone (as the paths run them: ``ids.new_id``,
    ``ops.runtime.utcnow``, the User codec's email rule, the run step's bound and
    ``pymongo.timeout``, the monitor's lock, ``bisect`` and thread-local, a Python call)."""
    import bisect
    import contextvars
    import threading

    from astro_db.driver import timeouts
    from astro_db.ids import new_id
    from astro_db.models.fields import _EMAIL as EMAIL  # the email rule the User's compiled codec runs
    from astro_db.monitoring.histogram import BUCKET_BOUNDS_MS
    from astro_db.ops.runtime import utcnow

    var: contextvars.ContextVar[Any] = contextvars.ContextVar("profile_calls", default=None)
    lock, local = threading.Lock(), threading.local()
    local.shape = None

    def python_call() -> None:
        return None

    def context_variable() -> None:
        var.reset(var.set(1))

    def locked() -> None:
        with lock:
            pass

    from pymongo import _csot

    def csot_in_place() -> None:  # what pymongo.timeout's context sets, set in place (a private module: a figure only)
        deadline = _csot.DEADLINE.get()
        tokens = (_csot.TIMEOUT.set(30.0), _csot.DEADLINE.set(min(deadline, time.monotonic() + 30.0)),
                  _csot.RTT.set(0.0))
        _csot.TIMEOUT.reset(tokens[0])
        _csot.DEADLINE.reset(tokens[1])
        _csot.RTT.reset(tokens[2])

    def bounded() -> None:  # the run step's: timeouts.enter, pymongo.timeout, the bound reset
        _, remaining, token = timeouts.enter(30000.0, "find_one", "User", time.monotonic())
        with pymongo.timeout(remaining):
            pass
        timeouts.CALL_BOUND.reset(token)  # type: ignore[arg-type]

    chain: dict[str, Any] = {}  # 20 distinct small functions, each calling the next (as a call path's frames)
    exec("\n".join(f"def f{n}(a):\n    return f{n + 1}(a + 1)" for n in range(20)) + "\ndef f20(a):\n    return a",
         chain)  # noqa: S102 - fixed source

    return {
        "a Python call": python_call,
        "20 distinct Python calls": partial(chain["f0"], 0),
        "ids.new_id()": new_id,
        "ObjectId()": ObjectId,
        "utcnow()": utcnow,
        "email rule (re)": partial(EMAIL.match, "someone@example.com"),
        "ContextVar set+reset": context_variable,
        "pymongo.timeout(30)": partial(_timeout_block, 30.0),
        "pymongo._csot set in place": csot_in_place,
        "run step's bound": bounded,
        "Lock acquire+release": locked,
        "bisect (latency bucket)": partial(bisect.bisect_left, BUCKET_BOUNDS_MS, 3.7),
        "threading.local read": partial(getattr, local, "shape"),
    }


def _timeout_block(seconds: float) -> None:
    with pymongo.timeout(seconds):
        pass


def primitives_table(raw_call: Call, rounds: int, batch: int) -> None:
    """``--cold --primitives``: each of ``primitives()`` timed alone (``time.perf_counter_ns``),
    hot and cold (after an untimed raw ``find_one``), medians of ``rounds`` rounds of ``batch``."""
    clock = time.perf_counter_ns

    def each(fn: Callable[[], Any], between: Call | None) -> float:
        spent = []
        for i in range(batch):
            started = clock()
            fn()
            spent.append(clock() - started)
            if between is not None:
                between(i)
        return statistics.median(spent) / 1e3

    blocks = primitives()
    figures: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds + 1):  # the first round warms up
        for name, fn in blocks.items():
            for what in ("hot", "cold") if r % 2 == 0 else ("cold", "hot"):
                took = each(fn, raw_call if what == "cold" else None)
                if r:
                    figures.setdefault((name, what), []).append(took)
    print(f"# building blocks alone (perf_counter_ns), hot and cold (after an untimed raw find_one); {rounds} rounds "
          f"of {batch}, medians, microseconds")
    print(f"{'block':<26} {'hot':>6} {'cold':>6} {'cold-hot':>8}")
    for name in blocks:
        hot, cold = statistics.median(figures[name, "hot"]), statistics.median(figures[name, "cold"])
        print(f"{name:<26} {hot:>6.2f} {cold:>6.2f} {cold - hot:>8.2f}", flush=True)


def serve(table: dict[str, Kind], instant: dict[str, Kind], batch: int) -> None:
    """``--worker`` (one side of ``--against``): answers lines on stdin, ``<kind> hot|cold`` with
    one batch's median (as ``--cold``: fresh inputs first, untimed) and ``<kind> calls`` with
    ``path_counts`` of one call (the second); ``ready`` once set up."""
    print("ready", flush=True)
    for line in sys.stdin:
        kind, what = line.split()
        raw_call, own, setup = table[kind][0], instant[kind][1], instant[kind][2]
        table[kind][2]()
        setup()
        if what == "calls":  # after one call: what every call passes, not what the first one sets up
            own(0)
            print(" ".join(map(str, path_counts(partial(own, 1)))), flush=True)
        else:
            print(f"{each_call(own, batch, raw_call if what == 'cold' else None):.3f}", flush=True)


def against(args: argparse.Namespace, argv: list[str]) -> None:
    """``--cold --against TREE``: two workers (``--worker``), one importing this tree's astro_db
    and one TREE's, each with its own server; every round asks each kind's hot and cold batch
    of both, the side that goes first alternating, so both see the same load. Prints the
    medians, new/old, and the Python calls per call of each."""
    import os
    import subprocess

    import astro_db

    trees = {"old": str(Path(args.against).resolve()), "new": str(Path(astro_db.__file__).resolve().parents[1])}
    passed: list[str] = []
    skip = False
    for arg in argv:  # the worker gets every option but --against's
        if skip:
            skip = False
        elif arg == "--against":
            skip = True
        elif not arg.startswith("--against="):
            passed.append(arg)
    workers = {}
    for side, tree in trees.items():
        env = dict(os.environ, PYTHONPATH=tree)
        workers[side] = subprocess.Popen([sys.executable, __file__, *passed, "--worker"], env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        for side, worker in workers.items():
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise SystemExit(f"--against: the {side} worker ({trees[side]}) did not start")

        def ask(side: str, line: str) -> str:
            worker = workers[side]
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(line + "\n")
            worker.stdin.flush()
            return worker.stdout.readline().strip()

        kinds = [k for k in args.kinds.split(",") if k]
        calls = {(kind, side): ask(side, f"{kind} calls").split() for kind in kinds for side in workers}
        figures: dict[tuple[str, str, str], list[float]] = {}
        for r in range(args.rounds + 1):  # the first round warms up
            for kind in kinds:
                for what in ("hot", "cold"):
                    for side in ("old", "new") if (r + (what == "cold")) % 2 == 0 else ("new", "old"):
                        took = float(ask(side, f"{kind} {what}"))
                        if r:
                            figures.setdefault((kind, what, side), []).append(took)
        print(f"# --cold A/B: old = {trees['old']}, new = {trees['new']}; {args.rounds} rounds of {args.batch} calls "
              "per side and kind, sides alternated batch by batch; medians, microseconds; Python calls per call")
        print(f"{'call':<16} {'old hot':>8} {'new hot':>8} {'old cold':>9} {'new cold':>9} {'new/old':>8} "
              f"{'old calls':>9} {'new calls':>9}")
        for kind in kinds:
            med = {(what, side): statistics.median(figures[(kind, what, side)])
                   for what in ("hot", "cold") for side in ("old", "new")}
            print(f"{kind:<16} {med['hot', 'old']:>8.1f} {med['hot', 'new']:>8.1f} {med['cold', 'old']:>9.1f} "
                  f"{med['cold', 'new']:>9.1f} {med['cold', 'new'] / med['cold', 'old']:>7.3f}x "
                  f"{calls[kind, 'old'][0]:>9} {calls[kind, 'new'][0]:>9}", flush=True)
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers.values():
            worker.wait(timeout=60)


def nothing(i: int = 0) -> None:
    """The raw side with ``--no-driver`` and the setup of the kinds that need none."""


def under_budget(fn: Call, seconds: float = 30.0) -> Call:
    """``fn`` under ``pymongo.timeout(seconds)``: a raw call bounded as astro_db's default budget
    bounds each of its driver calls (``--decompose``)."""
    def bounded(i: int) -> Any:
        with pymongo.timeout(seconds):
            return fn(i)
    return bounded


def decompose_table(table: dict[str, Kind], unbounded: dict[str, Kind], kinds: list[str], rounds: int, batch: int,
                    *, records: bool) -> None:
    """``--decompose``: per kind, four sides in one interleaved run (``rounds`` batches of
    ``batch`` calls each, the side that goes first rotating every round, inputs rebuilt outside
    the timing): raw PyMongo; the same raw call under ``pymongo.timeout(30)`` (astro_db's default
    budget); astro_db with ``operation_timeout_ms=None``; astro_db as configured. Medians of
    client CPU per call, then what they say: the budget's price inside PyMongo (raw under the
    budget minus raw), astro_db's own cost beside a bounded driver call (astro_db minus raw under
    the budget), and what a 1.3x bound leaves astro_db's own code once the budget is paid."""
    print(f"# nx-27017, {'records on' if records else 'hooks off'}; four sides interleaved, {rounds} batches of {batch} "
          "calls each (+1 warm-up), the first side rotating: median client CPU per call in microseconds")
    print(f"{'call':<16} {'raw':>7} {'raw+budget':>10} {'astro none':>10} {'astro_db':>9} {'budget':>7} "
          f"{'own':>6} {'ratio':>6} {'vs r+b':>6} {'own@1.3x':>8}")
    for kind in kinds:
        raw_call, astro_call, setup = table[kind]
        other_raw, none_call, setup_none = unbounded[kind]  # inputs of their own: a create's _ids differ
        sides = [raw_call, under_budget(other_raw), none_call, astro_call]
        setups = both(setup, setup_none) if setup_none is not setup else setup
        setups()
        for side in sides:  # warm-up
            cpu_per_call(side, batch)
        taken: list[list[float]] = [[] for _ in sides]
        for r in range(rounds):
            setups()
            for k in range(len(sides)):
                n = (r + k) % len(sides)
                taken[n].append(cpu_per_call(sides[n], batch))
        raw_med, budget_med, none_med, astro_med = (statistics.median(t) for t in taken)
        budget, own = budget_med - raw_med, astro_med - budget_med
        print(f"{kind:<16} {raw_med:>7.1f} {budget_med:>10.1f} {none_med:>10.1f} {astro_med:>9.1f} {budget:>7.1f} "
              f"{own:>6.1f} {astro_med / raw_med:>5.2f}x {astro_med / budget_med:>5.2f}x {0.3 * raw_med - budget:>8.1f}",
              flush=True)
    print("budget: raw under pymongo.timeout(30) minus raw (PyMongo's own work for a bounded call); own: astro_db "
          "minus raw under the budget; vs r+b: astro_db over raw under the budget; own@1.3x: what astro_db's own "
          "code may cost for astro_db to be at 1.3x raw, the budget paid")


def calls_of(raw: Any, db: Database, seed_ids: list[Any], owner: Any, calls: int, find_size: int,
             user_ids: list[Any], nested: list[dict[str, Any]], make_nested: Callable[[], dict[str, Any]]) -> dict[str, Kind]:
    """Per kind: (raw call, astro_db call, setup run before each round, untimed). ``nested``: the
    seeded LARGE_DOC_NESTED documents; ``make_nested`` a fresh input of that shape."""
    users, insights, nested_coll = raw["users"], raw["planetaryInsights"], raw[NESTED]
    state: dict[str, Any] = {"round": 0}
    nested_ids = [d["_id"] for d in nested]
    nested_keys = [d["embedded_str_doc_1"]["unique_id"] for d in nested]

    def fresh_users() -> None:
        state["round"] += 1
        users.delete_many({"status": "suspended"})
        state["raw_users"] = [stored_user(i, f"r{state['round']}_", "suspended") for i in range(calls)]
        state["astro_users"] = [user_input(i, f"a{state['round']}_", "suspended") for i in range(calls)]

    def raw_update(i: int) -> Any:
        return insights.find_one_and_update(
            {"_id": seed_ids[i % len(seed_ids)]},
            {"$set": {"energyLevel": i % 101, "updatedAt": _dt.datetime.now(_dt.timezone.utc)}},
            return_document=ReturnDocument.AFTER)

    def fresh_nested() -> None:
        nested_coll.delete_many({"_id": {"$nin": nested_ids}})
        state["raw_nested"] = [odm_stored(make_nested()) for _ in range(calls)]
        state["astro_nested"] = [make_nested() for _ in range(calls)]

    def raw_nested_update(i: int) -> Any:
        return nested_coll.find_one_and_update(
            {"_id": nested_ids[i % len(nested_ids)]},
            {"$set": {"embedded_str_doc_1.field1": f"updated_value{i}", "updatedAt": _dt.datetime.now(_dt.timezone.utc)}},
            return_document=ReturnDocument.AFTER)

    return {
        "nested_create": (lambda i: nested_coll.insert_one(state["raw_nested"][i]),
                          lambda i: db.create(LargeNested, state["astro_nested"][i]), fresh_nested),
        "nested_update": (raw_nested_update,
                          lambda i: db.update(LargeNested, {"id": nested_ids[i % len(nested_ids)]},
                                              {"embedded_str_doc_1.field1": f"updated_value{i}"}),
                          nothing),
        "nested_update_nr": (lambda i: nested_coll.update_one(
                                 {"_id": nested_ids[i % len(nested_ids)]},
                                 {"$set": {"embedded_str_doc_1.field1": f"updated_value{i}",
                                           "updatedAt": _dt.datetime.now(_dt.timezone.utc)}}),
                             lambda i: db.update(LargeNested, {"id": nested_ids[i % len(nested_ids)]},
                                                 {"embedded_str_doc_1.field1": f"updated_value{i}"}, returning=False),
                             nothing),
        "nested_find": (lambda i: nested_coll.find_one({"embedded_str_doc_1.unique_id": nested_keys[(i * 7919) % len(nested_keys)]}),
                        lambda i: db.find_one(LargeNested, {"embedded_str_doc_1.unique_id":
                                                            nested_keys[(i * 7919) % len(nested_keys)]}),
                        nothing),
        "create": (lambda i: users.insert_one(state["raw_users"][i]),
                   lambda i: db.create(User, state["astro_users"][i]), fresh_users),
        "update": (raw_update,
                   lambda i: db.update(PlanetaryInsight, {"id": seed_ids[i % len(seed_ids)]}, {"energy_level": i % 101}),
                   nothing),
        "update_nr": (lambda i: insights.update_one(
                          {"_id": seed_ids[i % len(seed_ids)]},
                          {"$set": {"energyLevel": i % 101, "updatedAt": _dt.datetime.now(_dt.timezone.utc)}}),
                      lambda i: db.update(PlanetaryInsight, {"id": seed_ids[i % len(seed_ids)]}, {"energy_level": i % 101},
                                          returning=False),
                      nothing),
        "find_one": (lambda i: insights.find_one({"_id": seed_ids[(i * 7919) % len(seed_ids)]}),
                     lambda i: db.find_one(PlanetaryInsight, {"id": seed_ids[(i * 7919) % len(seed_ids)]}),
                     nothing),
        "find_lean": (lambda i: list(insights.find({"userId": owner}).limit(find_size)),
                      lambda i: db.find(PlanetaryInsight, {"userId": owner}, lean=True, limit=find_size),
                      nothing),
        "find": (lambda i: list(insights.find({"userId": owner}).limit(find_size)),
                 lambda i: db.find(PlanetaryInsight, {"userId": owner}, limit=find_size),
                 nothing),
        "find_one_user": (lambda i: users.find_one({"_id": user_ids[(i * 7919) % len(user_ids)]}),
                          lambda i: db.find_one(User, {"id": user_ids[(i * 7919) % len(user_ids)]}),
                          nothing),
    }


class _Matched:
    """What ``InstantCollection.update_one`` answers: one document matched and modified."""

    matched_count = modified_count = 1


MATCHED = _Matched()


class InstantCollection:
    """A collection answering at once with copies of one stored document (``--no-driver``);
    anything else (``database``, ``name``...) is the real collection's."""

    def __init__(self, real: Any, doc: dict[str, Any]) -> None:
        self.real, self.doc = real, doc
        self.database = real.database  # a plain attribute, as the gateway's collection has it (no call per write)

    def find_one(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(self.doc)

    find_one_and_update = find_one

    def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return MATCHED

    def find(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [dict(self.doc) for _ in range(kwargs.get("limit") or 20)]

    def insert_one(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def without_driver(db: Database, docs: dict[str, dict[str, Any]]) -> None:
    """Point every model of ``db`` at an ``InstantCollection`` answering with ``docs[its
    collection]`` (the run step still runs)."""
    rt = db.executor.runtime
    real = rt.coll
    made: dict[str, InstantCollection] = {}

    def coll(info: Any) -> InstantCollection:  # one per model, as the gateway keeps one handle per collection
        hit = made.get(info.name)
        if hit is None:
            hit = made[info.name] = InstantCollection(real(info), docs.get(info.collection, {}))
        return hit

    rt.coll = coll  # type: ignore[method-assign]


def both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        first()
        second()
    return run


def record_spans() -> None:
    """An OpenTelemetry SDK provider recording every span, exported to nowhere (``--tracing sdk``)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=40, help="calls per measured batch (default 40)")
    parser.add_argument("--rounds", type=int, default=40, help="batches per side, median kept (default 40)")
    parser.add_argument("--calls", type=int, default=300, help="calls profiled per kind with --top (default 300)")
    parser.add_argument("--find-size", type=int, default=20, help="documents per find lean call (default 20)")
    parser.add_argument("--top", type=int, default=0, help="print the N functions with the most own time")
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--only", default="", help="a regex the printed functions' file:name must match (e.g. astro_db)")
    parser.add_argument("--data", default=None,
                        help="the ODM spec's extracted data files for the nested kinds (as odm_bench.py; default: "
                             "ASTRO_DB_ODM_DATA, else generated documents of the same shape)")
    parser.add_argument("--no-monitoring", action="store_true", help="astro_db with monitoring=False")
    parser.add_argument("--command-monitoring", action="store_true",
                        help="astro_db with command_monitoring=True (PyMongo's per-call command and pool listeners)")
    parser.add_argument("--no-driver", action="store_true", help="astro_db's own CPU: collections that answer at once")
    parser.add_argument("--no-budget", action="store_true",
                        help="astro_db with operation_timeout_ms=None (no time budget: no client-side timeout, whose "
                             "work inside PyMongo every bounded call pays)")
    parser.add_argument("--records", action="store_true",
                        help="astro_db as shipped (audit and journal on: change records written) instead of hooks off")
    parser.add_argument("--tracing", default="on", choices=("off", "on", "sdk"),
                        help="OpenTelemetry spans: off (tracing=False), on (the default, no SDK), sdk (spans recorded)")
    parser.add_argument("--tracing-cost", action="store_true",
                        help="the raw side is astro_db with tracing=False: the overhead column is tracing's cost")
    parser.add_argument("--cold", action="store_true",
                        help="astro_db's own CPU per call hot (back to back) and cold (each after a raw PyMongo call)")
    parser.add_argument("--sections", action="store_true",
                        help="with --cold: each section of a call's path (SECTIONS) timed inside the call, hot and cold")
    parser.add_argument("--against", default=None, metavar="TREE",
                        help="with --cold: this tree's astro_db against TREE's (a checkout), batch by batch in two "
                             "worker processes (A/B)")
    parser.add_argument("--primitives", action="store_true",
                        help="with --cold: the building blocks of astro_db's calls (ids, dates, regex, time bound, "
                             "locks...) timed alone, hot and cold")
    parser.add_argument("--decompose", action="store_true",
                        help="four sides interleaved per kind: raw PyMongo, raw under pymongo.timeout(30), astro_db "
                             "with operation_timeout_ms=None, astro_db as configured: what the time budget costs "
                             "inside PyMongo and what astro_db's own code costs beside the driver")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one side of --against
    args = parser.parse_args(argv)
    if (args.sections or args.against or args.primitives or args.worker) and not args.cold:
        parser.error("--sections, --primitives and --against are modes of --cold")
    if sum(map(bool, (args.sections, args.against, args.primitives))) > 1:
        parser.error("--sections, --primitives and --against are one measurement each: give one")
    if args.against and not (Path(args.against) / "astro_db" / "__init__.py").is_file():
        parser.error(f"--against: {args.against} holds no astro_db package")
    if args.cold and (args.no_driver or args.tracing_cost or args.records):
        parser.error("--cold is its own measurement: not with --no-driver, --tracing-cost or --records")
    if args.decompose and (args.cold or args.no_driver or args.tracing_cost or args.no_budget):
        parser.error("--decompose is its own measurement: not with --cold, --no-driver, --tracing-cost or --no-budget")
    if args.tracing == "sdk":
        record_spans()
    kinds = [k for k in args.kinds.split(",") if k]

    if args.against:
        against(args, argv if argv is not None else sys.argv[1:])
        return

    from live.nxserver import NxServer

    data_dir = tempfile.mkdtemp(prefix="astro_profile_nx_")
    server = NxServer(data_dir).start()
    name = f"astro_profile_{uuid.uuid4().hex[:8]}"
    url = server.url(name)
    client: Any = pymongo.MongoClient(url, tz_aware=True)
    budget: dict[str, Any] = {"operation_timeout_ms": None} if args.no_budget else {}
    db = Database(url, allow_plaintext_sensitive=True, connect_attempts=1, audit=args.records, journal=args.records,
                  models=[LargeNested], **budget,
                  ensure_indexes=False, monitoring=not args.no_monitoring, command_monitoring=args.command_monitoring,
                  tracing=args.tracing != "off").connect()
    closing: list[Database] = []
    try:
        raw = client[name]
        owner = ObjectId()
        seed = [stored_insight(owner, n) for n in range(500)]
        raw["planetaryInsights"].insert_many(seed)
        seed_users = [stored_user(n, "seed") for n in range(100)]
        raw["users"].insert_many(seed_users)
        user_ids = [d["_id"] for d in seed_users]
        nested_doc = load_odm_data(args.data).nested.document

        def make_nested() -> dict[str, Any]:
            return with_unique_ids(nested_doc)

        seed_nested = [odm_stored(make_nested()) for _ in range(200)]
        raw[NESTED].insert_many(seed_nested)
        raw[NESTED].create_index([("embedded_str_doc_1.unique_id", 1)])
        instant = {"planetaryInsights": seed[0], "users": seed_users[0], NESTED: seed_nested[0]}
        table = calls_of(raw, db, [d["_id"] for d in seed], owner, max(args.calls, args.batch), args.find_size, user_ids,
                         seed_nested, make_nested)
        if args.cold:  # a second Database answered at once; the first keeps the driver for nothing else
            own_db = Database(url, allow_plaintext_sensitive=True, connect_attempts=1, audit=False, journal=False,
                              models=[LargeNested], **budget, ensure_indexes=False, monitoring=not args.no_monitoring,
                              command_monitoring=args.command_monitoring, tracing=args.tracing != "off").connect()
            closing.append(own_db)
            without_driver(own_db, instant)
            own_table = calls_of(raw, own_db, [d["_id"] for d in seed], owner, max(args.calls, args.batch),
                                 args.find_size, user_ids, seed_nested, make_nested)
            if args.worker:
                serve(table, own_table, args.batch)
            elif args.primitives:
                primitives_table(table["find_one"][0], args.rounds, args.batch)
            elif args.sections:
                sections_table(table, own_table, kinds, args.rounds, args.batch)
            else:
                cold_table(table, own_table, kinds, args.rounds, args.batch)
            return
        if args.decompose:
            unbounded = Database(url, allow_plaintext_sensitive=True, connect_attempts=1, audit=args.records,
                                 journal=args.records, models=[LargeNested], operation_timeout_ms=None,
                                 ensure_indexes=False, monitoring=not args.no_monitoring,
                                 command_monitoring=args.command_monitoring, tracing=args.tracing != "off").connect()
            closing.append(unbounded)
            plain = calls_of(raw, unbounded, [d["_id"] for d in seed], owner, max(args.calls, args.batch),
                             args.find_size, user_ids, seed_nested, make_nested)
            decompose_table(table, plain, kinds, args.rounds, args.batch, records=args.records)
            return
        if args.no_driver:
            without_driver(db, instant)
            table = {kind: (nothing, astro, setup) for kind, (_, astro, setup) in table.items()}
        if args.tracing_cost:
            untraced = Database(url, allow_plaintext_sensitive=True, connect_attempts=1, audit=False, journal=False,
                                ensure_indexes=False, models=[LargeNested],
                                monitoring=not args.no_monitoring, command_monitoring=args.command_monitoring,
                                tracing=False).connect()
            closing.append(untraced)
            if args.no_driver:
                without_driver(untraced, instant)
            plain = calls_of(raw, untraced, [d["_id"] for d in seed], owner, max(args.calls, args.batch), args.find_size,
                             user_ids, seed_nested, make_nested)
            table = {kind: (plain[kind][1], astro, both(setup, plain[kind][2])) for kind, (_, astro, setup) in table.items()}
        mode = ", no driver (astro_db's own CPU)" if args.no_driver else ", monitoring off" if args.no_monitoring else ""
        mode += ", operation_timeout_ms=None" if args.no_budget else ""
        mode += ", command monitoring on" if args.command_monitoring and not args.no_monitoring else ""
        mode += f", tracing {args.tracing}" + (" (raw column: astro_db with tracing=False)" if args.tracing_cost else "")
        print(f"# nx-27017, {'records on' if args.records else 'hooks off'}{mode}; {args.rounds} batches of "
              f"{args.batch} calls per side, interleaved (+1 warm-up): median client CPU per call in microseconds")
        print(f"{'call':<16} {'raw':>8} {'astro_db':>9} {'overhead':>9} {'ratio':>6}")
        for kind in kinds:
            raw_call, astro_call, setup = table[kind]
            setup()
            cpu_per_call(raw_call, args.batch)  # warm-up
            cpu_per_call(astro_call, args.batch)
            raws, astros = [], []
            for r in range(args.rounds):  # small batches, alternating which side goes first
                setup()  # untimed: fresh inputs (create inserts new documents every batch)
                first, second = (raw_call, astro_call) if r % 2 == 0 else (astro_call, raw_call)
                a, b = cpu_per_call(first, args.batch), cpu_per_call(second, args.batch)
                raws.append(a if first is raw_call else b)
                astros.append(b if first is raw_call else a)
            raw_med, astro_med = statistics.median(raws), statistics.median(astros)
            ratio = "     -" if (args.no_driver and not args.tracing_cost) or not raw_med else f"{astro_med / raw_med:>5.2f}x"
            print(f"{kind:<16} {raw_med:>8.1f} {astro_med:>9.1f} {astro_med - raw_med:>9.1f} {ratio}",
                  flush=True)
        if args.top:
            for kind in kinds:
                _, astro_call, setup = table[kind]
                setup()
                profiler = cProfile.Profile(time.process_time)  # CPU, not waits on the socket
                profiler.enable()
                for i in range(args.calls):
                    astro_call(i)
                profiler.disable()
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats(args.sort).print_stats(args.only or "", args.top)
                print(f"\n## {kind}: top {args.top} by {args.sort}{' matching ' + args.only if args.only else ''} ({args.calls} calls; "
                      f"{stats.total_calls / args.calls:.0f} function calls per call)")
                print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
    finally:
        for other in closing:
            other.close()
        db.close()
        client.drop_database(name)
        client.close()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
