"""resolve_params: every way the official connector accepts parameters, and clear errors."""

from __future__ import annotations

import pytest

from dsqlkit import dsql as spec
from dsqlkit.config import ConnectParams, resolve_params

CID = "abcdefghijklmnopqrstuvwxyz"
HOST = f"{CID}.dsql.us-east-1.on.aws"


@pytest.fixture(autouse=True)
def no_ambient_region(monkeypatch, tmp_path):
    """No region from the machine: environment cleared, botocore pointed at empty config files."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


def test_host_with_defaults():
    params = resolve_params(host=HOST)
    assert params == ConnectParams(host=HOST, region="us-east-1", cluster_id=CID)
    assert (params.port, params.user, params.dbname) == (spec.DEFAULT_PORT, "admin", "postgres")
    assert params.token_duration_secs == spec.TOKEN_DEFAULT_EXPIRES
    assert params.action == spec.ACTION_ADMIN
    assert dict(params.driver_kwargs) == {}


@pytest.mark.parametrize(
    ("host", "region"),
    [
        (f"{CID}.dsql-fips.us-gov-west-1.on.aws", "us-gov-west-1"),
        (f"{CID}.dsql-abc12.eu-west-1.on.aws", "eu-west-1"),
        (HOST.upper(), "us-east-1"),
    ],
)
def test_region_from_dsql_host_names(host, region):
    params = resolve_params(host=host)
    assert params.region == region and params.host == host.lower() and params.cluster_id == CID


def test_cluster_id_expanded_with_region():
    params = resolve_params(host=CID, region="eu-central-1")
    assert params.host == f"{CID}.dsql.eu-central-1.on.aws"
    assert params.cluster_id == CID


def test_cluster_id_region_from_environment(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert resolve_params(CID).host == f"{CID}.dsql.ap-south-1.on.aws"
    monkeypatch.setenv("AWS_REGION", "sa-east-1")  # AWS_REGION wins
    assert resolve_params(CID).region == "sa-east-1"


def test_region_from_botocore_profile(tmp_path):
    (tmp_path / "config").write_text("[profile dev]\nregion = eu-north-1\n")
    params = resolve_params(host=CID, profile="dev")
    assert params.region == "eu-north-1" and params.profile == "dev"


def test_cluster_id_without_region_is_a_clear_error():
    with pytest.raises(ValueError, match=f"missing region for cluster id '{CID}'.*region="):
        resolve_params(host=CID)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "db.internal.example.com"])
def test_other_hosts_used_as_is_with_region(host):
    params = resolve_params(host=host, region="us-east-1", user="app")
    assert params.host == host and params.cluster_id is None and params.action == spec.ACTION_USER
    with pytest.raises(ValueError, match="missing region for host"):
        resolve_params(host=host)


def test_dsn_url_with_everything():
    params = resolve_params(
        f"postgresql://app@{HOST}:5433/postgres?sslmode=verify-full&sslrootcert=/ca.pem"
        "&token_duration_secs=60&profile=dev"
    )
    assert (params.host, params.port, params.user, params.dbname) == (HOST, 5433, "app", "postgres")
    assert params.token_duration_secs == 60 and params.profile == "dev"
    assert dict(params.driver_kwargs) == {"sslmode": "verify-full", "sslrootcert": "/ca.pem"}


def test_dsn_official_asyncpg_spellings():
    params = resolve_params(
        f"postgres://{HOST}/postgres?token-duration-secs=120", database="postgres"
    )
    assert params.token_duration_secs == 120 and params.dbname == "postgres"


def test_dsn_bare_host_and_cluster_id():
    assert resolve_params(HOST).host == HOST
    assert resolve_params(CID, region="us-west-2").host == f"{CID}.dsql.us-west-2.on.aws"
    assert resolve_params("localhost", region="us-east-1").host == "localhost"


def test_kwargs_win_over_dsn_and_none_means_not_given():
    params = resolve_params(
        f"postgresql://app@{HOST}:5433/postgres?application_name=a",
        port=6000,
        user=None,
        application_name="b",
    )
    assert (params.port, params.user) == (6000, "app")
    assert dict(params.driver_kwargs) == {"application_name": "b"}


def test_driver_kwargs_untouched_and_read_only():
    params = resolve_params(host=HOST, connect_timeout=5, options="-c search_path=x", sslmode=None)
    assert dict(params.driver_kwargs) == {
        "connect_timeout": 5,
        "options": "-c search_path=x",
        "sslmode": None,
    }
    with pytest.raises(TypeError):
        params.driver_kwargs["x"] = 1  # type: ignore[index]


def test_custom_credentials_provider_kept():
    class Provider:
        def load(self):
            return None

    provider = Provider()
    assert (
        resolve_params(host=HOST, custom_credentials_provider=provider).custom_credentials_provider
        is provider
    )
    with pytest.raises(ValueError, match="custom_credentials_provider must be a botocore"):
        resolve_params(host=HOST, custom_credentials_provider="not a provider")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "missing host"),
        ({"host": ""}, "missing host"),
        ({"host": "a b"}, "invalid host"),
        ({"host": HOST, "port": 0}, "invalid port 0: expected a whole number from 1 to 65535"),
        ({"host": HOST, "port": "abc"}, "invalid port"),
        ({"host": HOST, "port": True}, "invalid port"),
        ({"host": HOST, "token_duration_secs": 0}, "invalid token_duration_secs 0"),
        ({"host": HOST, "token_duration_secs": 604801}, "from 1 to 604800"),
        ({"host": HOST, "token_duration_secs": "1h"}, "invalid token_duration_secs"),
        ({"host": HOST, "region": "eu-west-1"}, "contradicts host"),
        ({"host": "localhost", "region": "US EAST"}, "invalid region"),
        ({"host": HOST, "user": ""}, "invalid user"),
        ({"host": HOST, "password": "x"}, "password is not accepted"),
    ],
)
def test_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_params(**kwargs)


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        (f"postgresql://admin:secret@{HOST}/postgres", "password is not accepted"),
        (f"mysql://{HOST}/postgres", "unsupported dsn scheme"),
        (f"postgresql://{HOST}:99999/postgres", "bad port in dsn"),
        (f"host={HOST} user=admin", "key=value DSNs are not supported"),
    ],
)
def test_dsn_errors(dsn, message):
    with pytest.raises(ValueError, match=message) as info:
        resolve_params(dsn)
    assert "secret" not in str(info.value)


def test_repr_hides_secrets():
    params = resolve_params(host=HOST, sslpassword="hunter2", auth_token="t0k", sslmode="require")
    text = repr(params)
    assert "hunter2" not in text and "t0k" not in text and "require" in text and HOST in text


def test_password_none_is_not_given():
    # ORMs (Tortoise, Django) pass password=None for "no password set": accepted, as officially.
    assert "password" not in resolve_params(host=HOST, password=None).driver_kwargs
