"""`invoke redteam --claude`: the Claude Code scenarios against the red-team cage, and their scorecard.

The scripted model joins the cage as ``api.anthropic.com`` (started here, or
reused when a kept cage still has the one an earlier ``--claude --keep`` run
left, with its TLS material from the state directory), and the cage binds an
Anthropic key: Claude Code holds the placeholder, the proxy injects the key. The scenarios run in
the cage's last agent by default: the catalog attacks from the first, and the
scanner remembers what an agent sent (its split-across-requests detector).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from kit import console
from kit.errors import CageError
from kit.redteam import claude_model, claude_report, claude_runner
from kit.redteam.compose_world import ComposeWorld

PREFIX = "claude-"


def split_ids(ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--only`` ids: (catalog ids, Claude scenario ids without their ``claude-`` prefix)."""
    catalog = [i for i in ids if not i.startswith(PREFIX)]
    claude = [i.removeprefix(PREFIX) for i in ids if i.startswith(PREFIX)]
    return catalog, claude


def run(cage, *, agent: str = "", scenarios: Sequence[str] = (), keep: bool = False, reports: Path) -> int:
    """Run the scenarios; returns the exit code (0 only when the Claude scorecard passes)."""
    model, started = _model(cage)
    try:
        agents = cage.backend.agents()
        if not agent and not agents:
            raise CageError("the red-team cage has no agent")
        chosen = agent or agents[-1]
        options = claude_runner.ClaudeOptions(scenarios=tuple(scenarios), **claude_model.binding_options(cage, chosen))
        world = ComposeWorld(cage.backend, client=cage.client)
        report = claude_runner.run(world, model, options, progress=console.info)
    finally:
        if started and not keep:
            model.remove()
    sys.stdout.write(claude_report.text(report))
    for path in claude_report.write(report, reports):
        console.info(f"wrote {path}")
    return 0 if report.ok else 1


def _model(cage) -> tuple[claude_model.ModelContainer, bool]:
    if getattr(cage, "workdir", None) is not None:
        model = claude_model.attach(cage)
        claude_model.save_tls(cage.backend.project, model.tls)
        return model, True
    kept = claude_model.kept(cage)
    if kept is None:
        raise CageError("this red-team cage was kept by a run without --claude and cannot be reconfigured from here: "
                        "remove it (`uv run invoke redteam --down`) and run again with --claude")
    console.info("using the scripted model the kept red-team cage already has")
    return kept, False


def down(project: str) -> None:
    """Remove the model a kept cage still has (``invoke redteam --down``)."""
    claude_model.remove_all(project)
