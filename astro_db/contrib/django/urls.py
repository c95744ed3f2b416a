"""``path("", include("astro_db.contrib.django.urls"))`` serves ``/healthz``."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "astro_db"
urlpatterns = [path("healthz", views.health, name="health")]
