"""kit.state and kit.ca: private files, tokens reused, one CA per installation, key never world-readable."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kit import ca, state
from kit.errors import CageError


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CAGE_STATE_DIR", str(tmp_path / "state"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_project_dir_is_private_and_under_the_env_root(tmp_path: Path) -> None:
    path = state.project_dir("p1")
    assert path == tmp_path / "state" / "p1"
    assert mode(path) == 0o700 and mode(path.parent) == 0o700


def test_tokens_are_created_once_private_and_distinct() -> None:
    a1, a2, b = state.agent_token("p", "a"), state.agent_token("p", "a"), state.agent_token("p", "b")
    assert a1 == a2 and a1 != b and len(a1) >= 40
    assert mode(state.project_dir("p") / "tokens" / "a") == 0o600


def test_a_secret_readable_by_others_is_refused() -> None:
    state.agent_token("p", "a")
    path = state.project_dir("p") / "tokens" / "a"
    path.chmod(0o644)
    with pytest.raises(CageError, match="chmod 600"):
        state.agent_token("p", "a")


def test_forget_removes_tokens_but_keeps_the_ca() -> None:
    state.agent_token("p", "a")
    ca.ensure("p")
    state.forget("p")
    assert not (state.project_dir("p") / "tokens").exists()
    assert (state.project_dir("p") / "ca" / ca.KEY_FILE).exists()


def test_ca_is_generated_once_and_reused() -> None:
    first = ca.ensure("p")
    assert ca.ensure("p") == first
    folder = state.project_dir("p") / "ca"
    assert mode(folder / ca.KEY_FILE) == 0o600
    assert mode(folder / ca.CERT_FILE) == 0o644
    assert b"PRIVATE KEY" not in (folder / ca.CERT_FILE).read_bytes()


def test_ca_certificate_is_a_constrained_ca() -> None:
    cert = ca.ensure("p").certificate
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is True and basic.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.subject == cert.issuer


def test_mitmproxy_reads_the_ca_and_signs_leaf_certificates(tmp_path: Path) -> None:
    from mitmproxy import certs

    confdir = tmp_path / "confdir"
    confdir.mkdir()
    cage_ca = ca.ensure("p")
    (confdir / "mitmproxy-ca.pem").write_bytes(cage_ca.mitmproxy_pem())
    store = certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    leaf = store.get_cert("rentry.co", [])
    assert leaf.cert.cn == "rentry.co"
    assert leaf.cert.issuer == [("O", "yolo-cage"), ("CN", "yolo-cage CA (p)")]


def test_ca_close_to_expiry_is_renewed() -> None:
    old = ca.ensure("p", now=dt.datetime.now(dt.UTC) - ca.VALIDITY + dt.timedelta(days=5))
    fresh = ca.ensure("p")
    assert fresh != old
    assert fresh.certificate.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)


def test_mismatched_or_incomplete_ca_is_an_error() -> None:
    ca.ensure("p")
    folder = state.project_dir("p") / "ca"
    other = ca.generate("other")
    state.write_private(folder / ca.CERT_FILE, other.cert_pem, mode=0o644)
    with pytest.raises(CageError, match="does not match"):
        ca.ensure("p")
    (folder / ca.KEY_FILE).unlink()
    with pytest.raises(CageError, match="incomplete"):
        ca.ensure("p")
