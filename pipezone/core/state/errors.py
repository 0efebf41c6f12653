"""How the state store reports failure: one exception type, one line, the store named, its password masked.

Every other state module raises through here, so it depends on nothing else in the package; that keeps
value encoding (which rejects bad watermark tags) free of the engine and migration machinery.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


class StateStoreError(Exception):
    """A state-store failure, as one line that names the store (password masked)."""


def mask_url(url: str | URL) -> str:
    """Render a URL for messages with its password replaced by ***, even when it does not parse."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Where the password is in a malformed URL is anyone's guess: show the scheme only.
        scheme = re.match(r"[A-Za-z0-9+._-]+://", url)
        return f"{scheme.group(0)}..." if scheme else "(malformed URL)"


def one_line(exc: BaseException, secret: str | None) -> str:
    """A driver error's reason on one line, without SQLAlchemy's background link and with `secret` masked."""
    reason = str(getattr(exc, "orig", None) or exc)
    reason = reason.split("\n(Background on this error")[0]
    if secret:
        reason = reason.replace(secret, "***")
    return " ".join(reason.split())
