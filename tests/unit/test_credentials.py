"""CredentialSource: the environment without botocore, botocore's real chain otherwise.

botocore runs for real here, reading profiles from temporary files; IMDS and container lookups are
disabled through botocore's own settings so that no test touches the network.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid

import pytest
from botocore.credentials import CredentialProvider, RefreshableCredentials

from dsqlkit.auth.credentials import Credentials, CredentialsNotFound, CredentialSource

ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def unique_profile(tmp_path, access_key="AKIDPROFILE", secret="profile-secret") -> str:
    """A profile with a name of its own: the chain is cached per process per profile."""
    name = f"p{uuid.uuid4().hex}"
    with open(tmp_path / "credentials", "a") as f:
        f.write(f"[{name}]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret}\n")
    return name


def test_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert CredentialSource().get() == Credentials("AKIDENV", "env-secret", None)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "sess+/=")
    assert CredentialSource().get() == Credentials("AKIDENV", "env-secret", "sess+/=")
    # Rotation in the environment is seen at once (nothing cached on this path).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV2")
    assert CredentialSource().get().access_key == "AKIDENV2"


def test_environment_path_does_not_import_botocore():
    code = (
        "import sys, json\n"
        "from dsqlkit.auth.tokens import TokenFactory\n"
        "from dsqlkit.config import resolve_params\n"
        "p = resolve_params(host='abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws')\n"
        "t = TokenFactory(p).token()\n"
        "print(json.dumps([t.startswith(p.host), sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('botocore', 'boto3'))]))\n"
    )
    env = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s", "PATH": "/usr/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [True, []]


def test_profile_from_botocore_chain(isolated_aws, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")  # ignored: a profile was asked for
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    name = unique_profile(isolated_aws)
    creds = CredentialSource(profile=name).get()
    assert creds == Credentials("AKIDPROFILE", "profile-secret", None)


def test_chain_resolved_once_per_process(isolated_aws):
    name = unique_profile(isolated_aws)
    assert CredentialSource(profile=name).get().access_key == "AKIDPROFILE"
    (isolated_aws / "credentials").write_text("")  # the file is not read again
    assert CredentialSource(profile=name).get().access_key == "AKIDPROFILE"


class CountingProvider(CredentialProvider):
    """A real botocore provider whose credentials rotate at every refresh."""

    METHOD = "counting"

    def __init__(self, expiry_seconds=3600):
        self.loads = 0
        self.refreshes = 0
        self.expiry_seconds = expiry_seconds

    def _fetch(self):
        from datetime import datetime, timedelta, timezone

        self.refreshes += 1
        expiry = datetime.now(timezone.utc) + timedelta(seconds=self.expiry_seconds)
        return {
            "access_key": f"ASIA{self.refreshes}",
            "secret_key": f"secret{self.refreshes}",
            "token": f"token{self.refreshes}",
            "expiry_time": expiry.isoformat(),
        }

    def load(self):
        self.loads += 1
        return RefreshableCredentials.create_from_metadata(
            self._fetch(), self._fetch, method=self.METHOD
        )


def test_custom_provider_loaded_once_and_refreshed_per_call():
    provider = CountingProvider(expiry_seconds=3600)
    source = CredentialSource(provider=provider)
    assert source.get() == Credentials("ASIA1", "secret1", "token1")
    assert CredentialSource(provider=provider).get().access_key == "ASIA1"
    assert provider.loads == 1


def test_expiring_credentials_are_refreshed():
    # Expiring within botocore's mandatory refresh window: every get() refreshes.
    provider = CountingProvider(expiry_seconds=60)
    source = CredentialSource(provider=provider)
    first = source.get().access_key
    assert source.get().access_key != first
    assert provider.loads == 1


def test_custom_provider_wins_over_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert CredentialSource(provider=CountingProvider()).get().access_key == "ASIA1"


def test_no_credentials_is_a_clear_error():
    with pytest.raises(CredentialsNotFound) as info:
        CredentialSource().get()
    message = str(info.value)
    for way in ("AWS_ACCESS_KEY_ID", "profile=", "custom_credentials_provider"):
        assert way in message


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(CredentialsNotFound, match=r"profile 'nope-.*' not found"):
        CredentialSource(profile=f"nope-{uuid.uuid4().hex}").get()


async def test_aget_environment_inline(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert await CredentialSource().aget() == CredentialSource().get()


async def test_aget_runs_botocore_resolution_off_the_loop(isolated_aws):
    seen = []

    class ThreadRecordingProvider(CountingProvider):
        def load(self):
            seen.append(threading.get_ident())
            return super().load()

    provider = ThreadRecordingProvider()
    creds = await CredentialSource(provider=provider).aget()
    assert creds.access_key == "ASIA1"
    assert seen and seen[0] != threading.get_ident()
    # Resolved and fresh: later calls are answered inline, without a thread hop.
    assert (await asyncio.gather(*(CredentialSource(provider=provider).aget() for _ in range(3))))[
        0
    ] == creds
    assert provider.loads == 1


def test_credentials_repr_hides_secrets():
    text = repr(Credentials("AKIDX", "very-secret", "session-tok"))
    assert "very-secret" not in text and "session-tok" not in text and "AKIDX" in text
    assert "very-secret" not in repr(CredentialSource(provider=CountingProvider()))
