"""``AstroDBErrorMiddleware``: astro_db errors raised by views become JSON responses.

The statuses are those of ``astro_db.contrib._http`` (400 validation/query, 403 permission,
404 from ``get_or_404``, 409 duplicate, 503 database unavailable), the same as the Flask
extension's. Other exceptions, and other 404s, are left to Django.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from ... import errors
from .. import _http
from .shortcuts import DocumentNotFound

__all__ = ["AstroDBErrorMiddleware"]

_request_log = logging.getLogger("django.request")  # where Django logs the 500s it renders itself


class AstroDBErrorMiddleware:
    """Add to ``MIDDLEWARE`` to answer astro_db errors with JSON."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        if isinstance(exception, DocumentNotFound):
            return JsonResponse(exception.body, status=404)
        if isinstance(exception, errors.AstroDBError):
            status, body = _http.error_response(exception, _request_log)
            response = JsonResponse(body, status=status)
            for name, value in _http.response_headers(status).items():
                response[name] = value
            return response
        return None
