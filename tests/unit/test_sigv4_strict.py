"""SigV4 verification is strict about its numbers: ASCII digits only, whole values only (issue 11).

Each token here is *correctly signed* over the odd value (a key holder can sign anything), so the
only thing that refuses it is the parser: before the fix, a date with a trailing newline or with
non-ASCII digits was read as a date and the token opened a connection.
"""

from __future__ import annotations

import pytest
from tests.security.tokens import signed_over

from dsqlkit import dsql as spec
from dsqlkit.auth import sigv4
from dsqlkit.auth.sigv4 import Credential, TokenRejected, presign_token, verify_token

AKID = "AKIDSTRICT"
SECRET = "strict/secret+key0123456789"
HOST = "localhost"
REGION = "us-east-1"
NOW = 1_772_600_767.0  # 2026-03-04T05:06:07Z
KNOWN = {AKID: Credential(AKID, SECRET)}


def signed_with(date: str, *, expires: str = "900") -> str:
    return signed_over(date, expires=expires, access_key=AKID, secret=SECRET, host=HOST)


def verify(token: str) -> sigv4.VerifiedToken:
    return verify_token(
        token, host=HOST, region=REGION, user="admin", lookup_secret=KNOWN.get, now=NOW
    )


def test_the_helper_signs_valid_tokens() -> None:
    """The same helper with an ordinary date is accepted: the refusals below are the parser's."""
    token = signed_with("20260304T050607Z")
    assert token == presign_token(
        host=HOST,
        region=REGION,
        action=spec.ACTION_ADMIN,
        access_key=AKID,
        secret_key=SECRET,
        now=NOW,
    )
    assert verify(token).access_key == AKID


@pytest.mark.parametrize(
    "date",
    [
        "20260304T050607Z\n",  # $ in a regex matches before a trailing newline
        "\u0662\u0660\u0662\u0666" + "0304T050607Z",  # Arabic-Indic digits: int() reads 2026
        "2026030\uff14T050607Z",  # a fullwidth 4
        "20260304T05060\u0667Z",
        " 20260304T050607Z",
    ],
    ids=["trailing-newline", "arabic-year", "fullwidth-day", "arabic-second", "leading-space"],
)
def test_dates_are_ascii_and_whole(date: str) -> None:
    with pytest.raises(TokenRejected) as info:
        verify(signed_with(date))
    assert info.value.hint == spec.HINT_MALFORMED.format(what="X-Amz-Date is not yyyymmddTHHMMSSZ")
    assert SECRET not in info.value.hint


@pytest.mark.parametrize("expires", ["900\n", "\u0669\u0660\u0660", "+900", " 900", "9_00"])
def test_expires_is_ascii_digits_only(expires: str) -> None:
    with pytest.raises(TokenRejected) as info:
        verify(signed_with("20260304T050607Z", expires=expires))
    assert "X-Amz-Expires" in info.value.hint


def test_signature_with_a_trailing_newline_is_malformed() -> None:
    token = signed_with("20260304T050607Z") + "%0A"
    with pytest.raises(TokenRejected) as info:
        verify(token)
    assert info.value.hint == spec.HINT_MALFORMED.format(what="signature is not 64 hex digits")
    expected = signed_with("20260304T050607Z").rsplit("=", 1)[1]
    assert expected not in info.value.hint
