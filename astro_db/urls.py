"""Masking the secrets of connection URLs, parsed the way PyMongo parses them.

A MongoDB URL is ``scheme://[userinfo@]hosts[/database][?options]``. PyMongo takes the userinfo
up to the *last* ``@`` of the authority, so a password holding an unescaped ``/``, ``@``, ``:``,
``?`` or ``#`` still ends at that ``@``; ``mask_url`` does the same (and, when unsure, hides more,
never less). It hides the password (for ``MONGODB-AWS`` the whole userinfo: access key and
secret), and the value of every option that carries a secret (``authMechanismProperties``,
which may hold ``AWS_SESSION_TOKEN``, ``tlsCertificateKeyFilePassword``, ...), whatever their
case or percent-encoding. ``mask_urls_in_text`` does it for every URL inside free text (log
messages, exception texts). This module imports nothing from astro_db so every layer can use it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MASK", "SECRET_OPTIONS", "mask_url", "mask_urls_in_text", "userinfo_of", "unescaped_userinfo"]

MASK = "***"
SECRET_OPTIONS = frozenset({
    "authmechanismproperties", "tlscertificatekeyfilepassword", "sslclientcertificatekeypassword",
    "sslpemkeypassword", "password", "pass", "pwd", "secret", "token", "apikey", "api_key",
    "aws_session_token", "awssecretaccesskey",
    # astro_db's own secret settings, which DatabaseConfig refuses in a URL: masked if given anyway
    "encryptionkey", "encryption_key", "encryptionkeys", "encryption_keys", "cachesecret", "cache_secret",
    "tokensecret", "token_secret", "kmsproviders", "kms_providers",
})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# where a URL starts inside free text: a known scheme, not glued to a longer word
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.\-])(?:mongodb(?:\+srv)?|mongomock|rediss?|unix)://", re.IGNORECASE)
_RESERVED = re.compile(r"[@/?#\[\]]")
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_TEXT_END = re.compile(r"\s")
# a URI option: after ?, & or ;, a name, =, and a value up to the next separator. A ``#`` does
# not end it: PyMongo reads ``password=a#b`` as ``a#b`` (no fragment), so a secret's tail after
# a ``#`` is hidden with it
_OPTION = re.compile(r"(?<=[?&;])([^=&;#?]+)=([^&;]*)")


def mask_url(url: str | None) -> str:
    """``url`` with its password and secret-bearing options replaced by ``***`` (safe to show).

    An ``@`` inside an option value (``appName=a@b``) is taken for the end of the userinfo, as
    the hosts cannot be told apart from a password holding ``/`` and ``?``: the hosts are then
    hidden too, which is the safe way to be wrong.
    """
    if not url:
        return ""
    lead = len(url) - len(url.lstrip())  # urlsplit (and PyMongo's parser) skip leading blanks too
    scheme = _SCHEME.match(url, lead)
    if scheme is None:
        # not a URL this module can read (no scheme, a typo in it): anything before an "@" may be
        # a user name and password, so all of it is hidden
        userinfo, at, after = url.rpartition("@")
        return (MASK + at + _mask_options(after)) if at else _mask_options(url)
    head, rest = url[:scheme.end()], url[scheme.end():]
    userinfo, at, after = rest.rpartition("@")
    aws = any(_decoded(name) == "authmechanism" and _decoded(value).upper() == "MONGODB-AWS"
              for name, value in _OPTION.findall(rest))
    if userinfo and ":" not in userinfo and head.lower().startswith(("redis", "unix")):
        # redis-py reads redis://SECRET@host as a user name, but clients before Redis 6's ACLs
        # took it for the password, and it is written that way: shown whole, it might be one
        return head + MASK + at + _mask_options(after)
    return head + _mask_userinfo(userinfo, aws) + at + _mask_options(after)


def userinfo_of(url: str) -> str:
    """The userinfo of ``url`` as PyMongo reads it: everything before the last ``@``."""
    scheme = _SCHEME.match(url)
    return url[scheme.end():].rpartition("@")[0] if scheme else ""


def unescaped_userinfo(url: str) -> bool:
    """Whether the user name or password of ``url`` holds a character PyMongo needs escaped
    (``@ / ? # [ ]``, a second ``:``, or a ``%`` that starts no escape)."""
    userinfo = userinfo_of(url)
    return bool(_RESERVED.search(userinfo)) or userinfo.count(":") > 1 or bool(_BARE_PERCENT.search(userinfo))


def mask_urls_in_text(text: str) -> str:
    """``text`` with every ``mongodb://``, ``mongodb+srv://``, ``mongomock://``, ``redis(s)://``
    and ``unix://`` URL masked (the cache bus and store take Redis URLs, a Unix socket's too).

    A URL in free text ends at whitespace (which a URL cannot hold unescaped); everything up to
    the last ``@`` before that end is treated as userinfo, so quotes or brackets glued to the URL
    can only make more of it hidden.
    """
    out: list[str] = []
    position = 0
    for match in _URL_IN_TEXT.finditer(text):
        if match.start() < position:
            continue
        end_match = _TEXT_END.search(text, match.end())
        end = end_match.start() if end_match else len(text)
        out.append(text[position:match.start()])
        out.append(mask_url(text[match.start():end]))
        position = end
    out.append(text[position:])
    return "".join(out)


def _decoded(text: str) -> str:
    return unquote(text).strip().lower()


def _mask_userinfo(userinfo: str, aws: bool) -> str:
    """``user:***`` (``***:***`` for MONGODB-AWS, whose user name is the access key id)."""
    if not userinfo:
        return userinfo
    user, colon, _password = userinfo.partition(":")
    if aws:
        return MASK + (":" + MASK if colon else "")
    return _mask_options(user) + (":" + MASK if colon else "")


def _mask_options(text: str) -> str:
    """Every ``name=value`` option of ``text`` whose name carries a secret, valued ``***``."""
    return _OPTION.sub(lambda m: f"{m[1]}={MASK}" if _decoded(m[1]) in SECRET_OPTIONS else m[0], text)
