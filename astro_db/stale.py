"""Stale answers: what a read with ``stale_ok=True`` returns while the server is unavailable.

``find`` / ``find_one`` / ``count`` take ``stale_ok=True``. While the server answers, such a
read is as fresh as without it (it uses the cache only if ``cache=`` or the model says so) and
its result is remembered in the query cache. When the read fails because the server is
unavailable (``DatabaseConnectionError``, including an open circuit breaker,
``OperationTimeoutError`` or ``PoolExhaustedError``), the last remembered result for the same
query is returned instead, even past its TTL (up to ``cache_stale_s``), clearly marked:

- ``find`` returns a ``StaleResult`` (a ``list``), ``count`` a ``StaleCount`` (an ``int``),
  ``find_one`` with ``lean=True`` a ``StaleDocument`` (a ``dict``) and otherwise the model
  instance with ``instance.stale = True``; each has ``.stale = True`` and ``.age_s``
  (seconds since it was read from the server). ``is_stale(result)`` tests any of them.
- A ``find_one`` that remembered "no match" returns ``None``, which cannot carry a mark; the
  WARNING log line is then the only sign.
- Every stale answer is logged at WARNING (model, read kind, age, cause).

With nothing remembered for the query the original error is raised. Never inside a
transaction: a transaction must see its own writes, so ``stale_ok`` is ignored there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import (
    DatabaseConnectionError,
    NotConnectedError,
    OperationTimeoutError,
    PoolExhaustedError,
)

__all__ = ["StaleResult", "StaleCount", "StaleDocument", "is_stale", "stale_age", "mark", "fetch_or_stale", "UNAVAILABLE"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Failures that mean "the server is unavailable now" (a stale answer may stand in).
UNAVAILABLE = (DatabaseConnectionError, OperationTimeoutError, PoolExhaustedError)


class StaleResult(list):  # type: ignore[type-arg]
    """The documents of a ``find`` answered from the cache while the server was unavailable."""

    stale = True

    def __init__(self, items: Any = (), age_s: float = 0.0) -> None:
        super().__init__(items)
        self.age_s = age_s


class StaleDocument(dict):  # type: ignore[type-arg]
    """A lean ``find_one`` document answered from the cache while the server was unavailable."""

    stale = True

    def __init__(self, doc: Any = (), age_s: float = 0.0) -> None:
        super().__init__(doc)
        self.age_s = age_s


class StaleCount(int):
    """A ``count`` answered from the cache while the server was unavailable."""

    stale = True
    age_s: float

    def __new__(cls, value: int, age_s: float = 0.0) -> StaleCount:
        out = super().__new__(cls, value)
        out.age_s = age_s
        return out


def is_stale(result: Any) -> bool:
    """Whether a read result was answered from the cache while the server was unavailable."""
    return getattr(result, "stale", False) is True


def stale_age(result: Any) -> float | None:
    """How old a stale result is, in seconds (``None`` for a fresh one)."""
    return getattr(result, "age_s", None) if getattr(result, "stale", False) is True else None  # is_stale, inlined: every read asks


def mark(value: Any, age_s: float | None) -> Any:
    """``value`` marked stale with ``age_s`` (``value`` itself when ``age_s`` is None)."""
    if age_s is None or value is None:
        return value
    if isinstance(value, list):
        return StaleResult(value, age_s)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return StaleCount(value, age_s)
    if isinstance(value, dict):
        return StaleDocument(value, age_s)
    value.stale = True  # a model instance: plain attributes, never stored
    value.age_s = age_s
    return value


def fetch_or_stale(cache: Any, key: tuple[Any, ...], fetch: Callable[[], T], *, use_cache: bool) -> T:
    """``fetch()`` (through the cache when ``use_cache``), remembered for later; on an
    unavailable server the last remembered value for ``key``, marked (see module docstring)."""
    generation = cache.generation(key[0])
    try:
        if use_cache:
            return cache.get_or_fetch(key, fetch)  # type: ignore[no-any-return]
        value = fetch()
    except UNAVAILABLE as exc:
        if isinstance(exc, NotConnectedError):
            raise  # a programming error (connect() never called), not an outage
        remembered = cache.get_stale(key)
        if remembered is None:
            raise
        value, age = remembered
        log.warning("%s on %s: serving a stale answer from the query cache (%.1fs old) because %s: %s",
                    key[1], key[0], age, type(exc).__name__, str(exc).split(";")[0][:200])
        return mark(value, age)  # type: ignore[no-any-return]
    cache.put(key, value, generation)
    return value

