"""What the driver modules hand to psycopg / psycopg2 / asyncpg: TLS defaults, names, options."""

from __future__ import annotations

import ssl

import pytest

from dsqlkit import _driver
from dsqlkit import dsql as spec
from dsqlkit.local.tls import ensure_certificates
from dsqlkit.retry import ConnectRetryConfig

BASE = {"host": "localhost", "region": "us-east-1"}


def plan(driver="psycopg", **kwargs):
    return _driver.plan(driver, None, {**BASE, **kwargs})


def test_libpq_safe_tls_defaults_follow_libpq_version():
    new = _driver.libpq_kwargs(plan(), 180000, {})
    assert new["sslmode"] == "verify-full"
    assert new["sslrootcert"] == "system"
    assert new["sslnegotiation"] == "direct"
    assert "password" not in new
    old = _driver.libpq_kwargs(plan(), 150000, {})
    assert old["sslmode"] == "verify-full"
    assert "sslrootcert" not in old and "sslnegotiation" not in old


def test_libpq_caller_overrides_each_tls_setting():
    given = _driver.libpq_kwargs(
        plan(sslmode="require", sslrootcert="/ca.pem", sslnegotiation="postgres"), 180000, {}
    )
    assert (given["sslmode"], given["sslrootcert"], given["sslnegotiation"]) == (
        "require",
        "/ca.pem",
        "postgres",
    )
    # libpq refuses sslrootcert=system and direct TLS with weak modes: not added then.
    prefer = _driver.libpq_kwargs(plan(sslmode="prefer"), 180000, {})
    assert "sslrootcert" not in prefer and "sslnegotiation" not in prefer


def test_application_name_with_and_without_orm_prefix():
    assert plan().application_name.startswith("dsqlkit-psycopg/")
    assert plan(application_name="sqlalchemy").application_name.startswith(
        "sqlalchemy:dsqlkit-psycopg/"
    )
    assert plan(orm_prefix="django").application_name.startswith("django:dsqlkit-psycopg/")
    long_name = _driver.application_name("asyncpg", "x" * 100)
    assert len(long_name) <= 63 and long_name.endswith(_driver.application_name("asyncpg"))


def test_asyncpg_gets_a_verifying_context_with_alpn_and_direct_tls():
    kwargs = _driver.asyncpg_kwargs(plan("asyncpg"), {})
    context = kwargs["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert kwargs["direct_tls"] is True
    assert kwargs["server_settings"]["application_name"].startswith("dsqlkit-asyncpg/")
    assert kwargs["database"] == spec.DATABASE
    assert not {"sslmode", "sslrootcert", "password"} & kwargs.keys()


def asyncpg_kwargs(environ=None, **kwargs):
    return _driver.asyncpg_kwargs(plan("asyncpg", **kwargs), environ or {})


def test_asyncpg_translates_sslmode_and_keeps_callers_choices():
    require = asyncpg_kwargs(sslmode="require")["ssl"]
    assert require.verify_mode == ssl.CERT_NONE
    verify_ca = asyncpg_kwargs(sslmode="verify-ca")["ssl"]
    assert verify_ca.verify_mode == ssl.CERT_REQUIRED and not verify_ca.check_hostname
    assert asyncpg_kwargs(sslnegotiation="postgres")["direct_tls"] is False
    # asyncpg applies its opportunistic modes itself (with their fallback), over SSLRequest.
    assert (
        asyncpg_kwargs(sslmode="prefer")["ssl"],
        asyncpg_kwargs(sslmode="prefer")["direct_tls"],
    ) == ("prefer", False)
    assert asyncpg_kwargs(sslmode="disable")["ssl"] is False
    assert asyncpg_kwargs(sslmode="disable")["direct_tls"] is False
    with pytest.raises(ValueError, match="invalid sslmode"):
        asyncpg_kwargs(sslmode="verify")


# The order of TLS settings: the caller's argument, then libpq's environment, then dsqlkit's
# default (verify-full, system CAs, direct TLS).
ENV = {"PGSSLMODE": "verify-ca", "PGSSLROOTCERT": "/env/ca.pem", "PGSSLNEGOTIATION": "postgres"}


def test_libpq_environment_is_left_to_libpq():
    kwargs = _driver.libpq_kwargs(plan(), 180000, ENV)
    # libpq reads its own variables: dsqlkit adds no default that would override them.
    assert not {"sslmode", "sslrootcert", "sslnegotiation"} & kwargs.keys()
    only_root = _driver.libpq_kwargs(plan(), 180000, {"PGSSLROOTCERT": "/env/ca.pem"})
    assert only_root["sslmode"] == "verify-full" and "sslrootcert" not in only_root
    assert only_root["sslnegotiation"] == "direct"
    # A weak mode from the environment: no direct TLS, no system roots (libpq would refuse).
    weak = _driver.libpq_kwargs(plan(), 180000, {"PGSSLMODE": "prefer"})
    assert not {"sslmode", "sslrootcert", "sslnegotiation"} & weak.keys()


def test_libpq_explicit_arguments_win_over_the_environment():
    kwargs = _driver.libpq_kwargs(
        plan(sslmode="require", sslrootcert="/mine.pem", sslnegotiation="direct"), 180000, ENV
    )
    assert (kwargs["sslmode"], kwargs["sslrootcert"], kwargs["sslnegotiation"]) == (
        "require",
        "/mine.pem",
        "direct",
    )


def test_asyncpg_honours_libpq_environment(tmp_path):
    ca = ensure_certificates(tmp_path, ["localhost"]).ca_cert
    kwargs = asyncpg_kwargs({"PGSSLMODE": "verify-ca", "PGSSLROOTCERT": str(ca)})
    context = kwargs["ssl"]
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the file's CA only, not the system store
    assert kwargs["direct_tls"] is True
    assert asyncpg_kwargs({"PGSSLNEGOTIATION": "postgres"})["direct_tls"] is False
    # The caller's arguments win over the environment.
    mine = asyncpg_kwargs({"PGSSLMODE": "disable"}, sslmode="require", direct_tls=False)
    assert mine["ssl"].verify_mode == ssl.CERT_NONE and mine["direct_tls"] is False


def test_asyncpg_callers_context_negotiates_with_sslrequest(tmp_path):
    own = ssl.create_default_context()
    kwargs = asyncpg_kwargs(ssl=own)
    assert kwargs["ssl"] is own and kwargs["direct_tls"] is False
    assert asyncpg_kwargs(ssl=own, direct_tls=True)["direct_tls"] is True
    assert asyncpg_kwargs(ssl=own, sslnegotiation="direct")["direct_tls"] is True
    # A mode name is a sslmode (the official connector's reading): dsqlkit builds the context.
    by_name = asyncpg_kwargs(
        ssl="verify-ca", sslrootcert=str(ensure_certificates(tmp_path, ["localhost"]).ca_cert)
    )
    assert by_name["ssl"].verify_mode == ssl.CERT_REQUIRED and not by_name["ssl"].check_hostname
    assert by_name["direct_tls"] is True
    with pytest.raises(ValueError, match="not both"):
        asyncpg_kwargs(ssl=own, sslmode="require")


def test_dsqlkit_options_are_taken_out_and_checked():
    p = plan(connect_retry=None, rate_limit=None)
    assert p.retry is None and p.limiter is None
    assert plan().retry == ConnectRetryConfig()
    assert "connect_retry" not in p.params.driver_kwargs
    with pytest.raises(TypeError, match="connect_retry must be"):
        plan(connect_retry=3)


def test_token_factory_is_shared_per_parameters():
    assert plan().tokens is plan().tokens
    assert plan(user="app").tokens is not plan().tokens


def test_password_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="password"):
        plan(password="secret")


def test_secret_in_driver_error_is_hidden():
    exc = RuntimeError("could not connect: password=abc.token.value host=x")
    _driver._hide(exc, "abc.token.value")
    assert "abc.token.value" not in str(exc) and "<token>" in str(exc)
