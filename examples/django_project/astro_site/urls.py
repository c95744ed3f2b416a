from django.urls import include, path

urlpatterns = [
    path("", include("astro_db.contrib.django.urls")),  # /healthz
    path("", include("insights.urls")),
]
