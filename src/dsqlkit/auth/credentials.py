"""AWS credentials for signing tokens: the environment fast path, else botocore's chain, once.

When ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` are set (Lambda always sets them) and no
profile or custom provider is asked for, the credentials are read from the environment without
importing botocore. Otherwise botocore's credential chain (profiles, SSO, containers, IMDS, a custom
``CredentialProvider``) is resolved once per process per (profile, provider), and its refreshable
credentials object is asked for a frozen snapshot on every call, so that rotation is picked up.

Example::

    from dsqlkit.auth.credentials import CredentialSource
    creds = CredentialSource(profile="dev").get()
    creds.access_key
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from typing import Any


class CredentialsNotFound(RuntimeError):
    """No AWS credentials could be found; the message lists the ways to provide them."""


_HOW_TO_PROVIDE = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary "
    "credentials), pass profile='<name>' for a profile of ~/.aws/config (for SSO, run "
    "`aws sso login --profile <name>` first), pass custom_credentials_provider=<a botocore "
    "CredentialProvider>, or run where a container or instance role provides them"
)


@dataclass(frozen=True, repr=False)
class Credentials:
    """One set of AWS credentials; the repr shows the access key id only.

    Example::

        Credentials("AKIDEXAMPLE", "secret", token=None)
    """

    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        token = "<hidden>" if self.token else None
        return f"Credentials(access_key={self.access_key!r}, secret_key=<hidden>, token={token})"


#: (profile, provider) -> botocore credentials object, resolved once per process.
_RESOLVED: dict[tuple[str | None, Any], Any] = {}
_RESOLVE_LOCK = threading.Lock()


class CredentialSource:
    """Where tokens get their credentials: ``.get()`` (sync) and ``.aget()`` (async twin).

    ``profile`` and ``provider`` (a botocore ``CredentialProvider``, the official connector's
    ``custom_credentials_provider``) select botocore's chain; without them the environment is read
    first, and botocore's default chain is the fallback.

    Example::

        source = CredentialSource()
        creds = source.get()            # in sync code
        creds = await source.aget()     # in async code: never blocks the event loop
    """

    def __init__(self, profile: str | None = None, provider: Any = None) -> None:
        self.profile = profile
        self.provider = provider

    def __repr__(self) -> str:
        provider = type(self.provider).__name__ if self.provider is not None else None
        return f"CredentialSource(profile={self.profile!r}, provider={provider})"

    def get(self) -> Credentials:
        """Current credentials; botocore may do I/O here (first resolution, refresh)."""
        return self._from_environment() or _freeze(self._botocore_credentials())

    async def aget(self) -> Credentials:
        """Async twin of :meth:`get`: anything that may do I/O runs in a worker thread."""
        from_env = self._from_environment()
        if from_env is not None:
            return from_env
        resolved = _RESOLVED.get(self._key())
        if resolved is not None and not _may_refresh(resolved):
            return _freeze(resolved)
        import asyncio  # here, not at the top: importing asyncio costs sync users ~25 ms

        return await asyncio.to_thread(self.get)

    def _from_environment(self) -> Credentials | None:
        if self.profile is not None or self.provider is not None:
            return None
        env = os.environ
        access_key = env.get("AWS_ACCESS_KEY_ID")
        secret_key = env.get("AWS_SECRET_ACCESS_KEY")
        if not access_key or not secret_key:
            return None
        return Credentials(access_key, secret_key, env.get("AWS_SESSION_TOKEN") or None)

    def _key(self) -> tuple[str | None, Any]:
        return (self.profile, self.provider)

    def _botocore_credentials(self) -> Any:
        key = self._key()
        resolved = _RESOLVED.get(key)
        if resolved is None:
            with _RESOLVE_LOCK:  # one resolution per process, even under concurrent first calls
                resolved = _RESOLVED.get(key)
                if resolved is None:
                    resolved = _resolve(self.profile, self.provider)
                    _RESOLVED[key] = resolved
        return resolved


def _resolve(profile: str | None, provider: Any) -> Any:
    """botocore's credential chain for this profile, with ``provider`` tried first."""
    try:
        import botocore.exceptions
        import botocore.session
    except ImportError:
        raise CredentialsNotFound(
            f"No AWS credentials in the environment and botocore is not installed: either "
            f"{_HOW_TO_PROVIDE}; profiles and providers need `pip install dsqlkit[botocore]`"
        ) from None
    try:
        session = botocore.session.Session(profile=profile)
        if provider is not None:
            # Same place as the official connector: before the environment variables.
            session.get_component("credential_provider").insert_before("env", provider)
        credentials = session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise CredentialsNotFound(
            f"AWS profile {profile!r} not found in ~/.aws/config or ~/.aws/credentials: "
            f"fix the name, or {_HOW_TO_PROVIDE}"
        ) from None
    if credentials is None:
        where = f" (profile {profile!r})" if profile else ""
        raise CredentialsNotFound(f"No AWS credentials found{where}: {_HOW_TO_PROVIDE}")
    return credentials


def _freeze(botocore_credentials: Any) -> Credentials:
    frozen = botocore_credentials.get_frozen_credentials()
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def _may_refresh(botocore_credentials: Any) -> bool:
    """Whether reading these credentials may do I/O now (refreshable and due for a refresh)."""
    refresh_needed = getattr(botocore_credentials, "refresh_needed", None)
    return bool(refresh_needed()) if refresh_needed is not None else False
