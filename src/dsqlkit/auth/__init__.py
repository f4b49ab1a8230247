"""IAM authentication for DSQL: tokens signed locally, credentials found once.

- :mod:`dsqlkit.auth.sigv4`: ``presign_token`` / ``verify_token`` (standard library only).
- :mod:`dsqlkit.auth.credentials`: ``Credentials``, ``CredentialSource`` (environment fast path,
  botocore's chain otherwise).
- :mod:`dsqlkit.auth.tokens`: ``TokenFactory`` (cached tokens for new connections).
- :mod:`dsqlkit.auth.command`: ``dsqlkit token``.

The names are also importable from here, loaded on first use so that ``import dsqlkit.auth.sigv4``
(the endpoint) pulls in nothing else::

    from dsqlkit.auth import TokenFactory
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from typing import Any

_EXPORTS = {
    "presign_token": "sigv4",
    "verify_token": "sigv4",
    "Credential": "sigv4",
    "VerifiedToken": "sigv4",
    "TokenRejected": "sigv4",
    "Credentials": "credentials",
    "CredentialSource": "credentials",
    "CredentialsNotFound": "credentials",
    "TokenFactory": "tokens",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dsqlkit.auth' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dsqlkit.auth.{module}"), name)
