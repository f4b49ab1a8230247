"""The IAM identities the local endpoint trusts: whose tokens it accepts, and their ARNs.

Stored in ``<data_dir>/credentials.json`` (mode 0600), created on first start with a generated
admin identity. Format (``identities`` is optional; add your own entries there)::

    {
      "admin": {"access_key": "AKIA...", "secret_key": "...",
                "arn": "arn:aws:iam::000000000000:user/dsqlkit-local"},
      "identities": [
        {"access_key": "AKIAAPPEXAMPLE", "secret_key": "...",
         "arn": "arn:aws:iam::123456789012:role/app",
         "session_token": "...",                     # optional: temporary credentials
         "expiration": "2026-09-01T12:00:00Z"}       # optional: ISO 8601 or epoch seconds
      ]
    }

With ``trust_environment``, the process's ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN`` are trusted too, as ``arn:aws:iam::000000000000:user/environment``.

Example::

    ids = Identities.load_or_create(data_dir, trust_environment=False)
    token = presign_token(..., access_key=ids.admin_credential.access_key,
                          secret_key=ids.admin_credential.secret_key)
    verify_token(token, ..., lookup_secret=ids.lookup)
"""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from dsqlkit.auth.sigv4 import Credential

FILE_NAME = "credentials.json"
ADMIN_ARN = "arn:aws:iam::000000000000:user/dsqlkit-local"
ENVIRONMENT_ARN = "arn:aws:iam::000000000000:user/environment"
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class Identities:
    """Access key -> :class:`~dsqlkit.auth.sigv4.Credential`, as ``verify_token`` wants."""

    def __init__(self, admin: Credential, others: Mapping[str, Credential] | None = None) -> None:
        self.admin_credential = admin
        self._by_key: dict[str, Credential] = dict(others or {})
        self._by_key[admin.access_key] = admin

    def __repr__(self) -> str:
        return f"<Identities admin={self.admin_credential.access_key} count={len(self._by_key)}>"

    def lookup(self, access_key: str) -> Credential | None:
        """The credential for ``access_key``, or None if the endpoint does not trust it."""
        return self._by_key.get(access_key)

    @classmethod
    def load_or_create(
        cls,
        data_dir: Path,
        *,
        trust_environment: bool,
        environ: Mapping[str, str] = os.environ,
    ) -> Identities:
        """Read ``<data_dir>/credentials.json``, creating it with a new admin identity if absent."""
        path = Path(data_dir) / FILE_NAME
        if not path.exists():
            _write(path, {"admin": _generate_admin(), "identities": []})
        try:
            data = json.loads(path.read_text())
            admin = _credential(data["admin"])
            others = {c.access_key: c for c in map(_credential, data.get("identities", []))}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: not a valid dsqlkit credentials file ({exc}); fix it as described in "
                "dsqlkit.local.identities, or delete it to generate a new admin identity"
            ) from None
        if trust_environment:
            env = _from_environment(environ)
            if env is not None:
                others.setdefault(env.access_key, env)
        return cls(admin, others)


def _generate_admin() -> dict[str, str]:
    key = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    return {"access_key": key, "secret_key": secret, "arn": ADMIN_ARN}


def _credential(entry: Mapping[str, Any]) -> Credential:
    expiration = entry.get("expiration")
    expires_at: float | datetime | None
    if expiration is None or isinstance(expiration, (int, float)):
        expires_at = expiration
    else:
        expires_at = datetime.fromisoformat(str(expiration).replace("Z", "+00:00"))
        if expires_at.tzinfo is None:
            raise ValueError(f"expiration {expiration!r} needs a time zone (e.g. Z)")
    return Credential(
        access_key=str(entry["access_key"]),
        secret_key=str(entry["secret_key"]),
        session_token=entry.get("session_token"),
        arn=str(entry["arn"]),
        expires_at=expires_at,
    )


def _from_environment(environ: Mapping[str, str]) -> Credential | None:
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    return Credential(key, secret, environ.get("AWS_SESSION_TOKEN") or None, ENVIRONMENT_ARN)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(path, 0o600)
