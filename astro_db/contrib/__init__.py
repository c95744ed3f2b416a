"""Framework integrations: ``astro_db.contrib.flask`` and ``astro_db.contrib.django``.

Both share ``_http``: one table from astro_db errors to HTTP statuses and JSON bodies, and the
health report behind ``/healthz``. Importing this package imports neither framework.
"""
