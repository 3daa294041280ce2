"""The scanner's own exceptions (all of them, in one place)."""

from __future__ import annotations


class ScannerError(Exception):
    """Base class."""


class ConfigError(ScannerError):
    """Bad configuration (file, flags, secrets directory, key file): refuse to start."""


class BadScanRequest(ScannerError):
    """A malformed scan request: the service answers 400 with this message."""


class BodyError(ScannerError):
    """A body part that cannot be scanned: the verdict becomes `invalid` with this code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
