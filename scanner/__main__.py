"""`python -m scanner --host H --port P [--secrets-dir DIR] [--config FILE] [--key-file FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from pathlib import Path

from scanner.errors import ConfigError


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scanner", description="yolo-cage secret scanner service")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--config", type=Path, help="ScannerConfig YAML file (strict)")
    p.add_argument("--secrets-dir", type=Path, help="operator secrets: one value per file, file name = name")
    p.add_argument("--key-file", type=Path, help="fingerprint HMAC key (created if absent)")
    p.add_argument("--workers", type=int, help="scans running at once")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from scanner.config import load_config
    from scanner.core import Scanner
    from scanner.service import ListenError, run

    try:
        cfg = load_config(args.config, {"secrets_dir": args.secrets_dir, "key_file": args.key_file, "workers": args.workers})
        scanner = Scanner(cfg)
    except ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("scanner").info(
        "ready: %d rules, %d secrets, fingerprint key %s", len(scanner.rules), len(scanner.loaded.secrets), scanner.key_source
    )
    # The compiled rules and loaded plugins are a large heap that lives as long as the process:
    # out of the collector's generations, a full collection no longer walks it (p99 scan time).
    gc.freeze()
    try:
        asyncio.run(run(scanner, args.host, args.port))
    except ListenError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
