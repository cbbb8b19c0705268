"""Credential masking for storage and tracking URLs (never print or log a password).

Users write passwords with ``/``, ``#``, ``:``, ``@`` and percent-escapes in them, raw or
encoded. Masking therefore takes the password from SQLAlchemy's URL parser (the one that
opens the database), from the URL's raw text between ``user:`` and the *last* ``@``, and in
percent-encoded and decoded form, and replaces every occurrence; the pattern below then
masks any other ``scheme://user:...@`` left in a message.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

# Greedy up to the last '@' of a whitespace-free run: a raw '@' or '/' in a password stays masked.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>\S*)@")


def _passwords(url: str) -> set[str]:
    found: set[str] = set()
    match = _USERINFO.search(url)
    if match and match["pw"]:
        found.add(match["pw"])
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url).password
        # SQLAlchemy splits a raw '@' in a password at the first '@' (leaving the rest in the
        # host): trust its answer only where it agrees with the raw text.
        if parsed and (not found or str(parsed) in {unquote(pw) for pw in found}):
            found.add(str(parsed))
    except Exception:  # not a URL SQLAlchemy understands: the raw form above still applies
        pass
    for pw in list(found):
        found |= {unquote(pw), quote(pw, safe=""), quote(unquote(pw), safe="")}
    # A raw '@' makes drivers read the password's tail as part of the host name, and their
    # errors quote that host: mask the pieces too (short ones would mask ordinary words).
    found |= {piece for pw in list(found) for piece in unquote(pw).split("@") if len(piece) >= 4}
    return {pw for pw in found if pw}


def mask_url(url: str | None) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``; URLs without a password unchanged."""
    if not url:
        return str(url)
    return mask_text(url, url)


def mask_text(text: str, *urls: str | None) -> str:
    """Replace every password of ``urls`` inside ``text`` (e.g. an exception message)."""
    for url in urls:
        if url:
            for password in sorted(_passwords(url), key=len, reverse=True):
                text = text.replace(password, "***")
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def describe(exc: BaseException, *urls: str | None) -> str:
    """The first line of an exception's message (or its type), passwords masked."""
    text = str(exc).strip()
    return mask_text(text.splitlines()[0] if text else type(exc).__name__, *urls)
