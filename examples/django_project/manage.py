#!/usr/bin/env python
"""The example project's manage.py: ``python manage.py runserver``, ``python manage.py astro_db health``.

Give it ``MONGODB_URL`` (or ``DJANGO_DEBUG=1`` for the embedded in-memory backend): without a URL
the astro_db app refuses to start outside DEBUG."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astro_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
