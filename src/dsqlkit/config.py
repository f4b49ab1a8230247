"""Connection parameters: host / cluster id / DSN / keyword arguments -> one frozen ``ConnectParams``.

Every driver module reads the same object, parsed once by :func:`resolve_params`, which accepts the
official connector's arguments (``host``, a 26-character cluster id, a DSN, ``region``, ``user``,
``profile``, ``custom_credentials_provider``, ``token_duration_secs``) so that migrating is a change
of import. Differences from the official connector 0.2.7, on purpose:

- ``token_duration_secs`` defaults to 900 s (the SDK default), not 60 s, and must be 1..604800.
- A host that is neither a cluster id nor a DSQL name (``localhost``, an IP address, a custom DNS
  name) is used as is; the official connector takes any host without ``.dsql`` for a cluster id.
- ``password`` is refused (``password=None`` is taken as not given): the password is always a
  freshly signed IAM token.
- An explicit ``region`` that contradicts the region in a DSQL host name is refused.

Example::

    from dsqlkit.config import resolve_params
    params = resolve_params("abcdefghijklmnopqrstuvwxyz", region="us-east-1", sslmode="verify-full")
    params.host            # 'abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws'
    params.driver_kwargs   # {'sslmode': 'verify-full'}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote, urlsplit

from dsqlkit import dsql as spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from typing import Any

DEFAULT_USER = spec.ADMIN_USER
DEFAULT_DBNAME = spec.DATABASE
DEFAULT_PORT = spec.DEFAULT_PORT
DEFAULT_TOKEN_DURATION = spec.TOKEN_DEFAULT_EXPIRES

#: driver_kwargs keys whose values are hidden in reprs (passwords, tokens, secrets).
_SECRET_KEY = re.compile(r"pass|token|secret|credential", re.IGNORECASE)
#: A region is used in host names and in the SigV4 credential scope: keep it to safe characters.
_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_DSN_SCHEMES = ("postgresql", "postgres")
#: Aliases accepted for drop-in compatibility (asyncpg says ``database``, asyncpg DSNs of the
#: official connector say ``token-duration-secs``).
_ALIASES = {"database": "dbname", "token-duration-secs": "token_duration_secs"}
_OWN_KEYS = frozenset(
    {
        "host",
        "port",
        "region",
        "user",
        "dbname",
        "profile",
        "custom_credentials_provider",
        "token_duration_secs",
    }
)


@dataclass(frozen=True, repr=False)
class ConnectParams:
    """Everything needed to open a DSQL connection, validated; read by every driver module.

    ``host`` is the full host name (a cluster id is expanded), ``cluster_id`` the 26-character id
    when the host names one, ``driver_kwargs`` every other keyword argument, passed to the driver
    untouched (read-only mapping).

    Example::

        params = resolve_params(host="localhost", region="us-east-1", user="app")
        params.action   # 'DbConnect'
    """

    host: str
    region: str
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    dbname: str = DEFAULT_DBNAME
    cluster_id: str | None = None
    profile: str | None = None
    custom_credentials_provider: Any = None
    token_duration_secs: int = DEFAULT_TOKEN_DURATION
    driver_kwargs: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    @property
    def action(self) -> str:
        """The IAM action the token carries: ``DbConnectAdmin`` for admin, else ``DbConnect``."""
        return spec.action_for_user(self.user)

    def __repr__(self) -> str:
        shown = {
            key: ("<hidden>" if _SECRET_KEY.search(key) else value)
            for key, value in self.driver_kwargs.items()
        }
        provider = self.custom_credentials_provider
        return (
            f"ConnectParams(host={self.host!r}, port={self.port}, region={self.region!r}, "
            f"user={self.user!r}, dbname={self.dbname!r}, cluster_id={self.cluster_id!r}, "
            f"profile={self.profile!r}, custom_credentials_provider="
            f"{type(provider).__name__ if provider is not None else None}, "
            f"token_duration_secs={self.token_duration_secs}, driver_kwargs={shown!r})"
        )


def resolve_params(dsn: str | None = None, **kwargs: Any) -> ConnectParams:
    """Parse and validate connection parameters the way the official connector accepts them.

    ``dsn`` may be a URL (``postgresql://host[:port]/postgres?user=admin&region=us-east-1``), a
    bare host name or a cluster id. Keyword arguments win over DSN values; ``None`` means "not
    given". The region comes from, in order: ``region=``, the DSQL host name, ``AWS_REGION``,
    ``AWS_DEFAULT_REGION``, then the botocore profile (looked up only when nothing else gives it).
    Raises ``ValueError`` with what is wrong and how to fix it.

    Example::

        resolve_params("postgresql://abcdefghijklmnopqrstuvwxyz.dsql.eu-west-1.on.aws/postgres")
        resolve_params(host="localhost", port=15432, region="us-east-1", sslmode="require")
    """
    given = _parse_dsn(dsn) if dsn else {}
    for key, value in kwargs.items():
        key = _ALIASES.get(key, key)
        if value is None and key == "password":
            continue  # ORMs pass password=None for "none set": as the official connector, fine
        if value is not None or key not in _OWN_KEYS:
            given[key] = value
    if "password" in given:
        raise ValueError(
            "password is not accepted: dsqlkit signs an IAM auth token for every connection. "
            "Remove password= (or the password in the DSN); to use a fixed token, pass it to the "
            "driver directly, or generate one with `dsqlkit token`."
        )
    own = {key: given.pop(key) for key in _OWN_KEYS & given.keys()}
    host, cluster_id, host_region = _parse_host(own.get("host"))
    profile = own.get("profile")
    region = _resolve_region(own.get("region"), host_region, host, cluster_id, profile)
    if cluster_id and host == cluster_id:
        host = f"{cluster_id}.dsql.{region}.on.aws"
    return ConnectParams(
        host=host,
        region=region,
        port=_int_in_range(own.get("port", DEFAULT_PORT), "port", 1, 65535),
        user=_text(own.get("user", DEFAULT_USER), "user"),
        dbname=_text(own.get("dbname", DEFAULT_DBNAME), "dbname"),
        cluster_id=cluster_id,
        profile=profile,
        custom_credentials_provider=_provider(own.get("custom_credentials_provider")),
        token_duration_secs=_int_in_range(
            own.get("token_duration_secs", DEFAULT_TOKEN_DURATION),
            "token_duration_secs",
            1,
            spec.TOKEN_MAX_EXPIRES,
        ),
        driver_kwargs=MappingProxyType(given),
    )


def _parse_dsn(dsn: str) -> dict[str, Any]:
    """A URL DSN -> its parts; a bare host name or cluster id -> ``{"host": dsn}``."""
    if not isinstance(dsn, str):
        raise ValueError(f"dsn must be a string, got {type(dsn).__name__}")
    if "://" not in dsn:
        if re.search(r"[\s=/?@]", dsn):
            raise ValueError(
                f"cannot parse dsn {dsn!r}: use a URL such as "
                "postgresql://<host>:5432/postgres?user=admin&region=us-east-1, a host name or a "
                "cluster id (key=value DSNs are not supported)"
            )
        return {"host": dsn}
    parts = urlsplit(dsn)
    if parts.scheme not in _DSN_SCHEMES:
        raise ValueError(
            f"unsupported dsn scheme {parts.scheme!r}: use postgresql://<host>/postgres?region=..."
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in dsn: {parts.netloc!r}; use a number 1..65535") from None
    found: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        found[_ALIASES.get(key, key)] = value
    candidates = {
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "dbname": unquote(parts.path.lstrip("/")) if parts.path.strip("/") else None,
    }
    found.update({key: value for key, value in candidates.items() if value is not None})
    return found


def _parse_host(host: Any) -> tuple[str, str | None, str | None]:
    """host -> (host, cluster id or None, region named by the host or None)."""
    if not host:
        raise ValueError(
            "missing host: pass host='<cluster id>.dsql.<region>.on.aws', a 26-character cluster "
            "id with region=..., or a DSN such as postgresql://<host>/postgres?region=<region>"
        )
    if not isinstance(host, str) or re.search(r"[\s/?@]", host):
        raise ValueError(f"invalid host {host!r}: give a host name, an IP address or a cluster id")
    host = host.strip().lower()
    if spec.CLUSTER_ID.match(host):
        return host, host, None
    match = spec.REGION_FROM_HOST.search(host)
    if match:
        first_label = host.split(".", 1)[0]
        return host, first_label if spec.CLUSTER_ID.match(first_label) else None, match.group(1)
    return host, None, None


def _resolve_region(
    explicit: Any, from_host: str | None, host: str, cluster_id: str | None, profile: str | None
) -> str:
    if explicit is not None:
        region = _text(explicit, "region")
        if from_host and region != from_host:
            raise ValueError(
                f"region={region!r} contradicts host {host!r}, which is in {from_host!r}: "
                "remove region= or fix it (the token is signed for the region)"
            )
    else:
        region = (
            from_host
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or _profile_region(profile)
            or ""
        )
    if not region:
        what = f"cluster id {host!r}" if cluster_id else f"host {host!r}"
        raise ValueError(
            f"missing region for {what}: pass region='us-east-1' (or put region= in the DSN), "
            "set AWS_REGION, or configure a region in your AWS profile"
        )
    if not _REGION.match(region):
        raise ValueError(f"invalid region {region!r}: expected a name such as 'us-east-1'")
    return region


def _profile_region(profile: str | None) -> str | None:
    """The region of the botocore profile: the only I/O here, done only when nothing else helps."""
    try:
        import botocore.session
    except ImportError:
        return None
    try:
        region = botocore.session.Session(profile=profile).get_config_variable("region")
    except Exception as exc:  # a missing or broken profile: say which one
        raise ValueError(f"cannot read the region of AWS profile {profile!r}: {exc}") from None
    return str(region) if region else None


def _int_in_range(value: Any, name: str, low: int, high: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or not low <= number <= high:
        raise ValueError(f"invalid {name} {value!r}: expected a whole number from {low} to {high}")
    return number


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"invalid {name} {value!r}: expected a non-empty string")
    return value


def _provider(value: Any) -> Any:
    if value is not None and not callable(getattr(value, "load", None)):
        raise ValueError(
            "custom_credentials_provider must be a botocore CredentialProvider "
            f"(an object with a load() method), got {type(value).__name__}"
        )
    return value
