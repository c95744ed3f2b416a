"""Security: role-based access (``access``), the audit trail (``audit``), field encryption
(``crypto``, ``rotation``) and masking of personal data in logs and errors (``masking``)."""

from __future__ import annotations

from .access import PERMISSIONS, ROLES, SELF, Actor
from .audit import AUDIT_COLLECTION, request_context
from .crypto import UNREADABLE, is_unreadable, new_key
from .masking import MaskingFilter, mask_document, mask_text

__all__ = [
    "Actor",
    "PERMISSIONS",
    "ROLES",
    "SELF",
    "AUDIT_COLLECTION",
    "request_context",
    "new_key",
    "UNREADABLE",
    "is_unreadable",
    "MaskingFilter",
    "mask_document",
    "mask_text",
]
