"""DSQL IAM auth tokens: sign (client side) and verify (the local endpoint), standard library only.

A token is a SigV4 presigned ``GET https://<host>/?Action=...`` URL without its scheme (service
``dsql``, only the ``host`` header signed, payload hash of the empty string). :func:`presign_token`
produces byte for byte what botocore's ``generate_db_connect[_admin]_auth_token`` produces;
:func:`verify_token` checks one the way DSQL does and says why it refuses, never how to forge.

Example::

    token = presign_token(host="h.dsql.us-east-1.on.aws", region="us-east-1",
                          action="DbConnectAdmin", access_key="AKID", secret_key="secret")
    verify_token(token, host="h.dsql.us-east-1.on.aws", region="us-east-1", user="admin",
                 lookup_secret={"AKID": Credential("AKID", "secret")}.get)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

from dsqlkit import dsql as spec

ALGORITHM = "AWS4-HMAC-SHA256"
SIGNED_HEADERS = "host"
#: Tokens longer than this are refused before any parsing (a real one is well under 2 KiB).
MAX_TOKEN_LENGTH = 8192
#: SHA-256 of the empty payload: DSQL tokens sign it, not UNSIGNED-PAYLOAD.
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_SAFE = "-_.~"  # with letters and digits, the only characters SigV4 leaves unencoded
_REQUIRED = frozenset(
    {
        "Action",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    }
)
_KNOWN = _REQUIRED | {"X-Amz-Security-Token"}
_ACTIONS = (spec.ACTION_ADMIN, spec.ACTION_USER)
# Matched with fullmatch, so a trailing newline is not accepted (``$`` would allow one), and with
# explicit ASCII classes: ``\d`` also matches digits such as "٢" that int() reads as numbers.
_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z", re.ASCII)
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)

Now = float | datetime | None


@dataclass(frozen=True, repr=False)
class Credential:
    """An access key the verifier knows: its secret, optional session token, ARN and expiry.

    ``expires_at`` (epoch seconds or an aware datetime) marks temporary credentials: after it,
    tokens they signed are refused even when the token itself is still valid.

    Example::

        Credential("AKIDEXAMPLE", "secret", arn="arn:aws:iam::123456789012:role/app")
    """

    access_key: str
    secret_key: str
    session_token: str | None = None
    arn: str | None = None
    expires_at: float | datetime | None = None

    def __repr__(self) -> str:
        return (
            f"Credential(access_key={self.access_key!r}, secret_key=<hidden>, "
            f"session_token={'<hidden>' if self.session_token else None}, arn={self.arn!r}, "
            f"expires_at={self.expires_at!r})"
        )


@dataclass(frozen=True)
class VerifiedToken:
    """What a valid token proves: who signed it (access key, ARN), for what, and until when."""

    access_key: str
    action: str
    arn: str | None
    #: Epoch seconds after which the token no longer opens connections.
    expires_at: float


class TokenRejected(Exception):
    """The token does not open a connection; ``hint`` is the reason, safe to show the client."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


def presign_token(
    *,
    host: str,
    region: str,
    action: str,
    access_key: str,
    secret_key: str,
    session_token: str | None = None,
    expires: int = spec.TOKEN_DEFAULT_EXPIRES,
    now: Now = None,
) -> str:
    """Sign a DSQL auth token for ``host`` (no scheme; ``host:port`` is signed as given).

    ``now`` (epoch seconds or a datetime, naive meaning UTC; default the current time) is the
    signing time. Identical to
    botocore's ``generate_db_connect_admin_auth_token`` (``action="DbConnectAdmin"``) and
    ``generate_db_connect_auth_token`` (``action="DbConnect"``).

    Example::

        presign_token(host="h.dsql.us-east-1.on.aws", region="us-east-1", action="DbConnect",
                      access_key="AKID", secret_key="secret", expires=900)
    """
    if action not in _ACTIONS:
        raise ValueError(f"action must be one of {', '.join(_ACTIONS)}, got {action!r}")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise ValueError(f"expires must be an int number of seconds, got {expires!r}")
    if not 1 <= expires <= spec.TOKEN_MAX_EXPIRES:
        raise ValueError(f"expires must be 1..{spec.TOKEN_MAX_EXPIRES} seconds, got {expires}")
    amz_date = _utc(now).strftime(_AMZ_DATE)
    scope = f"{amz_date[:8]}/{region}/{spec.SERVICE}/aws4_request"
    # Token order is botocore's: the operation parameter, then the auth parameters.
    params = [
        ("Action", action),
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", SIGNED_HEADERS),
    ]
    if session_token is not None:
        params.append(("X-Amz-Security-Token", session_token))
    encoded = [(quote(k, safe=_SAFE), quote(v, safe=_SAFE)) for k, v in params]
    signature = _signature(encoded, _host_header(host), amz_date, scope, secret_key, region)
    query = "&".join(f"{k}={v}" for k, v in encoded)
    return f"{host}/?{query}&X-Amz-Signature={signature}"


def verify_token(
    token: str,
    *,
    host: str,
    region: str,
    user: str,
    lookup_secret: Callable[[str], Credential | None],
    now: Now = None,
    max_skew: int = spec.TOKEN_MAX_CLOCK_SKEW,
) -> VerifiedToken:
    """Check ``token`` for a connection as ``user`` to ``host`` (the name this server serves).

    The canonical request is rebuilt from ``host`` and ``region``, never from the token's own
    claims. Raises :class:`TokenRejected` with one of ``spec``'s ``HINT_*`` texts.

    Example::

        verified = verify_token(password, host=sni_name, region="us-east-1", user="admin",
                                lookup_secret=credentials_by_key.get)
        verified.arn
    """
    params = _parse(token, host)
    action = params["Action"]
    if action not in _ACTIONS:
        raise TokenRejected(spec.HINT_MALFORMED.format(what=f"unknown Action {action!r}"))
    if action != spec.action_for_user(user):
        raise TokenRejected(spec.HINT_WRONG_ACTION.format(user=user, action=action))
    access_key, amz_date, signed_at, expires = _check_claims(params, region)
    now_ts = _timestamp(now)
    if now_ts >= signed_at + expires:
        raise TokenRejected(
            spec.HINT_EXPIRED.format(signed_at=amz_date, now=_amz(now_ts), expires=f"{expires}s")
        )
    if signed_at > now_ts + max_skew:
        raise TokenRejected(spec.HINT_FUTURE.format(signed_at=amz_date, now=_amz(now_ts)))
    credential = lookup_secret(access_key)
    presented_session = params.get("X-Amz-Security-Token")
    if credential is None or not _same_session(credential.session_token, presented_session):
        raise TokenRejected(spec.HINT_UNKNOWN_KEY)
    encoded = [(k, quote(v, safe=_SAFE)) for k, v in params.items() if k != "X-Amz-Signature"]
    scope = f"{amz_date[:8]}/{region}/{spec.SERVICE}/aws4_request"
    expected = _signature(
        encoded, _host_header(host), amz_date, scope, credential.secret_key, region
    )
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        raise TokenRejected(spec.HINT_BAD_SIGNATURE)
    if credential.expires_at is not None and now_ts >= _timestamp(credential.expires_at):
        raise TokenRejected(spec.HINT_CREDENTIALS_EXPIRED)
    return VerifiedToken(access_key, action, credential.arn, float(signed_at + expires))


# --- signing -------------------------------------------------------------------------------------


def _signature(
    encoded: list[tuple[str, str]],
    host_header: str,
    amz_date: str,
    scope: str,
    secret_key: str,
    region: str,
) -> str:
    """The hex signature over already URI-encoded query parameters (signature excluded)."""
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(encoded))
    canonical_request = (
        f"GET\n/\n{canonical_query}\nhost:{host_header}\n\n{SIGNED_HEADERS}\n{_EMPTY_SHA256}"
    )
    string_to_sign = (
        f"{ALGORITHM}\n{amz_date}\n{scope}\n"
        f"{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    )
    key = _signing_key(secret_key, amz_date[:8], region)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=32)
def _signing_key(secret_key: str, datestamp: str, region: str) -> bytes:
    """The SigV4 key derivation (four HMACs), done once per secret, day and region."""
    key = f"AWS4{secret_key}".encode()
    for part in (datestamp, region, spec.SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


@lru_cache(maxsize=256)
def _host_header(host: str) -> str:
    """The signed ``host`` header: lowercase, without a default ``:443`` (as botocore does)."""
    if host.count(":") > 1 and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address: bracket it, as a URL would
    parts = urlsplit(f"https://{host}")
    name = parts.hostname or ""
    if ":" in name:  # IPv6 literal
        name = f"[{name}]"
    return name if parts.port in (None, 443) else f"{name}:{parts.port}"


# --- verification --------------------------------------------------------------------------------


def _parse(token: str, host: str) -> dict[str, str]:
    """Split the token into decoded query parameters, checking its host and its shape."""
    if not isinstance(token, str) or not token:
        raise TokenRejected(spec.HINT_MALFORMED.format(what="empty password; expected a token"))
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected(
            spec.HINT_MALFORMED.format(what=f"longer than {MAX_TOKEN_LENGTH} characters")
        )
    if not token.isascii():  # real tokens are percent-encoded; raw bytes would break the checks
        raise TokenRejected(spec.HINT_MALFORMED.format(what="non-ASCII characters"))
    # botocore writes "host/?", the Go SDK "host?": accept both; the host is compared, not trusted.
    token_host, sep, query = token.partition("?")
    if not sep or token_host.removesuffix("/").lower() != host.lower():
        raise TokenRejected(
            spec.HINT_MALFORMED.format(what=f"the token is not for host {host} (sign it for it)")
        )
    params: dict[str, str] = {}
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        if not eq or key not in _KNOWN:
            # Cut: the hint goes back to the client, who must not get its kilobytes echoed.
            shown = key if len(key) <= 40 else key[:40] + "..."
            raise TokenRejected(spec.HINT_MALFORMED.format(what=f"unexpected parameter {shown!r}"))
        if key in params:
            raise TokenRejected(spec.HINT_MALFORMED.format(what=f"duplicate parameter {key}"))
        params[key] = unquote(value)  # not unquote_plus: "+" in a session token stays "+"
    missing = _REQUIRED - params.keys()
    if missing:
        raise TokenRejected(
            spec.HINT_MALFORMED.format(what=f"missing {', '.join(sorted(missing))}")
        )
    return params


def _check_claims(params: dict[str, str], region: str) -> tuple[str, str, int, int]:
    """Algorithm, scope, date, expiry, signed headers -> (access key, X-Amz-Date, epoch, expires)."""
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise TokenRejected(spec.HINT_MALFORMED.format(what=f"algorithm must be {ALGORITHM}"))
    amz_date = params["X-Amz-Date"]
    if not _DATE_RE.fullmatch(amz_date):
        raise TokenRejected(spec.HINT_MALFORMED.format(what="X-Amz-Date is not yyyymmddTHHMMSSZ"))
    try:
        # Slicing, not strptime: three times faster, and this runs on every new connection.
        fields = (amz_date[0:4], amz_date[4:6], amz_date[6:8], amz_date[9:11], amz_date[11:13])
        year, month, day, hour, minute = map(int, fields)
        second = int(amz_date[13:15])
        stamp = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
        signed_at = int(stamp.timestamp())
    except ValueError:
        raise TokenRejected(spec.HINT_MALFORMED.format(what="X-Amz-Date is not a date")) from None
    access_key, slash, scope = params["X-Amz-Credential"].partition("/")
    expected_scope = f"{amz_date[:8]}/{region}/{spec.SERVICE}/aws4_request"
    if not slash or not access_key or scope != expected_scope:
        raise TokenRejected(
            spec.HINT_MALFORMED.format(what=f"credential scope must be <key>/{expected_scope}")
        )
    expires_text = params["X-Amz-Expires"]
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    # Without leading zeros, and compared by length first: int() refuses over 4,300 digits.
    significant = expires_text.lstrip("0")
    if not (expires_text.isascii() and expires_text.isdigit()) or not significant:
        raise TokenRejected(
            spec.HINT_MALFORMED.format(what=f"X-Amz-Expires must be 1..{spec.TOKEN_MAX_EXPIRES}")
        )
    if len(significant) > len(str(spec.TOKEN_MAX_EXPIRES)) or (
        int(significant) > spec.TOKEN_MAX_EXPIRES
    ):
        raise TokenRejected(spec.HINT_EXPIRES_TOO_LONG)
    if params["X-Amz-SignedHeaders"] != SIGNED_HEADERS:
        raise TokenRejected(spec.HINT_MALFORMED.format(what="X-Amz-SignedHeaders must be host"))
    if not _SIGNATURE_RE.fullmatch(params["X-Amz-Signature"]):
        raise TokenRejected(spec.HINT_MALFORMED.format(what="signature is not 64 hex digits"))
    return access_key, amz_date, signed_at, int(significant)


def _same_session(expected: str | None, presented: str | None) -> bool:
    if expected is None or presented is None:
        return expected is presented
    return hmac.compare_digest(expected.encode(), presented.encode())


# --- time ----------------------------------------------------------------------------------------


def _utc(now: Now) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if isinstance(now, datetime):
        # botocore's clock is a naive UTC datetime: naive means UTC here too.
        return now.astimezone(timezone.utc) if now.tzinfo else now.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(now, timezone.utc)


def _timestamp(now: Now) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return _utc(now).timestamp()
    return float(now)


def _amz(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime(_AMZ_DATE)
