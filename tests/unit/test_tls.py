"""Real TLS handshakes (asyncio, loopback) between server_context and client_context."""

from __future__ import annotations

import asyncio
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsqlkit import dsql as spec
from dsqlkit.local import tls

DSQL_NAME = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"


@dataclass
class Handshake:
    client_alpn: str | None
    server_alpn: str | None
    server_sni: str | None


async def handshake(
    paths: tls.CertificatePaths,
    server_hostname: str,
    *,
    direct: bool = True,
    alpn: tuple[str, ...] | None = (spec.ALPN_PROTOCOL,),
) -> Handshake:
    """One TLS connection over loopback; returns what each side saw."""
    seen: asyncio.Future[tuple[str | None, str | None]] = asyncio.Future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        seen.set_result((ssl_object.selected_alpn_protocol(), tls.sni_of(ssl_object)))
        writer.close()

    server = await asyncio.start_server(
        on_client, "127.0.0.1", 0, ssl=tls.server_context(paths, direct=direct)
    )
    port = server.sockets[0].getsockname()[1]
    try:
        ctx = tls.client_context(paths.ca_cert, alpn=alpn)
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=server_hostname
        )
        client_alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        server_alpn, sni = await asyncio.wait_for(seen, 10)
        writer.close()
        return Handshake(client_alpn, server_alpn, sni)
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@pytest.fixture(scope="module")
def paths(cert_dir: Path) -> tls.CertificatePaths:
    return tls.ensure_certificates(cert_dir, [DSQL_NAME])


@pytest.mark.parametrize("direct", [True, False])
async def test_handshake_selects_alpn_and_records_sni(
    paths: tls.CertificatePaths, direct: bool
) -> None:
    result = await handshake(paths, DSQL_NAME, direct=direct)
    assert result == Handshake(spec.ALPN_PROTOCOL, spec.ALPN_PROTOCOL, DSQL_NAME)


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST"])
async def test_localhost_verifies(paths: tls.CertificatePaths, name: str) -> None:
    result = await handshake(paths, name)
    assert result.server_sni is not None and result.server_sni.lower() == "localhost"


@pytest.mark.parametrize("address", ["127.0.0.1"])
async def test_ip_address_verifies_and_sends_no_sni(
    paths: tls.CertificatePaths, address: str
) -> None:
    # Clients never send an IP address as SNI (RFC 6066), so the server sees None.
    result = await handshake(paths, address)
    assert result.server_sni is None
    assert result.server_alpn == spec.ALPN_PROTOCOL


async def test_name_not_in_certificate_fails_verification(paths: tls.CertificatePaths) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await handshake(paths, "other.dsql.us-east-1.on.aws")


async def test_client_without_postgresql_alpn_completes_with_none_selected(
    paths: tls.CertificatePaths,
) -> None:
    # The server must be able to answer with a clear FATAL, so the handshake may not fail here.
    result = await handshake(paths, DSQL_NAME, alpn=("h2", "http/1.1"))
    assert (result.client_alpn, result.server_alpn) == (None, None)
    assert result.server_sni == DSQL_NAME


async def test_client_without_alpn_completes(paths: tls.CertificatePaths) -> None:
    result = await handshake(paths, "localhost", alpn=None)
    assert (result.client_alpn, result.server_alpn) == (None, None)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
async def test_tls_1_1_client_is_refused(paths: tls.CertificatePaths) -> None:
    server = await asyncio.start_server(
        lambda r, w: w.close(), "127.0.0.1", 0, ssl=tls.server_context(paths, direct=True)
    )
    port = server.sockets[0].getsockname()[1]
    ctx = tls.client_context(paths.ca_cert)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    finally:
        server.close()
        await server.wait_closed()


def test_key_files_are_private(paths: tls.CertificatePaths) -> None:
    for key in (paths.server_key, paths.ca_cert.with_name("ca-key.pem")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def snapshot(paths: tls.CertificatePaths) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (paths.ca_cert, paths.server_cert, paths.server_key)}


def test_second_call_reuses_certificates(tmp_path: Path) -> None:
    first = tls.ensure_certificates(tmp_path, [DSQL_NAME])
    before = snapshot(first)
    second = tls.ensure_certificates(tmp_path, [DSQL_NAME.upper(), "localhost"])
    assert second == first
    assert snapshot(second) == before


async def test_new_hostname_regenerates_server_cert_only(tmp_path: Path) -> None:
    paths = tls.ensure_certificates(tmp_path, [DSQL_NAME])
    before = snapshot(paths)
    extra = "zyxwvutsrqponmlkjihgfedcba.dsql.eu-west-1.on.aws"
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(paths, extra)
    paths = tls.ensure_certificates(tmp_path, [DSQL_NAME, extra])
    after = snapshot(paths)
    assert after["ca.pem"] == before["ca.pem"]
    assert after["server.pem"] != before["server.pem"]
    assert (await handshake(paths, extra)).server_sni == extra
    assert (await handshake(paths, DSQL_NAME)).server_sni == DSQL_NAME


def test_certificate_near_expiry_is_renewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = tls.ensure_certificates(tmp_path, [DSQL_NAME])
    before = snapshot(paths)
    # A renewal window longer than the validity makes the fresh certificate "expiring soon".
    monkeypatch.setattr(tls, "RENEW_BEFORE", tls.SERVER_VALIDITY * 2)
    after = snapshot(tls.ensure_certificates(tmp_path, [DSQL_NAME]))
    assert after["ca.pem"] == before["ca.pem"]
    assert after["server.pem"] != before["server.pem"]


def test_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    paths = tls.ensure_certificates(tmp_path, [DSQL_NAME])
    paths.ca_cert.unlink()
    paths.ca_cert.with_name("ca-key.pem").unlink()
    new = tls.ensure_certificates(tmp_path, [DSQL_NAME])
    # Only a server certificate signed by the new CA lets a verify-full client in.
    assert asyncio.run(handshake(new, DSQL_NAME)).server_sni == DSQL_NAME


def test_empty_hostname_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty host name"):
        tls.ensure_certificates(tmp_path, [" "])


def test_mismatched_ca_files_are_replaced(tmp_path: Path) -> None:
    tls.ensure_certificates(tmp_path, [DSQL_NAME])
    other = tmp_path / "other"
    tls.ensure_certificates(other, [DSQL_NAME])
    (other / "ca-key.pem").replace(tmp_path / "ca-key.pem")  # key of another CA
    paths = tls.ensure_certificates(tmp_path, [DSQL_NAME])
    assert asyncio.run(handshake(paths, DSQL_NAME)).server_sni == DSQL_NAME
