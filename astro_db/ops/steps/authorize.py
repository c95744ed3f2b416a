"""Step 2, authorize: may this actor make this call? Decided before any I/O.

The permission a call needs comes from one table (``ops.operation.PERMISSIONS``); per-model
permissions are granted by ``access.PERMISSIONS`` and give a ``Guard`` (the ``self`` scope),
global ones by ``access.GLOBAL_PERMISSIONS``. The trusted app (no actor) may do everything.
"""

from __future__ import annotations

from ...registry import ModelInfo
from ...security import access
from ..operation import MODEL_PERMISSIONS, PERMISSIONS, permission_of

__all__ = ["check"]


def check(actor: access.Actor | None, name: str, info: ModelInfo | None = None, *, permission: str | None = None) -> access.Guard:
    """Authorize the call ``name`` (on ``info`` for per-model permissions); its Guard, or raise
    ``PermissionDeniedError``. ``permission`` overrides the table for a call's special case
    (e.g. ``delete_many(all=True)`` needs ``DELETE_ALL``)."""
    needed = permission or PERMISSIONS.get(name) or permission_of(name)  # the lookup, then the refusal
    if actor is None:  # the trusted app may do everything: what access.authorize gives it, without the call
        return access.TRUSTED
    if needed in MODEL_PERMISSIONS and info is not None:
        return access.authorize(actor, info, needed, call=name)
    access.authorize_global(actor, needed, call=name)
    return access.authorize(None, info, needed)

