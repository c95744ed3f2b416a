"""Masking of personal values for logs and ``to_dict(masked=True)``: pure functions, no state.

Kinds: ``"email"`` keeps the first letter and the domain (``a***@example.com``), ``"name"``
keeps the first letter (``A***``), anything else (``"secret"``) becomes ``"***"``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MASK", "field_mask_kind", "mask_value"]

MASK = "***"


def mask_value(kind: str, value: Any) -> Any:
    """Return ``value`` masked as ``kind``; None stays None so absent stays visibly absent."""
    if value is None:
        return None
    if kind == "email" and isinstance(value, str) and "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}{MASK}@{domain}"
    if kind == "name" and isinstance(value, str) and value:
        return f"{value[:1]}{MASK}"
    return MASK


def field_mask_kind(field: Any) -> str | None:
    """The mask kind a field declares: ``mask="..."`` or ``sensitive=True`` (a secret), else None."""
    kind: str | None = getattr(field, "mask", None)
    if kind:
        return kind
    return "secret" if getattr(field, "sensitive", False) else None
