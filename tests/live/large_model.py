"""A model whose documents can be megabytes (a scan's bytes), for the large-create tests: its
``data`` has no bound, so ``ops.sizes`` measures it on every create; its title is bounded."""

from __future__ import annotations

from typing import Any

from mongoengine import fields as me

from astro_db.models import AstroDocument
from astro_db.models.fields import TextField

Scan: Any = type("Scan", (AstroDocument,), {
    "title": TextField(max_length=100), "data": me.BinaryField(), "meta": {"collection": "scans"}})

LARGE = 2 * 1024 * 1024 + 128 * 1024  # bytes of data: above ops.sizes.LARGE_DOCUMENT (2 MiB)
