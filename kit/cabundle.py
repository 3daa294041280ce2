"""The extra CA bundle used by image builds behind a TLS-intercepting proxy.

Corporate networks often re-sign TLS (pip, npm, apt over https) with their own
CA; builds then need that CA inside the builder stages. The choice is:

- ``auto``: ``$YOLO_CAGE_EXTRA_CA_BUNDLE``, else the first of ``$PIP_CERT``,
  ``$SSL_CERT_FILE``, ``$REQUESTS_CA_BUNDLE`` that is set (the variables a
  machine behind such a proxy already sets for its own clients), else none;
- ``none``: no extra CA;
- a path to a PEM file.

A variable or path that is set but unusable is an error, never silently
skipped: a build that quietly loses the CA fails later with a TLS error that
hides the cause.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kit.errors import ConfigError

AUTO = "auto"
NONE = "none"
# Checked in this order by ``auto``; the first one set wins.
EXPLICIT_VAR = "YOLO_CAGE_EXTRA_CA_BUNDLE"
FALLBACK_VARS = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class ExtraCA:
    """A resolved extra CA bundle: where it came from and its certificates (PEM)."""

    origin: str  # e.g. "$PIP_CERT" or "--extra-ca"
    path: Path
    pem: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pem).hexdigest()

    @property
    def count(self) -> int:
        return self.pem.count(_PEM_BEGIN)

    def describe(self) -> str:
        return f"{self.path} ({self.count} certificate(s), from {self.origin})"


def resolve(choice: str, environ: Mapping[str, str] | None = None) -> ExtraCA | None:
    """Turn ``auto`` / ``none`` / a path into the bundle to use (``None``: no extra CA)."""
    env = os.environ if environ is None else environ
    choice = (choice or AUTO).strip()
    if choice == NONE:
        return None
    if choice != AUTO:
        return load(Path(choice).expanduser(), "--extra-ca")
    for var in (EXPLICIT_VAR, *FALLBACK_VARS):
        value = env.get(var, "").strip()
        if value:
            return load(Path(value).expanduser(), f"${var}")
    return None


def load(path: Path, origin: str) -> ExtraCA:
    """Read and check a PEM bundle; every problem is reported with the fix."""
    where = f"extra CA bundle {path} (from {origin})"
    if not path.is_file():
        raise ConfigError(where, [f"{path} is not a file; point {origin} at a PEM bundle or use --extra-ca none"])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(where, [f"cannot read it: {exc.strerror}"]) from exc
    pem = certificates_only(raw)
    if not pem:
        raise ConfigError(where, ["it holds no PEM certificate ('-----BEGIN CERTIFICATE-----' blocks)"])
    _check_parses(pem, where)
    return ExtraCA(origin=origin, path=path, pem=pem)


def certificates_only(raw: bytes) -> bytes:
    """The CERTIFICATE blocks of a PEM file, normalised (no keys, no comments, LF endings)."""
    text = raw.replace(b"\r\n", b"\n")
    blocks = []
    start = text.find(_PEM_BEGIN)
    while start != -1:
        end_marker = b"-----END CERTIFICATE-----"
        end = text.find(end_marker, start)
        if end == -1:
            break
        blocks.append(text[start : end + len(end_marker)] + b"\n")
        start = text.find(_PEM_BEGIN, end)
    return b"".join(blocks)


def _check_parses(pem: bytes, where: str) -> None:
    import warnings

    from cryptography import x509

    try:
        with warnings.catch_warnings():
            # Some public roots have non-positive serial numbers: accepted, with a warning.
            warnings.simplefilter("ignore")
            x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(where, [f"a certificate in it does not parse: {exc}"]) from exc
