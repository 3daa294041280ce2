"""`invoke policy.check FILE [--production]`: the proxy policy, checked before anything starts."""

from __future__ import annotations

from pathlib import Path

from kit import console
from kit.errors import CageError, ConfigError


def check(path: str, production: bool = False) -> None:
    """Raise ConfigError listing every problem; print a summary (and what loosens isolation) when valid."""
    from addon import policy as model

    if not path:
        raise CageError("name the policy file to check, e.g. `invoke policy.check addon/policy.example.yaml`")
    try:
        checked = model.check(Path(path), production)
    except model.PolicyError as exc:
        raise ConfigError(exc.source, exc.problems) from None
    print(f"{path}: valid{' for production' if production else ''}")
    print(model.summary(checked))
    for item in model.loosening(checked):
        console.warn(f"loosens isolation: {item} (refused with --production)")
