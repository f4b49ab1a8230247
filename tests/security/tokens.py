"""A generated corpus of bad IAM auth tokens (hundreds), shared by the verifier and socket tests.

Every entry is a token that must NOT open a connection: forged signatures, each query parameter
altered / removed / duplicated, expired, future-dated beyond the clock skew, wrong region, service,
host or action, unknown or wrongly-secreted access keys, truncations at every position,
meaning-changing percent-encodings, ``+`` vs space, oversized, non-ASCII, empty.

Re-encodings that decode to the same values (``%2f`` for ``%2F``, a literal ``+`` in a session
token) are the same signed request, as for AWS, so they are not in the corpus: see
``test_equivalent_encodings_are_accepted``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from dsqlkit import dsql as spec
from dsqlkit.auth.sigv4 import Credential, presign_token

AKID = "AKIACORPUSEXAMPLE001"
SECRET = "cOrPuS/secret+key/forTESTSonly0123456789"
TEMP_AKID = "ASIACORPUSEXAMPLE002"
TEMP_SECRET = "tempSECRET/for+corpus/tests0123456789abc"
SESSION = "IQoJb3JpZ2luX2Vj+session/token=="
EXPIRED_AKID = "ASIACORPUSEXAMPLE003"
REGION = "us-east-1"
HOST = "localhost"
USER = spec.ADMIN_USER
#: Secrets that must never appear in a refusal.
SECRETS = (SECRET, TEMP_SECRET, SESSION)


@dataclass(frozen=True)
class BadToken:
    label: str
    token: str
    user: str = USER


def credentials(now: float) -> dict[str, Credential]:
    """The identities the verifier trusts: a long-term key, a temporary one, an expired one."""
    return {
        AKID: Credential(AKID, SECRET, arn="arn:aws:iam::000000000000:user/corpus"),
        TEMP_AKID: Credential(TEMP_AKID, TEMP_SECRET, SESSION, "arn:aws:iam::0:role/t", now + 3600),
        EXPIRED_AKID: Credential(EXPIRED_AKID, SECRET, SESSION, "arn:aws:iam::0:role/e", now - 1),
    }


def sign(now: float, **overrides: object) -> str:
    """A valid token signed at ``now`` (overrides: presign_token arguments)."""
    args: dict[str, object] = {
        "host": HOST,
        "region": REGION,
        "action": spec.ACTION_ADMIN,
        "access_key": AKID,
        "secret_key": SECRET,
        "now": now,
    }
    args.update(overrides)
    return presign_token(**args)  # type: ignore[arg-type]


def _split(token: str) -> tuple[str, list[tuple[str, str]]]:
    head, _, query = token.partition("?")
    return head, [tuple(p.split("=", 1)) for p in query.split("&")]  # type: ignore[misc]


def _join(head: str, pairs: list[tuple[str, str]]) -> str:
    return head + "?" + "&".join(f"{k}={v}" for k, v in pairs)


def _parameter_mutations(token: str) -> Iterator[tuple[str, str]]:
    head, pairs = _split(token)
    for i, (key, value) in enumerate(pairs):
        others = pairs[:i] + pairs[i + 1 :]
        yield f"{key} removed", _join(head, others)
        yield f"{key} duplicated", _join(head, [*pairs, (key, value)])
        yield f"{key} duplicated with another value", _join(head, [*pairs, (key, value + "0")])
        yield f"{key} emptied", _join(head, [*others[:i], (key, ""), *others[i:]])
        for name, new in (
            ("appended to", value + "x"),
            ("prefixed", "0" + value),
            ("first char changed", ("A" if value[:1] != "A" else "B") + value[1:]),
            ("double-encoded", value.replace("%", "%25")),
            ("broken escape", value + "%2"),
            ("non-ASCII", value + "%C3%A9"),
            ("invalid UTF-8", value + "%FF"),
            ("unicode digit", value + "%C2%B2"),
            ("space", value + "%20"),
            ("literal space", value + " "),
            ("NUL", value + "%00"),
            ("newline", value + "%0A"),
        ):
            if new != value:  # a no-op is the valid token itself
                yield f"{key} {name}", _join(head, [*pairs[:i], (key, new), *pairs[i + 1 :]])
        yield f"{key} key lowercased", _join(head, [*pairs[:i], (key.lower(), value), *others[i:]])
    yield "unknown parameter added", _join(head, [*pairs, ("X-Amz-Extra", "1")])
    yield "parameter without =", _join(head, [*pairs, ("X-Amz-Date", "")])[:-1]
    yield (
        "encoded & inside a value",
        _join(head, [(k, v + "%26Action=DbConnect") for k, v in pairs]),
    )


def _signature_forgeries(token: str) -> Iterator[tuple[str, str]]:
    head, _, signature = token.rpartition("X-Amz-Signature=")
    for i in range(len(signature)):
        flipped = "0" if signature[i] != "0" else "1"
        yield (
            f"signature digit {i} changed",
            head + "X-Amz-Signature=" + (signature[:i] + flipped + signature[i + 1 :]),
        )
    yield "signature uppercased", head + "X-Amz-Signature=" + signature.upper()
    yield "signature of zeros", head + "X-Amz-Signature=" + "0" * 64
    yield "signature too short", head + "X-Amz-Signature=" + signature[:-1]
    yield "signature too long", head + "X-Amz-Signature=" + signature + "0"


def _foreign_service(now: float, service: str) -> str:
    """A token for another service, signed by botocore (an independent signer)."""
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=f"https://{HOST}/", params={"Action": spec.ACTION_ADMIN})
    SigV4QueryAuth(Credentials(AKID, SECRET), service, REGION, expires=900).add_auth(request)
    return str(request.prepare().url).removeprefix("https://")


def signed_over(
    amz_date: str,
    *,
    expires: str = "900",
    access_key: str = AKID,
    secret: str = SECRET,
    host: str = HOST,
    region: str = REGION,
) -> str:
    """An admin token whose X-Amz-Date (and scope) and X-Amz-Expires are exactly as given, and
    correctly signed over them: a key holder can sign odd values, so only the parser refuses."""
    from dsqlkit.auth import sigv4

    scope = f"{amz_date[:8]}/{region}/{spec.SERVICE}/aws4_request"
    params = [
        ("Action", spec.ACTION_ADMIN),
        ("X-Amz-Algorithm", sigv4.ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", expires),
        ("X-Amz-SignedHeaders", sigv4.SIGNED_HEADERS),
    ]
    encoded = [(quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in params]
    signature = sigv4._signature(encoded, host, amz_date, scope, secret, region)
    return _join(f"{host}/", [*encoded, ("X-Amz-Signature", signature)])


def corpus(now: float | None = None) -> list[BadToken]:
    """Hundreds of bad tokens, each with a label saying what is wrong with it."""
    now = time.time() if now is None else now
    good = sign(now)
    out: list[BadToken] = []
    add = out.append
    for label, token in _signature_forgeries(good):
        add(BadToken(label, token))
    for label, token in _parameter_mutations(good):
        add(BadToken(label, token))
    temp = sign(now, access_key=TEMP_AKID, secret_key=TEMP_SECRET, session_token=SESSION)
    for label, token in _parameter_mutations(temp):
        add(BadToken(f"temporary: {label}", token))
    for position in range(len(good)):
        add(BadToken(f"truncated to {position} characters", good[:position]))
    add(BadToken("temporary: session token + as space", temp.replace("%2B", "%20")))
    add(BadToken("temporary: session token + as literal space", temp.replace("%2B", " ")))
    add(BadToken("temporary: session token removed", temp.replace("&X-Amz-Security-Token=", "&X-")))
    # What the server makes of invalid UTF-8 in the password (surrogateescape), in each place.
    add(
        BadToken(
            "temporary: raw invalid UTF-8 in the session token",
            temp.replace("X-Amz-Security-Token=", "X-Amz-Security-Token=\udcff"),
        )
    )
    add(BadToken("raw invalid UTF-8 in the signature", good + "\udcff"))
    add(BadToken("long-term key with a session token", sign(now, session_token=SESSION)))
    add(
        BadToken(
            "temporary key without its session token",
            sign(now, access_key=TEMP_AKID, secret_key=TEMP_SECRET),
        )
    )
    add(
        BadToken(
            "temporary credentials expired",
            sign(now, access_key=EXPIRED_AKID, session_token=SESSION),
        )
    )
    for expires in (1, 60, spec.TOKEN_DEFAULT_EXPIRES, spec.TOKEN_MAX_EXPIRES):
        add(BadToken(f"expired ({expires}s)", sign(now - expires, expires=expires)))
        add(BadToken(f"expired long ago ({expires}s)", sign(now - 10 * 86400 - expires)))
    for ahead in (spec.TOKEN_MAX_CLOCK_SKEW + 60, 3600, 86400, 365 * 86400):
        add(BadToken(f"future-dated by {ahead}s", sign(now + ahead)))
    for region in ("us-west-2", "eu-west-1", "US-EAST-1", "us-east-1 ", ""):
        add(BadToken(f"signed for region {region!r}", sign(now, region=region)))
    for service in ("s3", "rds-db", "DSQL", "dsql-fips"):
        add(BadToken(f"signed for service {service}", _foreign_service(now, service)))
    for host in ("otherhost", "localhost.", "localhost:5432", "evil.localhost", "127.0.0.1"):
        add(BadToken(f"signed for host {host}", sign(now, host=host)))
    add(BadToken("DbConnect token used for admin", sign(now, action=spec.ACTION_USER)))
    add(BadToken("DbConnectAdmin token used for another role", good, user="app"))
    add(BadToken("unknown access key", sign(now, access_key="AKIAUNKNOWNKEY000000")))
    add(BadToken("known key, wrong secret", sign(now, secret_key=SECRET + "x")))
    add(BadToken("known key, empty-ish secret", sign(now, secret_key="x")))
    for label, token in (
        ("empty", ""),
        ("only a question mark", "?"),
        ("host only", HOST),
        ("host and empty query", HOST + "/?"),
        ("separators only", HOST + "/?&&&"),
        ("scheme kept", "https://" + good),
        ("Go-style host? plus junk", HOST + "?" + "&" * 50),
        ("oversized", good + "&X-Amz-Security-Token=" + "A" * 9000),
        ("long unknown parameter name", good + "&" + "X" * 5000 + "=1"),
        ("oversized 1 MiB", "A" * (1 << 20)),
        ("non-ASCII host", "lócalhost" + good[len(HOST) :]),
        ("emoji", "🔑" * 100),
        ("NUL inside", good.replace("Action", "Ac\0tion")),
        ("lone surrogate", good + "\udcff"),
        ("query parameters reversed and signature last removed", good.rsplit("&", 1)[0]),
        ("quoted whole token", quote(good, safe="")),
    ):
        add(BadToken(label, token))
    # Some mutations coincide (a truncation equal to a removal): keep the first label of each.
    unique = {(bad.token, bad.user): bad for bad in reversed(out)}
    return [bad for bad in out if unique[(bad.token, bad.user)] is bad]
