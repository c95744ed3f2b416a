"""Minimal settings for a Django project on astro_db (no SQL database, no ORM models).

``ASTRO_DB`` takes the seed's dict (or just a URL string). With no URL here and no
$MONGODB_URL the project refuses to start, unless DEBUG (``DJANGO_DEBUG=1``): then astro_db
runs on its embedded in-memory backend (chosen here explicitly), whose data is lost at exit.
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
    # with DEBUG and no URL: the embedded backend, chosen explicitly (no EmbeddedDatabaseWarning)
    "url": os.environ.get("MONGODB_URL") or ("mongomock://localhost/astro_site" if DEBUG else None),
    "options": {"maxPoolSize": 50, "serverSelectionTimeoutMS": 5000},
}
