"""Which astro_db modules one call passes, in order: ``python benchmarks/trace_calls.py``.

Traces a ``find`` and a ``create`` on the embedded backend with ``sys.setprofile`` and prints,
per call, the sequence of astro_db modules entered (consecutive frames of one module merged),
the number of distinct modules, the number of switches between modules, and the pipeline
steps (``astro_db.ops.steps``) entered: the executor is the hub,
so each step appears once, in pipeline order (``in_pipeline_order``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from astro_db import Database
from astro_db.models import User

_PACKAGE = "astro_db."


def trace(fn: Callable[[], Any]) -> list[str]:
    """The astro_db modules whose functions are entered while ``fn()`` runs, in call order."""
    seen: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_PACKAGE) and (not seen or seen[-1] != module):
            seen.append(module)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


STEPS = ("resolve", "authorize", "compile", "seal", "route", "cache", "run", "hooks", "open", "hydrate")


def steps(path: list[str]) -> list[str]:
    """The pipeline steps a traced call entered, in order (repeats merged)."""
    out: list[str] = []
    for module in path:
        if module.startswith("astro_db.ops.steps."):
            step = module.rsplit(".", 1)[1]
            if step == "run" and "hooks" in out:
                continue  # the hooks' own writes (change records) go through the run step: nested in hooks
            if not out or out[-1] != step:
                out.append(step)
    return out


def in_pipeline_order(entered: list[str]) -> bool:
    """Whether the steps were entered in pipeline order, never going back to an earlier one."""
    ranks = [STEPS.index(step) for step in entered]
    return ranks == sorted(ranks) and len(set(entered)) == len(entered)


def summary(path: list[str]) -> dict[str, Any]:
    """Distinct modules, switches, the steps in order, and whether that order is the pipeline's."""
    entered = steps(path)
    return {"modules": len(set(path)), "switches": max(len(path) - 1, 0), "steps": entered,
            "in_order": in_pipeline_order(entered)}


def main() -> None:
    db = Database("mongomock://localhost/trace", ensure_indexes=False, audit=True, journal=True).connect()
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    db.find(User, {"id": user.id})  # warm: imports and caches out of the trace
    calls = {
        "find": lambda: db.find(User, {"id": user.id}),
        "create": lambda: db.create(User, {"email": "bob@example.com", "name": "Bob"}),
    }
    for name, fn in calls.items():
        path = trace(fn)
        figures = summary(path)
        print(f"{name}: {figures['modules']} modules, {figures['switches']} switches; steps "
              f"{' > '.join(figures['steps'])} ({'in pipeline order' if figures['in_order'] else 'OUT OF ORDER'})")
        print("  " + " > ".join(m.removeprefix(_PACKAGE) for m in path))


if __name__ == "__main__":
    main()
