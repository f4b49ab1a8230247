"""TokenFactory: tokens that verify, reused within half their validity, re-signed on rotation."""

from __future__ import annotations

from dsqlkit import dsql as spec
from dsqlkit.auth.credentials import Credentials
from dsqlkit.auth.sigv4 import Credential, verify_token
from dsqlkit.auth.tokens import TokenFactory
from dsqlkit.config import resolve_params

HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
T0 = 1_800_000_000.0


class Source:
    """A credential source whose credentials the test changes (a stand-in for AWS itself)."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds

    def get(self) -> Credentials:
        return self.creds

    async def aget(self) -> Credentials:
        return self.creds


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


CREDS = Credentials("AKID", "secret", "sess")


def factory(user="admin", duration=900, creds=CREDS):
    params = resolve_params(host=HOST, user=user, token_duration_secs=duration)
    clock = Clock()
    return TokenFactory(params, Source(creds), clock=clock), clock  # type: ignore[arg-type]


def verify(token, user="admin", now=T0, secret="secret", session="sess"):
    known = {"AKID": Credential("AKID", secret, session)}
    return verify_token(
        token, host=HOST, region="us-east-1", user=user, lookup_secret=known.get, now=now
    )


def test_tokens_verify_with_the_right_action():
    admin, _ = factory()
    assert verify(admin.token()).action == spec.ACTION_ADMIN
    app, _ = factory(user="app")
    assert verify(app.token(), user="app").action == spec.ACTION_USER


def test_token_reused_within_half_its_validity_then_resigned():
    tokens, clock = factory(duration=900)
    first = tokens.token()
    clock.now = T0 + 449
    assert tokens.token() is first
    clock.now = T0 + 450
    second = tokens.token()
    assert second != first
    assert verify(second, now=T0 + 450 + 899).expires_at == T0 + 450 + 900


def test_token_resigned_when_credentials_change():
    tokens, _ = factory()
    first = tokens.token()
    tokens.source.creds = Credentials("AKID", "secret", "rotated")  # type: ignore[attr-defined]
    second = tokens.token()
    assert second != first and "rotated" in second
    assert verify(second, session="rotated").access_key == "AKID"


def test_clock_going_backwards_resigns():
    tokens, clock = factory()
    first = tokens.token()
    clock.now = T0 - 3600
    assert tokens.token() != first


async def test_atoken_matches_token():
    tokens, _ = factory()
    assert await tokens.atoken() == tokens.token()


def test_real_credential_source_from_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "sess")
    token = TokenFactory(resolve_params(host=HOST, token_duration_secs=60)).token()
    assert "X-Amz-Expires=60&" in token
    assert verify(token, now=None).access_key == "AKID"
    assert "secret" not in repr(TokenFactory(resolve_params(host=HOST)))
