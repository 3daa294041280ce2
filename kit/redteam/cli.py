"""`invoke redteam`: the catalog against a red-team cage, the scorecard, the reports.

A red-team cage is a cage with the attacker's world around it: on Compose
(:mod:`kit.redteam.testcage`) project ``<settings project>-redteam``; on kind
(:mod:`kit.redteam.kind_cage`) its own cluster ``<cluster_name>-redteam``. If
one is running it is used (on kind its idempotent bring-up runs again first);
otherwise one is started and, unless ``keep``, removed afterwards. The user's
own cage is never attacked in place: it has no sink, and its proxy resolves
names with a real resolver.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kit import console
from kit.errors import CageError
from kit.redteam import runner, scorecard, testcage

REPORTS = Path(__file__).resolve().parents[2] / "reports"


def redteam_project(settings) -> str:
    return f"{settings.project}-redteam"


def run(*, compose: bool = False, kind: bool = False, keep: bool = False, agent: str = "", only: str = "", allow_offhost: bool = False,
        claude: bool = False, reports: Path = REPORTS) -> int:
    """Run the red team; returns the exit code (0 only when the scorecard passes).

    ``claude`` adds the Claude Code scenarios (:mod:`kit.redteam.claude_cli`);
    ``only`` ids starting with ``claude-`` pick among those, and when ``only``
    names nothing else the catalog is skipped.
    """
    from kit import settings as settings_mod
    from kit.redteam import claude_cli

    if compose and kind:
        raise CageError("choose one backend: --compose or --kind, not both")
    catalog_ids, claude_ids = claude_cli.split_ids([i.strip() for i in only.split(",") if i.strip()])
    if kind:
        if claude or claude_ids:
            raise CageError("the Claude Code scenarios (--claude, claude-* ids) run on the Compose backend only "
                            "(their model stand-in is part of the Compose attacker world)")
        return _run_kind(keep=keep, agent=agent, only=",".join(catalog_ids), allow_offhost=allow_offhost, reports=reports)
    settings = settings_mod.load()
    project = redteam_project(settings)
    cage = testcage.find(project)
    started = cage is None
    if started:
        console.info(f"starting a red-team cage (project {project}); `--keep` leaves it running")
        wanted = testcage.CLAUDE_IMAGES if claude or claude_ids else testcage.IMAGES
        cage = testcage.start(project, images=wanted)
    else:
        console.info(f"using the running red-team cage (project {project})")
    try:
        code = 0
        if catalog_ids or not claude_ids:
            code = _attack(cage, agent, ",".join(catalog_ids), allow_offhost, reports)
        if claude or claude_ids:
            code = max(code, claude_cli.run(cage, agent=agent, scenarios=claude_ids, keep=keep, reports=reports))
        return code
    finally:
        if started and not keep:
            console.info(f"removing the red-team cage {project}")
            cage.stop()
        elif keep:
            console.info(f"kept: project {project} (remove it with `uv run invoke redteam --down`)")


def _run_kind(*, keep: bool, agent: str, only: str, allow_offhost: bool, reports: Path) -> int:
    from kit import settings as settings_mod
    from kit.redteam import kind_cage

    backend = kind_cage.backend_for(settings_mod.load())
    started = not backend.cluster_exists()
    verb = "starting" if started else "reusing (and bringing up to date)"
    console.info(f"{verb} the red team's kind cage (cluster {backend.cluster}, project {backend.project}); "
                 "`--keep` leaves a new one running")
    try:
        backend.up()
        return _score(backend.world(allow_offhost=allow_offhost), agent, only, reports)
    finally:
        if started and not keep:
            kind_cage.remove(backend)
        else:
            console.info(f"kept: kind cluster {backend.cluster} (remove it with `uv run invoke redteam --kind --down`)")


def down(*, kind: bool = False) -> None:
    from kit import settings as settings_mod
    from kit.redteam import claude_cli

    if kind:
        from kit.redteam import kind_cage

        backend = kind_cage.backend_for(settings_mod.load(), build=False)
        if not kind_cage.remove(backend):
            console.info(f"no red-team kind cluster {backend.cluster} exists")
        return
    project = redteam_project(settings_mod.load())
    cage = testcage.find(project)
    if cage is None:
        console.info(f"no red-team cage {project} is running")
        return
    claude_cli.down(project)  # the model first: the cage's stop removes the state its TLS files live in
    cage.stop()
    console.info(f"removed the red-team cage {project}")


def _attack(cage: testcage.TestCage, agent: str, only: str, allow_offhost: bool, reports: Path) -> int:
    from kit.redteam.compose_world import ComposeWorld

    return _score(ComposeWorld(cage.backend, client=cage.client, allow_offhost=allow_offhost), agent, only, reports)


def _score(world, agent: str, only: str, reports: Path) -> int:
    """Run the catalog in ``world``, print the scorecard, write the reports; the exit code."""
    ids = [i.strip() for i in only.split(",") if i.strip()]
    report = runner.run(world, runner.Options(agent=agent or None, ids=ids), progress=console.info)
    sys.stdout.write(scorecard.text(report))
    for path in scorecard.write(report, reports):
        console.info(f"wrote {path}")
    return 0 if report.ok else 1
