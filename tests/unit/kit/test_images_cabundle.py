"""The extra CA bundle for image builds: auto / none / path, and every bad input named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kit import cabundle
from kit.errors import ConfigError


def _cert_pem(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "corp.pem"
    path.write_bytes(_cert_pem("Corp Root") + _cert_pem("Corp Issuing"))
    return path


def test_none_means_no_bundle_even_when_variables_are_set(bundle: Path) -> None:
    assert cabundle.resolve("none", {"YOLO_CAGE_EXTRA_CA_BUNDLE": str(bundle)}) is None


def test_auto_prefers_the_explicit_variable(tmp_path: Path, bundle: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(_cert_pem("Other"))
    env = {"YOLO_CAGE_EXTRA_CA_BUNDLE": str(bundle), "PIP_CERT": str(other)}
    found = cabundle.resolve("auto", env)
    assert found is not None and found.path == bundle and found.origin == "$YOLO_CAGE_EXTRA_CA_BUNDLE"
    assert found.count == 2


@pytest.mark.parametrize("var", ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_auto_falls_back_to_the_usual_client_variables(var: str, bundle: Path) -> None:
    found = cabundle.resolve("auto", {var: str(bundle)})
    assert found is not None and found.origin == f"${var}"


def test_auto_order_is_pip_then_ssl_then_requests(tmp_path: Path) -> None:
    paths = {}
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "PIP_CERT"):
        paths[var] = tmp_path / f"{var}.pem"
        paths[var].write_bytes(_cert_pem(var))
    env = {var: str(path) for var, path in paths.items()}
    assert cabundle.resolve("auto", env).origin == "$PIP_CERT"
    del env["PIP_CERT"]
    assert cabundle.resolve("auto", env).origin == "$SSL_CERT_FILE"


def test_auto_with_nothing_set_is_no_bundle() -> None:
    assert cabundle.resolve("auto", {}) is None
    assert cabundle.resolve("", {"UNRELATED": "x"}) is None


def test_a_path_is_used_as_given(bundle: Path) -> None:
    found = cabundle.resolve(str(bundle), {})
    assert found is not None and found.origin == "--extra-ca" and found.count == 2


def test_keys_and_comments_are_dropped_from_the_copy(tmp_path: Path) -> None:
    cert = _cert_pem("Only")
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "mixed.pem"
    path.write_bytes(b"# corporate bundle\r\n" + key + cert.replace(b"\n", b"\r\n"))
    found = cabundle.load(path, "test")
    assert found.pem == cert
    assert b"PRIVATE KEY" not in found.pem


def test_a_variable_pointing_nowhere_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        cabundle.resolve("auto", {"PIP_CERT": str(tmp_path / "missing.pem")})
    assert "$PIP_CERT" in str(err.value) and "missing.pem" in str(err.value)
    assert "--extra-ca none" in str(err.value)


def test_a_file_without_certificates_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.pem"
    path.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        cabundle.resolve(str(path), {})


def test_a_broken_certificate_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="does not parse"):
        cabundle.resolve(str(path), {})


def test_sha256_identifies_the_content(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.pem"
    copy.write_bytes(bundle.read_bytes())
    assert cabundle.load(bundle, "a").sha256 == cabundle.load(copy, "b").sha256
