"""Step 6, cache: answer a read from the query cache when the call or the model asks for it.

Never inside a transaction (it must read its own uncommitted writes). With ``stale_ok`` the
answer is remembered and stands in, marked stale, while the server is unavailable
(``astro_db.stale``). Entries hold stored-form (still sealed) documents; invalidation is the
hooks step's job.

Whatever the answer's source (the server, this process's cache, the shared Redis store, a stale
copy), the actor's scope is checked on it here (``Guard.admits``) before any step after this one
sees it: a cached answer holding a document outside the scope is dropped (logged at ERROR, the
model's entries dropped) and the read goes to the server; a server answer outside it is a
``PermissionDeniedError``. So no actor is served another owner's document from any source.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ...cache import cache_key
from ...errors import PermissionDeniedError
from ...registry import ModelInfo
from ...security.access import Guard
from ...stale import fetch_or_stale
from ..runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from ..._types import MaybeTransaction

__all__ = ["read_through"]

T = TypeVar("T")
log = logging.getLogger(__name__)


def read_through(rt: Runtime, info: ModelInfo, kind: str, filt: dict[str, Any], options: Any, *,
                 cache: bool | None, transaction: MaybeTransaction, stale_ok: bool, route: str | None,
                 fetch: Callable[[], T], guard: Guard | None = None) -> T:
    """``fetch()``, through the cache when wanted, checked against ``guard``'s scope (see the
    module docstring)."""
    store = rt.cache  # ``wanted``'s first look inlined: a model not cached and no cache=True (nearly every read)
    use_cache = (transaction is None and (info.name in store.models if cache is None else cache)
                 and store.wanted(info.name, cache))  # asked once per read
    if transaction is not None or not (stale_ok or use_cache):
        answer = fetch()  # the server's answer (nearly every read): no closure, no cache key
        if guard is None or not guard.scope or guard.admits(answer):
            return answer
        raise PermissionDeniedError(f"the server answered {kind} on {info.name} with a document outside the scope "
                                    f"of actor {guard.actor.id if guard.actor else '?'}")
    fetched = False

    def fresh() -> T:
        nonlocal fetched
        fetched = True
        return fetch()

    answer = _answer(rt, info, kind, filt, options, use_cache=use_cache, stale_ok=stale_ok, route=route, fetch=fresh)
    if guard is None or guard.admits(answer):
        return answer
    if fetched:
        raise PermissionDeniedError(f"the server answered {kind} on {info.name} with a document outside the scope "
                                    f"of actor {guard.actor.id if guard.actor else '?'}")
    log.error("%s on %s: a cached answer held a document outside the actor's scope (a tampered or misplaced "
              "entry); %s entries dropped and the read sent to the server", kind, info.name, info.name)
    rt.cache.drop(info.name)
    answer = fetch()
    if not guard.admits(answer):
        raise PermissionDeniedError(f"the server answered {kind} on {info.name} with a document outside the scope "
                                    f"of actor {guard.actor.id if guard.actor else '?'}")
    return answer


def _answer(rt: Runtime, info: ModelInfo, kind: str, filt: dict[str, Any], options: Any, *,
            use_cache: bool, stale_ok: bool, route: str | None, fetch: Callable[[], T]) -> T:
    """Outside a transaction: through the cache when ``use_cache`` (``read_through`` asked
    ``wanted`` once), else remembered for ``stale_ok``."""
    store = rt.cache
    if stale_ok and store.enabled:
        return fetch_or_stale(store, cache_key(info.name, kind, filt, options, route), fetch, use_cache=use_cache)
    if not use_cache:
        return fetch()
    value: T = store.get_or_fetch(cache_key(info.name, kind, filt, options, route), fetch)
    return value
