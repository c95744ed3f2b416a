"""``get_database()``, ``get_or_404()``, ``json_body()`` and ``query_number()``: what views call to
reach astro_db and read request input (a body or number it cannot use is a JSON 400)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import Http404

from .. import _http

__all__ = ["get_database", "get_or_404", "json_body", "query_number", "DocumentNotFound"]


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


def json_body(request: Any, want: type | None = dict) -> Any:
    """The request's JSON body (an object by default), or a ``ValidationError``, which
    ``AstroDBErrorMiddleware`` answers with a JSON 400: another content type, an empty body,
    text that is not JSON, ``NaN``, or nesting deeper than ``_http.MAX_BODY_DEPTH``."""
    return _http.json_body(request.body, request.content_type, want=want)


def query_number(request: Any, name: str, *, integer: bool = False) -> float | int:
    """``request.GET[name]`` as a finite number, or a JSON 400 naming it (``nan``, ``inf``...)."""
    return _http.query_number(request.GET, name, integer=integer)
