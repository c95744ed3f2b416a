"""``get_database()`` and ``get_or_404()``: what views call to reach astro_db."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import Http404

from .. import _http

__all__ = ["get_database", "get_or_404", "DocumentNotFound"]


class DocumentNotFound(Http404):  # type: ignore[misc]  # Django ships no type information
    """Raised by ``get_or_404``; ``AstroDBErrorMiddleware`` answers it with a JSON 404."""

    def __init__(self, model: str, query: Mapping[str, Any] | None = None) -> None:
        self.body = _http.not_found_body(model, query)
        super().__init__(self.body["message"])


def get_database() -> Any:
    """The project's ``Database`` (connected in ``ready()``; reconnects if that failed)."""
    from django.apps import apps

    return apps.get_app_config("astro_db").get_database()


def get_or_404(model: str, query: Mapping[str, Any], **options: Any) -> Any:
    """``get_database().find_one(model, query)``, or ``DocumentNotFound`` (a JSON 404)."""
    found = get_database().find_one(model, query, **options)
    if found is None:
        raise DocumentNotFound(model, query)
    return found
