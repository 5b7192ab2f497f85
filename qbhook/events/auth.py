"""Who may post events.

Each sender authenticates the way it can: *arr apps with HTTP Basic (Readarr has nothing
else) or a custom header, the hook script with a token header. cross-seed up to v6.13 can
only use its URL: it posts with fetch(), which refuses URLs carrying user:password, and
has no header setting (custom headers came with cross-seed PR #1104, 2026). So its endpoint
alone also takes ``?token=``, at the price of the token showing in access logs.
The *arr/cross-seed convention, an ``X-Api-Key`` header or ``?apikey=``, carries the
same token on every endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

TOKEN_HEADER = "X-Qbhook-Token"
API_KEY_HEADER = "X-Api-Key"
API_KEY_PARAM = "apikey"


@dataclass(frozen=True)
class AuthConfig:
    """Credentials accepted on event endpoints. With none configured nothing is accepted."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def of_server(cls, srv) -> AuthConfig:
        """The credentials of ``server:`` in the config (a ``qbhook.config.ServerConfig``)."""
        return cls(username=srv.username, password=srv.password, token=srv.token)

    @property
    def configured(self) -> bool:
        """The one rule for "some request can be accepted": ``serve`` warns by it too. HTTP Basic
        needs both halves; a password alone is a config error (``qbhook.config``)."""
        return bool(self.token) or bool(self.username and self.password)

    def allows(self, headers: Mapping[str, str], query_token: str | None = None, api_key: str | None = None) -> bool:
        if not self.configured:
            return False
        authorization = headers.get("Authorization", "")
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if self.token:
            offers = (
                headers.get(TOKEN_HEADER),
                headers.get(API_KEY_HEADER),
                credentials if scheme == "bearer" else None,
                query_token,
                api_key,
            )
            for offered in offers:
                if offered and _same(offered.strip(), self.token):
                    return True
        if self.username and self.password and scheme == "basic":
            user, password = _basic(credentials.strip())
            if user is not None:
                # Both compared every time: no early exit that would time which one failed.
                user_ok = _same(user, self.username)
                password_ok = _same(password, self.password)
                return user_ok & password_ok
        return False


def _same(offered: str, expected: str) -> bool:
    # Bytes: compare_digest rejects non-ASCII str, and a TypeError must not become a 500.
    return hmac.compare_digest(offered.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _basic(credentials: str) -> tuple[str | None, str]:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None, ""
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, "")
