"""What the scanner reports. A finding never carries the secret itself."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _random
from dataclasses import dataclass
from pathlib import Path

from scanner.errors import ConfigError

PATTERN = "pattern"
FINGERPRINT = "fingerprint"
HEURISTIC = "heuristic"


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    source: str
    location: str
    transforms: tuple[str, ...]
    preview: str
    fingerprint: str

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "source": self.source,
            "location": self.location,
            "transforms": list(self.transforms),
            "preview": self.preview,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True, slots=True)
class ScanIssue:
    code: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


def preview(secret: bytes, prefix: str = "") -> str:
    """At most the provider prefix and the length: `ghp_…(40)`."""
    shown = prefix if prefix and secret.startswith(prefix.encode()) and len(prefix) <= len(secret) // 2 else ""
    return f"{shown}…({len(secret)})"


class Fingerprinter:
    """HMAC-SHA256 with a per-installation key: correlates findings, reveals nothing."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ConfigError("fingerprint key must be at least 16 bytes")
        self._key = key

    def __call__(self, secret: bytes) -> str:
        return "hm:" + hmac.new(self._key, secret, hashlib.sha256).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: Path | None) -> tuple[Fingerprinter, str]:
        """Load the key (creating it, mode 0600, when absent). No path: an ephemeral key."""
        if path is None:
            return cls(_random.token_bytes(32)), "ephemeral (no key file configured)"
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_random.token_bytes(32))
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"fingerprint key file {path}: {exc.strerror or exc}") from None
        return cls(key), str(path)
