"""Fixtures for the integration tests: a fresh embedded URL and an unreachable one."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture
def embedded_url() -> str:
    """A URL of a fresh embedded database (each Database built from it has its own store)."""
    return f"mongomock://localhost/astro_it_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def down_url() -> Iterator[str]:
    """A loopback URL where nothing listens: the port stays bound (so nothing else takes it)
    but never listens, so every connection is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"mongodb://127.0.0.1:{sock.getsockname()[1]}/astro"
    finally:
        sock.close()
