"""Django integration: add ``"astro_db.contrib.django"`` to ``INSTALLED_APPS``.

``settings.ASTRO_DB`` is a URL string or a dict in the seed's shape
(``{"url": ..., "options": {"maxPoolSize": 50}}``); without it, ``$MONGODB_URL`` or the
embedded backend. The app connects once in ``AppConfig.ready()``; ``get_database()`` returns
that ``Database`` anywhere in the project. Also here: a health view (``urls.py``), JSON error
responses (``middleware.AstroDBErrorMiddleware``), request input (``json_body(request)``,
``query_number(request, name)``: a JSON 400 for what cannot be used), ``manage.py astro_db ...``
(the astro-db CLI) and ``testing.AstroDBTestMixin``.
"""

from __future__ import annotations

from .shortcuts import DocumentNotFound, get_database, get_or_404, json_body, query_number

__all__ = ["get_database", "get_or_404", "json_body", "query_number", "DocumentNotFound"]
