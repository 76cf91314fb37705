"""TLS: the client trusts Tessera's certificate through a CA file, given as
`ca_file` or as `TESSERA_CA`."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support import Database, Server
from tessera_client import (
    Client,
    ConfigError,
    ConnectError,
    Mint,
    RetryPolicy,
    UnavailableError,
    Validate,
)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


Issued = tuple[bytes, bytes, bytes]


def certificates(names: list[str], usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH) -> Issued:
    """A new CA's PEM, and a certificate it signed for `names` (and
    127.0.0.1) with its key (PEM)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tessera-client test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return _pem(ca), _pem(cert), key_pem


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, pathlib.Path]]:
    """Tessera over TLS (SQLite), and the file of the CA that signed its certificate."""
    tmp = tmp_path_factory.mktemp("tls")
    ca, cert, key = certificates(["localhost", "tessera.internal"])
    for name, pem in [("ca.crt", ca), ("tls.crt", cert), ("tls.key", key)]:
        (tmp / name).write_bytes(pem)
    database = Database("sqlite", tmp)
    server = Server(database, tmp, "--tls-cert", str(tmp / "tls.crt"), "--tls-key", str(tmp / "tls.key"))
    yield server, tmp / "ca.crt"
    server.stop()


def test_calls_over_tls_trusting_a_ca_file(tls: tuple[Server, pathlib.Path], unique: str) -> None:
    server, ca_file = tls
    assert server.url.startswith("https://127.0.0.1:")
    with Client(server.url, ca_file=ca_file) as tessera:
        tessera.wait_ready()
        minted = tessera.mint(Mint(unique))
        assert tessera.validate(Validate(minted.token)).valid
    # The certificate checked for another of its names than the URL's host.
    port = server.address[1]
    with Client(f"https://localhost:{port}", ca_pem=ca_file.read_bytes(), tls_domain="tessera.internal") as named:
        assert named.validate(Validate(minted.token)).valid


def test_from_env_reads_tessera_ca(tls: tuple[Server, pathlib.Path], unique: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server, ca_file = tls
    monkeypatch.setenv("TESSERA_URL", server.url)
    monkeypatch.setenv("TESSERA_CA", str(ca_file))
    monkeypatch.delenv("TESSERA_KEY", raising=False)
    with Client.from_env() as tessera:
        assert tessera.url == server.url
        assert tessera.validate(Validate(tessera.mint(Mint(unique)).token)).valid


def test_an_untrusted_certificate_is_refused(tls: tuple[Server, pathlib.Path], tmp: pathlib.Path,
                                             unique: str) -> None:
    server, _ = tls
    other_ca, _, _ = certificates(["elsewhere"])
    (tmp / "other.crt").write_bytes(other_ca)
    with Client(server.url, ca_file=tmp / "other.crt", timeout=2, retry=RetryPolicy.none()) as untrusted:
        with pytest.raises(ConnectError, match="CA"):
            untrusted.wait_ready(timeout=1)
        with pytest.raises(UnavailableError) as failed:
            untrusted.mint(Mint(unique))
        assert failed.value.unsent, "the handshake failed: nothing was sent"
    # Plaintext against the TLS port gets nowhere either, and says what to check.
    with Client(server.url.replace("https://", "http://"), retry=RetryPolicy.none()) as plaintext:
        with pytest.raises(ConnectError, match="https://"):
            plaintext.wait_ready(timeout=1)


def test_tls_settings_are_checked(tmp: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="ca_file") as missing:
        Client("https://127.0.0.1:1", ca_file=tmp / "nope.crt")
    assert "nope.crt" in str(missing.value)
    (tmp / "empty.crt").write_text("not a certificate")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        Client("https://127.0.0.1:1", ca_file=tmp / "empty.crt")
    with pytest.raises(ConfigError, match="need an https:// URL"):
        Client("http://127.0.0.1:1", ca_pem=b"x")


def test_mutual_tls_with_a_client_certificate(tmp: pathlib.Path, unique: str) -> None:
    ca, cert, key = certificates(["localhost"])
    client_ca, client_cert, client_key = certificates(["agent-runtime"], ExtendedKeyUsageOID.CLIENT_AUTH)
    for name, pem in [("tls.crt", cert), ("tls.key", key), ("clients-ca.crt", client_ca)]:
        (tmp / name).write_bytes(pem)
    server = Server(Database("sqlite", tmp), tmp, "--tls-cert", str(tmp / "tls.crt"), "--tls-key",
                    str(tmp / "tls.key"), "--tls-client-ca", str(tmp / "clients-ca.crt"))
    try:
        with Client(server.url, ca_pem=ca, client_cert=(client_cert, client_key)) as tessera:
            assert tessera.validate(Validate(tessera.mint(Mint(unique)).token)).valid
        with Client(server.url, ca_pem=ca, timeout=2, retry=RetryPolicy.none()) as anonymous:
            with pytest.raises(UnavailableError):
                anonymous.mint(Mint(unique))
    finally:
        server.stop()
