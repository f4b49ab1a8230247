"""Tokens for new connections: signed locally, cached, re-signed when needed.

DSQL checks a token only when a connection opens and accepts one token for many connections, so a
:class:`TokenFactory` reuses its last token while **less than half of its validity has passed**
(for the default 900 s: for 450 s). The remaining half is the margin for clock skew between this
machine and the server and for slow connects. A new token is signed earlier when the credentials
change (rotation, refreshed temporary credentials). Signing costs one HMAC and one SHA-256 (the
SigV4 key is cached per secret, day and region); reusing costs a few comparisons.

Example::

    from dsqlkit.config import resolve_params
    from dsqlkit.auth.tokens import TokenFactory
    factory = TokenFactory(resolve_params(host="abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"))
    password = factory.token()            # sync drivers
    password = await factory.atoken()     # async drivers
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dsqlkit.auth.credentials import Credentials, CredentialSource
from dsqlkit.auth.sigv4 import presign_token
from dsqlkit.config import ConnectParams

#: Fraction of a token's validity during which it is reused.
REUSE_FRACTION = 0.5


class TokenFactory:
    """Auth tokens for the connections of one ``ConnectParams``: ``.token()`` / ``.atoken()``.

    ``source`` defaults to ``CredentialSource(params.profile, params.custom_credentials_provider)``.
    ``clock`` (epoch seconds) is for tests. Safe to share between threads and tasks: the cache is
    one tuple replaced at once, so the worst case of a race is one extra signature.

    Example::

        factory = TokenFactory(params)
        conn = psycopg.connect(host=params.host, user=params.user, password=factory.token())
    """

    def __init__(
        self,
        params: ConnectParams,
        source: CredentialSource | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.params = params
        self.source = source or CredentialSource(params.profile, params.custom_credentials_provider)
        self._clock = clock
        self._reuse_for = params.token_duration_secs * REUSE_FRACTION
        # (credentials, signed at, token) of the last token signed
        self._cached: tuple[Credentials, float, str] | None = None

    def __repr__(self) -> str:
        return f"TokenFactory(host={self.params.host!r}, user={self.params.user!r})"

    def token(self) -> str:
        """A valid token for a new connection (cached; may fetch credentials, see ``source``)."""
        return self._token_for(self.source.get())

    async def atoken(self) -> str:
        """Async twin of :meth:`token`: credential I/O, if any, runs off the event loop."""
        return self._token_for(await self.source.aget())

    def _token_for(self, credentials: Credentials) -> str:
        now = self._clock()
        cached = self._cached
        if (
            cached is not None
            and cached[0] == credentials
            and 0 <= now - cached[1] < self._reuse_for
        ):
            return cached[2]
        params = self.params
        token = presign_token(
            host=params.host,
            region=params.region,
            action=params.action,
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            session_token=credentials.token,
            expires=params.token_duration_secs,
            now=now,
        )
        self._cached = (credentials, now, token)
        return token
