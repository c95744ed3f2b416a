"""Minimal settings for a Django project on astro_db (no SQL database, no ORM models).

``ASTRO_DB`` takes the seed's dict (or just a URL string). With no URL here and no
$MONGODB_URL the project refuses to start, unless DEBUG (``DJANGO_DEBUG=1``): then astro_db
runs on its embedded in-memory backend, whose data is lost at exit.
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "astro_db.contrib.django",
    "insights",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "astro_db.contrib.django.middleware.AstroDBErrorMiddleware",
]
ROOT_URLCONF = "astro_site.urls"
DATABASES = {}
USE_TZ = True

ASTRO_DB = {
    "url": os.environ.get("MONGODB_URL"),
    "options": {"maxPoolSize": 50, "serverSelectionTimeoutMS": 5000},
}
