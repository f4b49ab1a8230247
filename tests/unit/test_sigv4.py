"""SigV4 tokens: byte-identical to botocore, and verified the way DSQL verifies them.

botocore is the real signer (no network: presigning is local); only its clock is frozen, by
patching ``botocore.auth.get_current_datetime``, the function its SigV4 signers read the time from.
"""

from __future__ import annotations

import datetime as dt
import itertools
from functools import cache
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsqlkit import dsql as spec
from dsqlkit.auth.sigv4 import (
    MAX_TOKEN_LENGTH,
    Credential,
    TokenRejected,
    presign_token,
    verify_token,
)

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION = "IQoJb3JpZ2luX2VjE+/abc=="  # needs encoding: + / =
HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
REGION = "us-east-1"
T0 = dt.datetime(2026, 3, 4, 5, 6, 7)  # naive UTC, like botocore's clock
T0_TS = T0.replace(tzinfo=dt.timezone.utc).timestamp()


@cache
def botocore_client(session_token: str | None):
    import botocore.session

    return botocore.session.Session().create_client(
        "dsql",
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        aws_session_token=session_token,
    )


def botocore_token(host, region, action, session_token, expires, when):
    client = botocore_client(session_token)
    method = (
        client.generate_db_connect_admin_auth_token
        if action == spec.ACTION_ADMIN
        else client.generate_db_connect_auth_token
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        return method(host, region, expires)


HOSTS = [
    HOST,
    "abcdefghijklmnopqrstuvwxyz.dsql-fips.eu-west-2.on.aws",
    "localhost",
    "localhost:5432",
    "127.0.0.1:15432",
    "Mixed.Case.Example.com",
    "example.com:443",
    "[::1]:5432",
]
CASES = list(
    itertools.product(
        HOSTS,
        ["us-east-1", "ap-southeast-2"],
        [spec.ACTION_ADMIN, spec.ACTION_USER],
        [None, SESSION, "a b&c%d"],
        [1, 900, spec.TOKEN_MAX_EXPIRES],
    )
)[::5]  # a spread of 58 combinations: every value of every axis appears several times


@pytest.mark.parametrize(("host", "region", "action", "session_token", "expires"), CASES)
def test_presign_is_byte_identical_to_botocore(host, region, action, session_token, expires):
    when = T0 + dt.timedelta(seconds=len(host) * 3601)  # varies date and time across cases
    expected = botocore_token(host, region, action, session_token, expires, when)
    got = presign_token(
        host=host,
        region=region,
        action=action,
        access_key=AKID,
        secret_key=SECRET,
        session_token=session_token,
        expires=expires,
        now=when,
    )
    assert got == expected


def test_presign_accepts_epoch_seconds_and_aware_datetimes():
    kwargs = dict(host=HOST, region=REGION, action=spec.ACTION_ADMIN, access_key=AKID)
    by_naive = presign_token(secret_key=SECRET, now=T0, **kwargs)
    by_epoch = presign_token(secret_key=SECRET, now=T0_TS, **kwargs)
    paris = dt.timezone(dt.timedelta(hours=1))
    by_aware = presign_token(
        secret_key=SECRET, now=T0.replace(tzinfo=dt.timezone.utc).astimezone(paris), **kwargs
    )
    assert by_naive == by_epoch == by_aware


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": "Connect"}, "action must be one of"),
        ({"expires": 0}, "expires must be 1..604800"),
        ({"expires": spec.TOKEN_MAX_EXPIRES + 1}, "expires must be 1..604800"),
        ({"expires": "900"}, "expires must be an int"),
    ],
)
def test_presign_rejects_bad_arguments(change, message):
    kwargs = dict(host=HOST, region=REGION, action=spec.ACTION_ADMIN, access_key=AKID)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        presign_token(secret_key=SECRET, **kwargs)


# --- verification ----------------------------------------------------------------------------------

ARN = "arn:aws:iam::123456789012:role/app"
KNOWN = {
    AKID: Credential(AKID, SECRET, arn=ARN),
    "ASIATEMP": Credential("ASIATEMP", SECRET, SESSION, ARN, expires_at=T0_TS + 3600),
}


def sign(
    *,
    host=HOST,
    region=REGION,
    action=spec.ACTION_ADMIN,
    access_key=AKID,
    secret=SECRET,
    session=None,
    expires=900,
    now=T0_TS,
):
    return presign_token(
        host=host,
        region=region,
        action=action,
        access_key=access_key,
        secret_key=secret,
        session_token=session,
        expires=expires,
        now=now,
    )


def verify(token, *, host=HOST, region=REGION, user="admin", now=T0_TS + 10, **kwargs):
    return verify_token(
        token, host=host, region=region, user=user, lookup_secret=KNOWN.get, now=now, **kwargs
    )


def rejected(token, **kwargs) -> str:
    with pytest.raises(TokenRejected) as info:
        verify(token, **kwargs)
    hint = info.value.hint
    assert SECRET not in hint and SESSION not in hint
    signature = token.rsplit("X-Amz-Signature=", 1)[-1]
    assert len(signature) < 64 or signature not in hint  # never echo a signature
    return hint


def test_verify_accepts_a_valid_token():
    verified = verify(sign())
    assert verified.access_key == AKID
    assert verified.action == spec.ACTION_ADMIN
    assert verified.arn == ARN
    assert verified.expires_at == T0_TS + 900


def test_verify_accepts_botocore_and_go_sdk_shapes():
    token = botocore_token(HOST, REGION, spec.ACTION_USER, None, 900, T0)
    assert verify(token, user="app").action == spec.ACTION_USER
    go_shape = token.replace(f"{HOST}/?", f"{HOST}?", 1)
    assert verify(go_shape, user="app").action == spec.ACTION_USER


def test_verify_accepts_temporary_credentials_with_plus_in_session_token():
    token = sign(access_key="ASIATEMP", session=SESSION)
    assert "%2B" in token
    assert verify(token).access_key == "ASIATEMP"
    # "+" decoded as a space (unquote_plus) would break the signature; here a literal "+" must
    # still mean "+", so the unencoded form verifies too.
    assert verify(token.replace("%2B", "+")).access_key == "ASIATEMP"


def test_verify_host_is_case_insensitive_and_taken_from_the_server():
    assert verify(sign(), host=HOST.upper()).access_key == AKID
    hint = rejected(sign(host="other.dsql.us-east-1.on.aws"))
    assert hint == spec.HINT_MALFORMED.format(
        what=f"the token is not for host {HOST} (sign it for it)"
    )


def test_verify_wrong_user_for_action():
    assert rejected(sign(), user="app") == spec.HINT_WRONG_ACTION.format(
        user="app", action=spec.ACTION_ADMIN
    )
    assert rejected(sign(action=spec.ACTION_USER), user="admin") == spec.HINT_WRONG_ACTION.format(
        user="admin", action=spec.ACTION_USER
    )


def test_verify_expired_token():
    token = sign(expires=60)
    assert verify(token, now=T0_TS + 59).access_key == AKID
    assert rejected(token, now=T0_TS + 60) == spec.HINT_EXPIRED.format(
        signed_at="20260304T050607Z", now="20260304T050707Z", expires="60s"
    )


def test_verify_future_date_within_and_beyond_skew():
    token = sign(now=T0_TS + 100)
    assert verify(token, now=T0_TS, max_skew=100).access_key == AKID
    hint = rejected(token, now=T0_TS, max_skew=99)
    assert hint == spec.HINT_FUTURE.format(signed_at="20260304T050747Z", now="20260304T050607Z")


def test_verify_unknown_key_and_session_token_mismatch():
    assert rejected(sign(access_key="AKIDUNKNOWN")) == spec.HINT_UNKNOWN_KEY
    assert rejected(sign(access_key="ASIATEMP")) == spec.HINT_UNKNOWN_KEY  # token missing
    assert rejected(sign(session="stray")) == spec.HINT_UNKNOWN_KEY  # token unexpected
    assert rejected(sign(access_key="ASIATEMP", session="other")) == spec.HINT_UNKNOWN_KEY


def test_verify_bad_signature():
    assert rejected(sign(secret="not-the-secret")) == spec.HINT_BAD_SIGNATURE
    token = sign()
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert rejected(flipped) == spec.HINT_BAD_SIGNATURE


def test_verify_signature_binds_region_expiry_and_action():
    token = sign(expires=900)
    assert rejected(token.replace("X-Amz-Expires=900", "X-Amz-Expires=901")) == (
        spec.HINT_BAD_SIGNATURE
    )
    other_region = sign(region="eu-west-1")
    assert rejected(other_region, region="us-east-1").startswith("Malformed auth token")
    # A server in eu-west-1 refuses the us-east-1 token: the scope is checked against its region.
    assert rejected(token, region="eu-west-1").startswith("Malformed auth token: credential scope")


def test_verify_expired_temporary_credentials_refused_even_if_token_valid():
    token = sign(access_key="ASIATEMP", session=SESSION, expires=7200)
    assert verify(token, now=T0_TS + 3599).access_key == "ASIATEMP"
    assert rejected(token, now=T0_TS + 3600) == spec.HINT_CREDENTIALS_EXPIRED


@pytest.mark.parametrize(
    ("mutate", "what"),
    [
        (lambda t: "", "empty password"),
        (lambda t: "x" * (MAX_TOKEN_LENGTH + 1), "longer than"),
        (lambda t: t.replace("/?", "/", 1), "not for host"),
        (lambda t: t + "&X-Amz-Expires=900", "duplicate parameter X-Amz-Expires"),
        (lambda t: t + "&Foo=bar", "unexpected parameter 'Foo'"),
        (lambda t: t + "&novalue", "unexpected parameter 'novalue'"),
        (lambda t: t.replace("&X-Amz-SignedHeaders=host", ""), "missing X-Amz-SignedHeaders"),
        (lambda t: t.replace("Action=DbConnectAdmin", "Action=Drop"), "unknown Action"),
        (lambda t: t.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), "algorithm"),
        (lambda t: t.replace("X-Amz-Date=20260304T050607Z", "X-Amz-Date=2026"), "X-Amz-Date"),
        (lambda t: t.replace("X-Amz-Date=20260304T050607Z", "X-Amz-Date=20261304T050607Z"), "date"),
        (lambda t: t.replace("%2Fdsql%2F", "%2Frds-db%2F"), "credential scope"),
        (lambda t: t.replace("X-Amz-Expires=900", "X-Amz-Expires=0"), "X-Amz-Expires"),
        (lambda t: t.replace("X-Amz-Expires=900", "X-Amz-Expires=-5"), "X-Amz-Expires"),
        (lambda t: t.replace("SignedHeaders=host", "SignedHeaders=host%3Bx-amz-date"), "Signed"),
        (lambda t: t[:-64] + "Z" * 64, "64 hex digits"),
    ],
)
def test_verify_rejects_malformed_tokens(mutate, what):
    hint = rejected(mutate(sign()))
    assert hint.startswith("Malformed auth token: ")
    assert what in hint


@pytest.mark.parametrize(
    "expires", [spec.TOKEN_MAX_EXPIRES + 1, 10**12, "9" * 5000, "0" * 5000 + "604801"]
)
def test_verify_refuses_expiry_over_a_week_in_dsql_words(expires):
    hint = rejected(sign().replace("X-Amz-Expires=900", f"X-Amz-Expires={expires}"))
    assert hint == spec.HINT_EXPIRES_TOO_LONG
    # The text the official connector's suite asserts against real clusters.
    assert "X-Amz-Expires must be less than a week (in seconds)" in hint


def test_verify_accepts_datetime_now():
    assert verify(sign(), now=T0).access_key == AKID


def test_credential_repr_hides_secrets():
    text = repr(KNOWN["ASIATEMP"])
    assert SECRET not in text and SESSION not in text and "ASIATEMP" in text


text_chars = st.characters(min_codepoint=33, max_codepoint=0x2FF)


@settings(max_examples=150, deadline=None)
@given(
    secret=st.text(text_chars, min_size=1, max_size=60),
    session=st.none() | st.text(text_chars, min_size=1, max_size=200),
    expires=st.integers(1, spec.TOKEN_MAX_EXPIRES),
    offset=st.integers(0, 10**9),
    admin=st.booleans(),
)
def test_roundtrip_any_credentials_verify(secret, session, expires, offset, admin):
    now = 1_000_000_000 + offset
    token = sign(
        action=spec.ACTION_ADMIN if admin else spec.ACTION_USER,
        access_key="AKIDPROP",
        secret=secret,
        session=session,
        expires=expires,
        now=now,
    )
    known = {"AKIDPROP": Credential("AKIDPROP", secret, session)}
    verified = verify_token(
        token,
        host=HOST,
        region=REGION,
        user="admin" if admin else "app",
        lookup_secret=known.get,
        now=now,
    )
    assert verified.expires_at == now + expires
    with pytest.raises(TokenRejected):
        verify_token(
            token,
            host=HOST,
            region=REGION,
            user="admin" if admin else "app",
            lookup_secret={"AKIDPROP": Credential("AKIDPROP", secret + "x", session)}.get,
            now=now,
        )
