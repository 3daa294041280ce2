"""The sink's TLS: its own CA (made at start) and a certificate for any name.

The CA certificate goes to ``<capture>/sink-ca.crt`` so a test can tell the
proxy to trust it upstream. Leaf certificates are made on demand for the SNI
name the client asks for (the sink answers for pastebin.com, exfil hosts...),
strict enough for Python 3.13's VERIFY_X509_STRICT and for mitmproxy.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALPN = ["h2", "http/1.1"]
DEFAULT_NAME = "sink"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))


def make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = x509.CertificateBuilder().subject_name(_name("yolo-cage test sink CA")).issuer_name(_name("yolo-cage test sink CA"))
    builder = _validity(builder, 365).serial_number(x509.random_serial_number()).public_key(key.public_key())
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(_usage(cert_sign=True), critical=True).add_extension(ski, critical=False)
    return key, builder.sign(key, hashes.SHA256())


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class CertAuthority:
    def __init__(self, scratch: Path | None = None) -> None:
        self.key, self.cert = make_ca()
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._contexts: dict[str, ssl.SSLContext] = {}
        # ssl loads certificates only from files; on a read-only root the
        # capture volume is the one writable place (these keys are throwaway).
        self._scratch = scratch or Path(tempfile.mkdtemp(prefix="sink-tls-"))
        self._scratch.mkdir(parents=True, exist_ok=True, mode=0o700)

    def ca_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def leaf(self, name: str) -> x509.Certificate:
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = x509.CertificateBuilder().subject_name(_name(name[:64])).issuer_name(self.cert.subject)
        builder = _validity(builder, 30).serial_number(x509.random_serial_number()).public_key(self._leaf_key.public_key())
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(name)]), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(_usage(cert_sign=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(self._leaf_key.public_key()), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def context_for(self, name: str) -> ssl.SSLContext:
        """A server context holding a certificate for ``name`` (made once, then cached)."""
        name = (name or DEFAULT_NAME).lower().rstrip(".")
        if name not in self._contexts:
            self._contexts[name] = self._new_context(name)
        return self._contexts[name]

    def _new_context(self, name: str) -> ssl.SSLContext:
        path = self._scratch / f"{len(self._contexts)}.pem"
        key = self._leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.write_bytes(self.leaf(name).public_bytes(serialization.Encoding.PEM) + self.ca_pem() + key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(path)
        ctx.set_alpn_protocols(ALPN)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """The listening context: picks the certificate by SNI, offers h2 and http/1.1."""
        ctx = self.context_for(DEFAULT_NAME)

        def choose(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            # Server-side SSL objects do not expose the SNI name: keep it for the capture.
            sslobj.sink_sni = server_name  # type: ignore[attr-defined]
            sslobj.context = self.context_for(server_name or DEFAULT_NAME)

        ctx.sni_callback = choose
        return ctx
