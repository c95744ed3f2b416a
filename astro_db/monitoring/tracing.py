"""OpenTelemetry tracing (the ``tracing`` extra: ``opentelemetry-api``): one span per operation.

Every operation of the executor (``find`` ... ``delete_many``, ``audit_trail``, and each driver
call a tool makes through ``Executor.call``) runs inside one span, ``astro_db.<operation>``,
which is the current span while the operation runs, so the command spans of
``opentelemetry-instrumentation-pymongo`` (where installed) are its children. ``instrument``
wraps the executor's entry points once, at import; the run step reports each driver call and
its retries to the span in progress (``current``); ``ServerListener`` (a PyMongo command
listener, registered when tracing is on, the backend is a server and a recording tracer provider
is set when the Database is made) notes which server answered.

A span holds the operation's name, kind (read / write / tool), model and collection, the
actor's id, whether a read was answered from the query cache (and whether stale, ``stale_ok``
while the server was unavailable), the driver calls and retries it
made, the server's address, and on failure the error's type (status ERROR, an ``exception``
event with ``exception.type`` only). It never holds a document value, a filter value, an error
message or a stack trace: messages and source lines can quote the caller's data.

Without ``opentelemetry-api`` installed, ``AVAILABLE`` is False, ``instrument`` leaves the
executor as it is and the run step's only cost is reading that flag. With it installed and no
tracer provider set (no SDK configured), no span is started: one identity check of the API's
global provider per operation (``_provider_off``: what ``get_tracer_provider()`` said is kept
until that global is another object, which the API lets happen once per process, when the
application sets its provider; ``OTEL_PYTHON_TRACER_PROVIDER`` is read, by the API, at the first
operation of the process and whenever the global changes). A span an SDK samples out is non-recording: it is still made current (so the
driver's command spans are sampled out with it) but no attribute is computed.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pymongo import monitoring

from .._version import __version__
from ..backends.capabilities import capabilities

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MaybeActor
    from ..config import DatabaseConfig
    from ..ops.runtime import Runtime

try:  # the optional extra
    from opentelemetry import context as _otel_context
    from opentelemetry import trace as _otel_trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised in a subprocess without opentelemetry (tests/unit/test_tracing.py)
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "KINDS", "TOOL", "SPAN_PREFIX", "Trace", "current", "instrument", "listeners", "recording_provider"]

log = logging.getLogger(__name__)
T = TypeVar("T")
C = TypeVar("C", bound=type)

SPAN_PREFIX = "astro_db."
TOOL = "tool"
# The executor's operations (methods taking an ``Operation``) and their kind; ``Executor.call``
# (a tool's driver call) is the other entry point, of kind ``tool``.
KINDS: dict[str, str] = {
    "find": "read", "find_one": "read", "count": "read", "aggregate": "read", "audit_trail": "read",
    "iter_find": "read", "page": "read",  # iter_find: the span covers the call, up to its first batch
    "create": "write", "create_many": "write", "update": "write", "update_many": "write",
    "delete": "write", "delete_many": "write", "upsert_many": "write",
}
_CACHED_READS = frozenset({"find", "find_one", "count"})

_current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("astro_db_trace", default=None)
_tracer: Any = _otel_trace.get_tracer("astro_db", __version__) if AVAILABLE else None
# The API's providers while the application has set none (or set the no-op one): no span is made.
_NO_SDK: tuple[type, ...] = (_otel_trace.ProxyTracerProvider, _otel_trace.NoOpTracerProvider) if AVAILABLE else ()
# Where the API keeps the global provider (None until one is set; the API sets it once per
# process): compared by identity per operation instead of asking ``get_tracer_provider()``,
# whose look at the environment costs about a microsecond. An API without it: asked every time.
_HAS_GLOBAL = AVAILABLE and hasattr(_otel_trace, "_TRACER_PROVIDER")
_UNSEEN: Any = object()
# (the API's global provider when ``get_tracer_provider()`` was last asked, whether no SDK was behind it)
_seen: tuple[Any, bool] = (_UNSEEN, True)


class Trace:
    """What the run step and the server listener tell the span of the operation in progress."""

    __slots__ = ("calls", "retries", "server")

    def __init__(self) -> None:
        self.calls = 0
        self.retries = 0
        self.server: tuple[str, int | None] | None = None

    def driver_call(self, fn: Callable[[], T]) -> Callable[[], T]:
        """``fn`` (one driver call of the run step) counted, and each attempt after its first
        counted as a retry."""
        self.calls += 1
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                self.retries += 1
            return fn()

        return attempt


current: Callable[[], Trace | None] = _current.get
"""The recording operation span's ``Trace`` in this context, or None (the context variable's own
``get``: the run step asks once per driver call, and a function of this module's would be a
call back up the stack for every one)."""


class ServerListener(monitoring.CommandListener):
    """Notes the server (host, port) each command of a traced operation went to."""

    def started(self, event: Any) -> None:
        state = _current.get()
        if state is not None:
            state.server = event.connection_id

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


def recording_provider() -> bool:
    """Whether the application has set a tracer provider that records (an SDK's), not the API's
    default proxy or its no-op one."""
    return AVAILABLE and not isinstance(_otel_trace.get_tracer_provider(), _NO_SDK)


def _provider_off() -> bool:
    """Whether no recording tracer provider is set (so no span is made): ``get_tracer_provider()``
    asked again, and its answer kept with the API's global provider it was given under (the
    wrappers below compare that global by identity first: a provider set later is another
    object, so it is seen at the next operation)."""
    global _seen
    off = isinstance(_otel_trace.get_tracer_provider(), _NO_SDK)  # may load OTEL_PYTHON_TRACER_PROVIDER's
    if _HAS_GLOBAL:
        _seen = (_otel_trace._TRACER_PROVIDER, off)  # after the look: the global it set, if it set one
    return off


def listeners(config: DatabaseConfig) -> list[Any]:
    """The PyMongo listeners tracing needs for ``config``, looked for once, when the Database is
    made: ``ServerListener`` when tracing is on, the backend is a server and a recording tracer
    provider is set; else none. A command listener makes PyMongo build and time an event for
    every command, so with no provider (no span ever records) it is not registered; a Database
    made before the provider was set has no server address on its spans."""
    if config.health.tracing and capabilities(config).driver_events and recording_provider():
        return [ServerListener()]
    return []


_NAMESPACES: dict[tuple[str | None, str | None], str] = {}


def _namespace(config: Any) -> str:
    """The config's database name, parsed from its URL once (``""`` when it names none)."""
    key = (config.url, config.database)
    name = _NAMESPACES.get(key)
    if name is None:
        try:
            name = config.database_name
        except Exception:  # noqa: BLE001 - a config without a database name: no attribute
            name = ""
        if len(_NAMESPACES) < 256:
            _NAMESPACES[key] = name
    return name


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _traced(rt: Runtime, operation: str, kind: str, model: Any, actor: MaybeActor, run: Callable[[], T]) -> T:
    """``run()`` inside the span ``astro_db.<operation>``, current while it runs (the caller has
    seen a tracer provider configured: with none, a span would be the API's no-op, so the
    wrappers below make none and build no traced call)."""
    span = _tracer.start_span(SPAN_PREFIX + operation, kind=SpanKind.CLIENT)
    token = _otel_context.attach(_otel_trace.set_span_in_context(span))
    if not span.is_recording():  # no SDK, or sampled out: the context still propagates
        try:
            return run()
        finally:
            _otel_context.detach(token)
            span.end()
    state = Trace()
    own = _current.set(state)
    error: BaseException | None = None
    result: Any = None
    try:
        result = run()
        return result  # type: ignore[no-any-return]
    except BaseException as exc:
        error = exc
        raise
    finally:
        _current.reset(own)
        _otel_context.detach(token)
        try:
            _finish(rt, span, state, operation, kind, model, actor, error, result)
        except Exception as exc:  # noqa: BLE001 - tracing never fails an operation
            log.warning("the span of %s was not completed: %s", operation, type(exc).__name__)


def _finish(rt: Runtime, span: Any, state: Trace, operation: str, kind: str, model: Any, actor: MaybeActor,
            error: BaseException | None, result: Any = None) -> None:
    """Set the span's attributes (names, counts and addresses only: no value the caller sent)
    and end it."""
    try:
        attributes: dict[str, Any] = {
            "db.system": "mongodb",
            "db.operation.name": operation,
            "astro_db.kind": kind,
            "astro_db.driver_calls": state.calls,
            "astro_db.retries": state.retries,
        }
        namespace = _namespace(rt.config)
        if namespace:
            attributes["db.namespace"] = namespace
        info = None
        if model is not None:
            try:
                info = rt.registry.resolve(model)  # a class, a ModelInfo or any spelling of a name
            except Exception:  # noqa: BLE001 - an unknown model (the call failed for it): no model attribute
                info = None
        if info is not None:
            attributes["astro_db.model"] = info.name
            attributes["db.collection.name"] = info.collection
        if actor is not None:
            attributes["astro_db.actor.id"] = actor.id
        if operation in _CACHED_READS:
            stale = getattr(result, "stale", False) is True  # answered from the cache while the server was not
            attributes["astro_db.cache.hit"] = error is None and (state.calls == 0 or stale)
            if stale:
                attributes["astro_db.stale"] = True
        if state.server is not None:
            host, port = state.server
            attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
        if error is not None:
            error_type = _error_type(error)
            attributes["error.type"] = error_type
            span.add_event("exception", {"exception.type": error_type})
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.set_attributes(attributes)
    finally:
        span.end()


def _operation(method: Callable[..., T], kind: str) -> Callable[..., T]:
    """An executor operation (``method(self, op, *args)``) run inside its span when tracing is on."""
    name = method.__name__

    if not _HAS_GLOBAL:  # pragma: no cover - an API without the global: asked every operation

        @functools.wraps(method)
        def asking(self: Any, op: Any, *args: Any) -> T:
            rt = self.runtime
            if not rt.config.health.tracing or _provider_off():
                return method(self, op, *args)
            return _traced(rt, name, kind, op.model, op.actor, lambda: method(self, op, *args))

        return asking

    if _takes_only_an_operation(method):  # every operation but audit_trail: no star-args call per operation

        @functools.wraps(method)
        def traced_op(self: Any, op: Any) -> T:
            rt = self.runtime
            seen = _seen  # the provider's answer, kept while the API's global is the same object
            if not rt.config.health.tracing or (seen[1] if _otel_trace._TRACER_PROVIDER is seen[0] else _provider_off()):
                return method(self, op)
            return _traced(rt, name, kind, op.model, op.actor, lambda: method(self, op))

        return traced_op

    @functools.wraps(method)
    def traced(self: Any, op: Any, *args: Any) -> T:
        rt = self.runtime
        seen = _seen  # the provider's answer, kept while the API's global is the same object
        if not rt.config.health.tracing or (seen[1] if _otel_trace._TRACER_PROVIDER is seen[0] else _provider_off()):
            return method(self, op, *args)
        return _traced(rt, name, kind, op.model, op.actor, lambda: method(self, op, *args))

    return traced


def _takes_only_an_operation(method: Callable[..., Any]) -> bool:
    """Whether ``method``'s parameters are exactly ``(self, op)``, positional, without defaults."""
    params = list(inspect.signature(method).parameters.values())
    return len(params) == 2 and all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is p.empty
                                    for p in params)


def _tool(method: Callable[..., T]) -> Callable[..., T]:
    """``Executor.call`` (a tool's driver call) run inside its span when tracing is on."""

    @functools.wraps(method)
    def traced(self: Any, info: Any, operation: str, fn: Callable[[], Any], *args: Any, **kwargs: Any) -> T:
        rt = self.runtime
        seen = _seen
        if not rt.config.health.tracing or (
                seen[1] if _HAS_GLOBAL and _otel_trace._TRACER_PROVIDER is seen[0] else _provider_off()):
            return method(self, info, operation, fn, *args, **kwargs)
        return _traced(rt, operation.replace(" ", "_"), TOOL, info, None,
                       lambda: method(self, info, operation, fn, *args, **kwargs))

    return traced


def instrument(cls: C) -> C:
    """Wrap the executor's entry points (``KINDS`` and ``call``) in their spans; without
    opentelemetry the class is returned untouched."""
    if not AVAILABLE:
        return cls
    for name, kind in KINDS.items():
        setattr(cls, name, _operation(getattr(cls, name), kind))
    cls.call = _tool(cls.call)  # type: ignore[attr-defined]
    return cls
