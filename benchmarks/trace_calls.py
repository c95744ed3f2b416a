"""Which astro_db modules one call passes, how often, and in what order: ``python benchmarks/trace_calls.py``.

Traces a ``find`` and a ``create`` of a ``User`` on the embedded backend (change records on, the
query cache off, no key: what ``Database(url)`` does) with ``sys.setprofile`` and keeps the stack
of Python frames as the interpreter reports them (``call`` and ``return`` events; C functions are
not frames). Two measures, as issue 22 means them:

- **passes.** A module is *passed* once for each maximal interval during which it has at least
  one frame on the stack: its first frame entered while it had none, up to the return of its
  last frame. Calling a module's functions ten times in a row from one caller is ten passes;
  one function that calls its own module's helpers is one pass. ``passes`` per module, their
  total, and ``sequence``: the module of each pass, in the order the passes began.
- **callbacks up the stack.** A call into module M from a frame of another module, made while M
  already has a frame further up the stack (M is re-entered below itself: a closure or hook of
  M's handed down and called back, or a module calling into one of its callers). Counted per
  (caller, callee) pair; frames of other packages (PyMongo) count as callers too.

Only modules of the ``astro_db`` package are counted (their frames, their passes, their
re-entries); other packages' frames sit on the stack between them and are callers for the
callback rule. Python-level code only: what C calls (``dict.get``) is invisible, as it is to
any profiler. The warm-up call before each traced one keeps imports and one-time plans out.

``tests/unit/test_architecture.py`` pins the figures this prints (``budget``: modules, passes,
callbacks, steps in pipeline order) so they cannot grow unnoticed.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_PACKAGE = "astro_db."

STEPS = ("resolve", "authorize", "compile", "seal", "route", "cache", "run", "hooks", "open", "hydrate")


@dataclass
class Trace:
    """What one traced call did (see the module docstring)."""

    passes: Counter[str] = field(default_factory=Counter)
    sequence: list[str] = field(default_factory=list)
    callbacks: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def modules(self) -> int:
        return len(self.passes)

    @property
    def total_passes(self) -> int:
        return sum(self.passes.values())

    @property
    def total_callbacks(self) -> int:
        return sum(self.callbacks.values())

    def repeated(self) -> dict[str, int]:
        """The modules passed more than once, with their pass counts."""
        return {m: n for m, n in self.passes.most_common() if n > 1}

    def steps(self) -> list[str]:
        """The pipeline steps (``astro_db.ops.steps``) in the order their passes began."""
        return steps(self.sequence)


def trace(fn: Callable[[], Any]) -> Trace:
    """Run ``fn()`` under the tracer; what it passed (see the module docstring)."""
    out = Trace()
    stack: list[str] = []  # the module of every Python frame entered inside fn, innermost last
    depth: Counter[str] = Counter()  # astro_db frames on the stack, per module

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if module.startswith(_PACKAGE):
                name = module.removeprefix(_PACKAGE)
                if depth[name] == 0:
                    out.passes[name] += 1
                    out.sequence.append(name)
                elif stack and stack[-1] != name:
                    out.callbacks[(stack[-1], name)] += 1
                depth[name] += 1
                stack.append(name)
            else:
                stack.append("<" + module.split(".", 1)[0] + ">")
        elif event == "return" and stack:
            name = stack.pop()
            if not name.startswith("<"):
                depth[name] -= 1

    # the garbage collector would run finalizers of earlier objects (another Database's breaker,
    # a closed client) inside the traced call, adding passes that belong to no call: collect first,
    # and not during
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    return out


def steps(sequence: list[str]) -> list[str]:
    """The pipeline steps entered, in order (repeats merged). A step entered from inside the
    hooks step (the change records' own driver call goes through the run step) is nested in
    hooks, not a step of the call."""
    out: list[str] = []
    for module in sequence:
        module = module.removeprefix(_PACKAGE)
        if module.startswith("ops.steps."):
            step = module.rsplit(".", 1)[1]
            if step == "run" and "hooks" in out:
                continue
            if not out or out[-1] != step:
                out.append(step)
    return out


def in_pipeline_order(entered: list[str]) -> bool:
    """Whether the steps were entered in pipeline order, each once."""
    ranks = [STEPS.index(step) for step in entered]
    return ranks == sorted(ranks) and len(set(entered)) == len(entered)


def calls(db: Any) -> dict[str, Callable[[], Any]]:
    """The traced calls (issue 22's ``find`` and ``create``), each warmed up once."""
    from astro_db.models import User

    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    db.create(User, {"email": "warm@example.com", "name": "Warm"})
    db.find(User, {"id": user.id})
    counter = iter(range(1_000_000))
    return {
        "find": lambda: db.find(User, {"id": user.id}),
        "create": lambda: db.create(User, {"email": f"bob{next(counter)}@example.com", "name": "Bob"}),
    }


def measure() -> dict[str, Trace]:
    """``find`` and ``create`` traced on a fresh embedded Database."""
    from astro_db import Database

    # no slow-query line: on a loaded machine a call past the 100 ms default would be traced
    # through the log's redaction too (urls, errors: three modules more), a path of the machine's
    # load, not of the call (test_architecture.py failed so once, under CI's three suites)
    db = Database("mongomock://localhost/trace", ensure_indexes=False, audit=True, journal=True,
                  slow_query_ms=3_600_000).connect()
    try:
        return {name: trace(fn) for name, fn in calls(db).items()}
    finally:
        db.disconnect()


def main() -> None:
    for name, t in measure().items():
        entered = t.steps()
        print(f"{name}: {t.modules} modules, {t.total_passes} passes, {t.total_callbacks} callbacks up the stack; "
              f"steps {' > '.join(entered)} ({'in pipeline order' if in_pipeline_order(entered) else 'OUT OF ORDER'})")
        print("  passed more than once: " + (", ".join(f"{m} x{n}" for m, n in t.repeated().items()) or "none"))
        print("  callbacks: " + (", ".join(f"{a} -> {b} x{n}" for (a, b), n in t.callbacks.items()) or "none"))
        print("  sequence: " + " > ".join(t.sequence))


if __name__ == "__main__":
    main()
