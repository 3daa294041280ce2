"""``python -m addon check --policy FILE [--agents FILE] [--production]``: check the proxy's inputs.

For the proxy image to run before mitmdump starts, so a bad file stops the
container with every problem listed, before any port is open.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from addon import policy
from addon.identity import RegistryError, parse_registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m addon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check a policy file and, optionally, an agent registry")
    check.add_argument("--policy", required=True, type=Path)
    check.add_argument("--agents", type=Path, help="agent registry (JSON); omit when the proxy runs without one")
    check.add_argument("--production", action="store_true", help="refuse every unsafe_* setting")
    args = parser.parse_args(argv)
    problems = []
    try:
        policy.check(args.policy, args.production)
    except policy.PolicyError as exc:
        problems.append(str(exc))
    if args.agents is not None:
        try:
            parse_registry(args.agents.read_text(encoding="utf-8"), str(args.agents))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{args.agents}: cannot read: {exc}")
        except RegistryError as exc:
            problems.append(str(exc))
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
