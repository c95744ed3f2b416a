"""Backends other than a MongoDB server: the embedded one (``embedded``), the only module of
astro_db that imports mongomock-ng, a test double used as an in-process database."""
