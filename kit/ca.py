"""The cage CA: generated once per installation, kept in the state directory.

The proxy (mitmproxy) signs a certificate per destination with it, so the
private key goes to the proxy only; agents get the certificate and nothing
else. mitmproxy also uses the CA key as the key of every leaf certificate it
mints, which is one reason for P-256: a signature per TLS handshake stays cheap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kit import console, state
from kit.errors import CageError

VALIDITY = dt.timedelta(days=825)
# Renew well before expiry: a CA that lapses mid-session breaks every agent at once.
RENEW_BEFORE = dt.timedelta(days=30)
KEY_FILE = "ca.key"
CERT_FILE = "ca.crt"


@dataclass(frozen=True)
class CageCA:
    key_pem: bytes
    cert_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def mitmproxy_pem(self) -> bytes:
        """What mitmproxy reads as ``<confdir>/mitmproxy-ca.pem``: key then certificate."""
        return self.key_pem + self.cert_pem

    def fingerprint(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex(":")


def generate(common_name: str, *, now: dt.datetime | None = None) -> CageCA:
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "yolo-cage"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # Backdated a little: clocks in containers and hosts drift.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CageCA(key_pem=key_pem, cert_pem=cert.public_bytes(serialization.Encoding.PEM))


def load(folder: Path) -> CageCA | None:
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    if not key_path.exists() and not cert_path.exists():
        return None
    if not (key_path.exists() and cert_path.exists()):
        raise CageError(f"{folder}: the CA is incomplete (key or certificate missing); remove the folder to regenerate it")
    ca = CageCA(key_pem=state.read_private(key_path), cert_pem=cert_path.read_bytes())
    _check_pair(ca, folder)
    return ca


def _check_pair(ca: CageCA, folder: Path) -> None:
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if key.public_key() != ca.certificate.public_key():
        raise CageError(f"{folder}: the CA key does not match its certificate; remove the folder to regenerate it")


def ensure(project: str, *, now: dt.datetime | None = None) -> CageCA:
    """The project's CA, generated on first use and renewed when close to expiry."""
    now = now or dt.datetime.now(dt.UTC)
    folder = state.project_dir(project) / "ca"
    ca = load(folder)
    if ca is not None and ca.certificate.not_valid_after_utc - now > RENEW_BEFORE:
        return ca
    if ca is not None:
        console.warn(f"the cage CA in {folder} expires soon; generating a new one (agents get it on this `up`)")
    ca = generate(f"yolo-cage CA ({project})", now=now)
    state.write_private(folder / KEY_FILE, ca.key_pem)
    state.write_private(folder / CERT_FILE, ca.cert_pem, mode=0o644)
    return ca
