"""Which astro_db modules one call passes, in order: ``python benchmarks/trace_calls.py``.

Traces a ``find`` and a ``create`` on the embedded backend with ``sys.setprofile`` and prints,
per call, the sequence of astro_db modules entered (consecutive frames of one module merged),
the number of distinct modules, the number of switches between modules, and the modules the
call came back to after leaving them for another step (``returns``): the executor is the hub,
so the steps appear in pipeline order and only ``ops.executor`` is returned to.
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


def summary(path: list[str]) -> dict[str, Any]:
    """Distinct modules, switches, and modules re-entered other than the executor hub."""
    returns = sorted({m for i, m in enumerate(path) if m in path[:i] and m != "astro_db.ops.executor"})
    return {"modules": len(set(path)), "switches": max(len(path) - 1, 0), "returns": returns}


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
        print(f"{name}: {figures['modules']} modules, {figures['switches']} switches, "
              f"re-entered (besides the executor): {figures['returns'] or 'none'}")
        print("  " + " > ".join(m.removeprefix(_PACKAGE) for m in path))


if __name__ == "__main__":
    main()
