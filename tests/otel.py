"""OpenTelemetry for the tracing tests: one SDK provider per process, its spans in memory.

OpenTelemetry's global tracer provider can be set once per process; the first tracing test to
run sets it (an SDK ``TracerProvider`` exporting to an ``InMemorySpanExporter``), later ones
reuse it and clear the exporter. astro_db's tracer is the API's proxy, so it follows. The
provider's sampler records only while a tracing test runs (``recording()``): the other tests
sharing the process get non-recording spans, as an app without an SDK does, and no span piles
up in memory.
"""

from __future__ import annotations

from typing import Any

import pytest

trace = pytest.importorskip("opentelemetry.trace", reason="needs the tracing extra (opentelemetry-api)")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace", reason="needs opentelemetry-sdk (the dev extra)")
import contextlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler  # noqa: E402

_state: dict[str, Any] = {}


class WhileRecording(Sampler):
    """Samples every span while a tracing test runs, none otherwise."""

    on = False

    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        return (ALWAYS_ON if WhileRecording.on else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "WhileRecording"


class GatedExporter(InMemorySpanExporter):
    """Keeps spans only while a tracing test runs (the provider may be one set before ours)."""

    def export(self, spans: Any) -> Any:
        if WhileRecording.on:
            return super().export(spans)
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS


def _setup() -> None:
    if "exporter" in _state:
        return
    provider = trace.get_tracer_provider()
    if not isinstance(provider, sdk_trace.TracerProvider):
        provider = sdk_trace.TracerProvider(sampler=WhileRecording())
        trace.set_tracer_provider(provider)
    _state["exporter"] = GatedExporter()
    _state["provider"] = provider
    provider.add_span_processor(SimpleSpanProcessor(_state["exporter"]))


@contextlib.contextmanager
def recording() -> Iterator[InMemorySpanExporter]:
    """The process's in-memory exporter, cleared, with spans recorded until the block ends."""
    _setup()
    found: InMemorySpanExporter = _state["exporter"]
    found.clear()
    WhileRecording.on = True
    try:
        yield found
    finally:
        WhileRecording.on = False
        found.clear()


def provider() -> Any:
    _setup()
    return _state["provider"]


def texts(span: Any) -> list[str]:
    """Every string a span carries: its name, status description, attribute keys and values,
    event names and event attributes (the places a value could leak to a tracing backend)."""
    out = [span.name, span.status.description or ""]
    for attributes in [span.attributes, *(event.attributes for event in span.events)]:
        for key, value in (attributes or {}).items():
            out.append(key)
            out.extend(str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    out.extend(event.name for event in span.events)
    return out
