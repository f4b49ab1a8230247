"""The bad-token corpus against ``verify_token`` directly: zero accepted, every refusal a clean hint.

Fast (no sockets): the whole corpus runs here; ``test_hostile_clients`` sends a sample of it over
real connections and checks the endpoint's FATAL 08006.
"""

from __future__ import annotations

import time

import pytest

from dsqlkit.auth.sigv4 import TokenRejected, verify_token
from tests.security import tokens

NOW = time.time()
CORPUS = tokens.corpus(NOW)
LOOKUP = tokens.credentials(NOW).get
#: A refusal says why in a sentence; it must not echo an attacker's megabyte back.
MAX_HINT = 300


def verify(token: str, user: str = tokens.USER) -> object:
    return verify_token(
        token, host=tokens.HOST, region=tokens.REGION, user=user, lookup_secret=LOOKUP, now=NOW
    )


def test_corpus_is_hundreds_of_distinct_tokens() -> None:
    assert len(CORPUS) >= 500
    assert len({(bad.token, bad.user) for bad in CORPUS}) == len(CORPUS)


def test_the_unmutated_tokens_are_accepted() -> None:
    # The control: the corpus is built from tokens the verifier does accept.
    verify(tokens.sign(NOW))
    verify(
        tokens.sign(
            NOW,
            access_key=tokens.TEMP_AKID,
            secret_key=tokens.TEMP_SECRET,
            session_token=tokens.SESSION,
        )
    )


def test_equivalent_encodings_are_accepted() -> None:
    # Same decoded values, same signed request (as for AWS): lowercase escapes, a literal "+"
    # in the session token (decoded as "+", never as a space), the Go SDK's "host?" form.
    good = tokens.sign(
        NOW,
        access_key=tokens.TEMP_AKID,
        secret_key=tokens.TEMP_SECRET,
        session_token=tokens.SESSION,
    )
    verify(good.replace("%2F", "%2f"))
    verify(good.replace("%2B", "+"))
    verify(good.replace("/?", "?", 1))


def test_no_bad_token_is_accepted_and_every_refusal_is_clean() -> None:
    accepted, crashed, leaky = [], [], []
    for bad in CORPUS:
        try:
            verify(bad.token, bad.user)
        except TokenRejected as exc:
            hint = exc.hint
            signature = bad.token.rpartition("X-Amz-Signature=")[2][:64]
            if (
                not hint
                or len(hint) > MAX_HINT
                or any(secret in hint for secret in tokens.SECRETS)
                or (len(signature) == 64 and signature in hint)
            ):
                leaky.append((bad.label, hint[:100]))
        except Exception as exc:  # anything but TokenRejected is a crash of the verifier
            crashed.append((bad.label, repr(exc)[:100]))
        else:
            accepted.append(bad.label)
    assert not accepted, f"bad tokens accepted: {accepted}"
    assert not crashed, f"verifier crashed instead of refusing: {crashed}"
    assert not leaky, f"refusals with no hint, an oversized hint or a secret: {leaky}"


@pytest.mark.parametrize(
    "label",
    [
        "expired (900s)",
        "future-dated by 3600s",
        "DbConnect token used for admin",
        "unknown access key",
        "signature digit 5 changed",
        "temporary credentials expired",
    ],
)
def test_refusal_reasons_name_the_problem(label: str) -> None:
    bad = next(b for b in CORPUS if b.label == label)
    with pytest.raises(TokenRejected) as refused:
        verify(bad.token, bad.user)
    first_words = {
        "expired (900s)": "Signature expired",
        "future-dated by 3600s": "Signature not yet current",
        "DbConnect token used for admin": "Wrong user to action mapping",
        "unknown access key": "The security token included in the request is invalid",
        "signature digit 5 changed": "The request signature we calculated",
        "temporary credentials expired": "The security token included in the request is expired",
    }
    assert refused.value.hint.startswith(first_words[label])
