"""``python3 -m model``: serve the scripted model (see images/model/README.md).

  --port 443 --cert CHAIN.pem --key KEY.pem   TLS (the cage reaches it as https://api.anthropic.com)
  --port 8080 --plain                         plain HTTP (unit tests, local experiments)
  --scripts DIR                               scripts files written by the host (*.json, reloaded on change)
  --state DIR                                 where transcript.jsonl goes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .server import ModelServer, build, tls_context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="model", description="yolo-cage scripted Messages API (test only)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", type=Path, help="certificate chain (PEM), leaf first")
    parser.add_argument("--key", type=Path, help="the leaf's private key (PEM)")
    parser.add_argument("--plain", action="store_true", help="serve plain HTTP (no TLS)")
    parser.add_argument("--scripts", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    if not args.plain and not (args.cert and args.key):
        parser.error("TLS needs --cert and --key (or say --plain)")
    tls = None if args.plain else tls_context(args.cert, args.key)
    model = build(args.scripts, args.state)
    server = ModelServer((args.host, args.port), model, tls)
    model.transcript.record("started", port=args.port, tls=tls is not None)
    print(f"yolo-cage model ready on {args.host}:{args.port} ({'https' if tls else 'http'})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
