"""Views on astro_db: errors raised here become JSON through AstroDBErrorMiddleware."""

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from astro_db.contrib.django import get_database, get_or_404, json_body, query_number


@csrf_exempt  # an API called with JSON; use your authentication instead
@require_POST
def create_user(request: HttpRequest) -> JsonResponse:
    """POST /users {"email", "name"} -> 201 and the user; 400 invalid; 409 email taken."""
    data = json_body(request)  # not JSON, another content type, too deep: a JSON 400
    user = get_database().create("User", data)
    return JsonResponse(user.to_dict(), status=201)


@require_GET
def user_insights(request: HttpRequest, user_id: str) -> JsonResponse:
    """GET /users/<id>/insights[?min_energy=N] -> the user's insights, newest first; 404 unknown
    user; 400 when min_energy is not a finite number."""
    get_or_404("User", {"id": user_id})
    query: dict[str, Any] = {"userId": user_id}
    if "min_energy" in request.GET:
        query["energyLevel"] = {"$gte": query_number(request, "min_energy")}
    rows = get_database().find("PlanetaryInsight", query, sort=[("date", -1)], limit=31)
    return JsonResponse({"insights": [row.to_dict() for row in rows]})
