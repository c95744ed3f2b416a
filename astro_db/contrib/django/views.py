"""The health view: ``db.health()`` as JSON, 200 when ok or degraded, 503 when down."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .. import _http

__all__ = ["health"]


@never_cache  # type: ignore[untyped-decorator]  # Django ships no type information
@require_safe  # type: ignore[untyped-decorator]  # Django ships no type information
def health(request: HttpRequest) -> JsonResponse:
    """GET/HEAD ``/healthz``: the database's health report (``settings.ASTRO_DB_HEALTH_DETAIL``
    False keeps only status and latency)."""
    database = apps.get_app_config("astro_db").database  # health() connects, within a bound
    report = _http.health_report(database, detail=getattr(settings, "ASTRO_DB_HEALTH_DETAIL", True))
    return JsonResponse(report, status=_http.health_status(report))
