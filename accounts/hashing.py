"""Random secrets and their stored form: the sha256 of a secret, hex (secrets are long and random, so a fast hash
is enough; nothing stored lets anyone recover or replay one)."""

from __future__ import annotations

import hashlib
import secrets


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret of ``nbytes`` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """The sha256 of ``secret`` (UTF-8), hex: what the database keeps."""
    return hashlib.sha256(secret.encode()).hexdigest()
