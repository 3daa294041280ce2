"""Which backend runs the cage: the settings' `backend`, unless a flag says otherwise.

Each backend registers a factory in ``FACTORIES`` (settings, options) -> Backend.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit import settings as settings_mod
from kit.backend import Backend
from kit.errors import CageError


def _compose(settings: settings_mod.Settings, **options: Any) -> Backend:
    from kit.compose import ComposeBackend

    return ComposeBackend(settings, **options)


def _kind(settings: settings_mod.Settings, **options: Any) -> Backend:
    from kit.kind import KindBackend

    return KindBackend(settings, **options)


FACTORIES: dict[str, Callable[..., Backend]] = {"compose": _compose, "kind": _kind}


def choose_backend_name(settings: settings_mod.Settings, *, compose: bool = False, kind: bool = False) -> str:
    if compose and kind:
        raise CageError("choose one backend: --compose or --kind, not both")
    if compose:
        return "compose"
    if kind:
        return "kind"
    return settings.backend


def backend(*, compose: bool = False, kind: bool = False, settings_path: Path | None = None, **options: Any) -> Backend:
    """The backend to use, built from the settings (checked first: nothing starts on bad settings)."""
    settings = settings_mod.load(settings_path)
    name = choose_backend_name(settings, compose=compose, kind=kind)
    factory = FACTORIES.get(name)
    if factory is None:
        raise CageError(f"the {name} backend is not part of this checkout (available: {', '.join(FACTORIES)})")
    return factory(settings, **options)
