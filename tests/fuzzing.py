"""How many examples a property test draws: ``examples(n)``, scaled by ``ASTRO_DB_FUZZ_SCALE``.

Every ``@settings(max_examples=...)`` in the suite goes through :func:`examples`, and
tests/conftest.py loads a Hypothesis profile whose default (for property tests without their
own ``settings``) is scaled the same way. The scale is 1 unless the environment sets it: the README's
test command on Python 3.11 draws every example; CI's interpreter matrix (3.12, 3.13: the same
code on another interpreter, where compatibility, not more inputs, is what is tested) sets 0.25
(.ci/run). A scale is a number in (0, 1]; anything else is refused at collection, so a typo
cannot silently turn the fuzzing off.
"""

from __future__ import annotations

import os

FLOOR = 10  # never fewer examples than this, whatever the scale
DEFAULT = 100  # Hypothesis's own default max_examples


def scale(environ: dict[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get("ASTRO_DB_FUZZ_SCALE", "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"ASTRO_DB_FUZZ_SCALE must be a number in (0, 1], not {raw!r}") from None
    if not 0 < value <= 1:
        raise ValueError(f"ASTRO_DB_FUZZ_SCALE must be a number in (0, 1], not {raw!r}")
    return value


def examples(n: int, environ: dict[str, str] | None = None) -> int:
    """``n`` examples at scale 1, fewer (never below ``FLOOR``, never above ``n``) at a smaller scale."""
    return min(n, max(FLOOR, round(n * scale(environ))))
