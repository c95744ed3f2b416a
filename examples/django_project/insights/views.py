"""Views on astro_db: errors raised here become JSON through AstroDBErrorMiddleware."""

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from astro_db import errors
from astro_db.contrib.django import get_database, get_or_404


@csrf_exempt  # an API called with JSON; use your authentication instead
@require_POST
def create_user(request: HttpRequest) -> JsonResponse:
    """POST /users {"email", "name"} -> 201 and the user; 400 invalid; 409 email taken."""
    try:
        data = json.loads(request.body or b"null")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise errors.ValidationError(errors={"body": "send a JSON object"})
    user = get_database().create("User", data)
    return JsonResponse(user.to_dict(), status=201)


@require_GET
def user_insights(request: HttpRequest, user_id: str) -> JsonResponse:
    """GET /users/<id>/insights -> the user's insights, newest first; 404 unknown user."""
    get_or_404("User", {"id": user_id})
    rows = get_database().find("PlanetaryInsight", {"userId": user_id}, sort=[("date", -1)], limit=31)
    return JsonResponse({"insights": [row.to_dict() for row in rows]})
