"""URLs safe to print: `redact_url` masks credentials and leaves everything else exactly as given. Stdlib only."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

# a query or fragment parameter whose name contains one of these carries a credential
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.IGNORECASE)
# optional "scheme://" or "//", then the authority: up to the first "/", "?" or "#"
_AUTHORITY = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?([^/?#]*)")


def redact_url(url: str) -> str:
    """`url` with the password of its userinfo (the whole userinfo when it has no password: a bare token) and
    the values of query and fragment parameters named like a key, token, secret, password, auth or signature
    replaced by `***`. A URL without credentials comes back unchanged; so does a URL without a scheme."""
    m = _AUTHORITY.match(url)
    prefix, authority, rest = m.group(1) or "", m.group(2), url[m.end():]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:***@{host}" if colon else f"***@{host}"
    rest, hash_, fragment = rest.partition("#")
    path, question, query = rest.partition("?")
    return prefix + authority + path + question + _mask(query) + hash_ + _mask(fragment)


def _mask(params: str) -> str:
    def one(pair: str) -> str:
        name, eq, value = pair.partition("=")
        return f"{name}=***" if eq and value and _SECRET_NAME.search(unquote_plus(name)) else pair

    return "&".join(one(p) for p in params.split("&")) if "=" in params else params
