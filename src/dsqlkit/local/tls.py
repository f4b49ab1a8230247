"""TLS for the local endpoint: a generated CA, a server certificate, and the SSL contexts.

DSQL requires TLS; the endpoint makes it real. :func:`ensure_certificates` keeps a private CA and a
server certificate in a directory (generated on first use, reused afterwards), so clients can verify
the endpoint with ``sslrootcert=<ca_cert>`` and ``sslmode=verify-full``. :func:`server_context`
builds the server side: TLS 1.2+, ALPN ``postgresql``, and the SNI name of each connection recorded
for the server (read it back with :func:`sni_of`).

Example::

    paths = ensure_certificates(Path("~/.dsqlkit").expanduser(), ["localhost"])
    ctx = server_context(paths, direct=True)
    # in the server, after the handshake:
    name = sni_of(transport.get_extra_info("ssl_object"))
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dsqlkit import dsql as spec

#: Names every server certificate covers, besides the endpoint's own host names.
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=365)
#: A server certificate closer than this to its end is replaced (the CA is kept).
RENEW_BEFORE = datetime.timedelta(days=30)
#: Attribute set on each connection's SSLObject / SSLSocket by the SNI callback.
_SNI_ATTRIBUTE = "dsqlkit_server_name"


@dataclass(frozen=True)
class CertificatePaths:
    """Where the CA certificate, the server certificate and the server key are (PEM files)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def ensure_certificates(directory: Path, hostnames: Sequence[str]) -> CertificatePaths:
    """Return the endpoint's CA and server certificate in ``directory``, creating what is missing.

    On first use this generates a CA (EC P-256, 10 years) and a server certificate it signs (1 year)
    whose subjectAltName covers ``hostnames`` plus localhost, 127.0.0.1 and ::1. Later calls reuse
    both; the server certificate alone is regenerated when it lacks one of ``hostnames``, is within
    30 days of expiry, or was not signed by the CA in the directory. Key files are mode 0600.

    Example::

        paths = ensure_certificates(tmp_path, ["abc.dsql.us-east-1.on.aws"])
        psycopg.connect(..., sslrootcert=str(paths.ca_cert), sslmode="verify-full")
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertificatePaths(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
    )
    names = _normalise_names([*hostnames, *DEFAULT_NAMES])
    # Endpoints started at once on one directory (parallel test workers) must not interleave
    # their writes: a key from one and a certificate from the other would not match.
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ca_cert, ca_key = _load_or_create_ca(paths.ca_cert, directory / "ca-key.pem")
        if not _server_cert_usable(paths.server_cert, paths.server_key, ca_cert, names):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue_server_cert(key, ca_cert, ca_key, names)
            _write_private_key(paths.server_key, key)
            pem = cert.public_bytes(serialization.Encoding.PEM)
            _write_atomically(paths.server_cert, pem, 0o644)
    return paths


def server_context(paths: CertificatePaths, *, direct: bool) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the endpoint, with ALPN ``postgresql`` and SNI capture.

    ``direct``: whether the context serves direct TLS (PostgreSQL 17 ``sslnegotiation=direct``,
    first byte 0x16) or TLS after an SSLRequest. Both advertise ALPN ``postgresql`` (libpq 17 sends
    it in both modes). A client offering only other ALPN protocols still completes the handshake,
    with no protocol selected (``selected_alpn_protocol()`` is None), so that the server can send a
    clear FATAL (``spec.ALPN_MISSING``) instead of a bare TLS alert; checking that is the server's
    job, and only required for ``direct``.

    SNI: the context's ``sni_callback`` records the name the client sent (None without SNI) on the
    connection's SSL object; read it after the handshake with :func:`sni_of`. The callback never
    refuses a name: the server decides what to do with unknown names, in protocol terms.

    Example::

        ctx = server_context(paths, direct=False)
        sslobj = ctx.wrap_bio(incoming, outgoing, server_side=True)
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.server_cert, paths.server_key)
    # Python's ALPN callback answers "no overlap" with no selection, not with an alert: the
    # handshake completes and selected_alpn_protocol() is None (see tests/unit/test_tls.py).
    ctx.set_alpn_protocols([spec.ALPN_PROTOCOL])
    ctx.sni_callback = _record_sni
    # Session tickets would only help reconnecting clients; PostgreSQL's server disables them too.
    # OP_NO_TICKET alone still sends TLS 1.3 clients two (stateful) tickets after every handshake,
    # ~15 us of server CPU per connection that libpq never uses: send none.
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    return ctx


def sni_of(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The server name the client sent in its TLS ClientHello (SNI), or None if it sent none.

    ``ssl_object`` is what asyncio gives as ``transport.get_extra_info("ssl_object")`` for a
    connection made with a :func:`server_context`.
    """
    return getattr(ssl_object, _SNI_ATTRIBUTE, None)


def client_context(
    ca_file: Path | str, *, alpn: Sequence[str] | None = (spec.ALPN_PROTOCOL,)
) -> ssl.SSLContext:
    """A verify-full client context trusting only ``ca_file`` (for tests and tools).

    Example::

        ctx = client_context(paths.ca_cert)
        ctx.wrap_socket(sock, server_hostname="localhost")
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


# --- internals --------------------------------------------------------------------------------


def _record_sni(ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> None:
    # Called during the handshake with the connection's SSLObject (asyncio) or SSLSocket; both are
    # Python objects that accept attributes. Returning None lets the handshake continue.
    setattr(ssl_object, _SNI_ATTRIBUTE, server_name)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _normalise_names(names: Iterable[str]) -> list[str]:
    """Lower-case, de-duplicated, order kept; rejects empty names with a clear error."""
    result: list[str] = []
    for name in names:
        clean = name.strip().lower()
        if not clean:
            raise ValueError("empty host name given for the TLS certificate; pass real host names")
        if clean not in result:
            result.append(clean)
    return result


def _san_entry(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _load_or_create_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if (
            isinstance(key, ec.EllipticCurvePrivateKey)
            and key.public_key() == cert.public_key()  # a pair, not two unrelated files
            and cert.not_valid_after_utc - RENEW_BEFORE > _now()
        ):
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsqlkit local endpoint CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private_key(key_path, key)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _issue_server_cert(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
) -> x509.Certificate:
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_san_entry(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _server_cert_usable(
    cert_path: Path, key_path: Path, ca_cert: x509.Certificate, names: Sequence[str]
) -> bool:
    """True if the stored server certificate covers ``names``, is fresh and was signed by the CA."""
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    covered = {str(v).lower() for v in san.get_values_for_type(x509.DNSName)}
    covered |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    wanted = {str(_san_entry(n).value) for n in names}
    return wanted <= covered and cert.not_valid_after_utc - RENEW_BEFORE > _now()


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(path, pem, 0o600)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file and rename, so a concurrent reader never sees half a file.

    The file is created with ``mode`` from the start: a key is never readable by others, even
    briefly.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)  # O_CREAT's mode is filtered by the umask; make it exact
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
