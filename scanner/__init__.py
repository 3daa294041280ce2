"""yolo-cage's secret scanner: a decoding, linear-time detection engine and its HTTP service.

Library use: `Scanner(load_config(None, {})).scan_request(ScanRequest(...))`.
Service: `python -m scanner --host H --port P` (docs/architecture.md has the contract).
"""

from scanner.config import ScannerConfig, load_config
from scanner.core import Result, Scanner
from scanner.request import ScanRequest

__all__ = ["Result", "ScanRequest", "Scanner", "ScannerConfig", "load_config"]
