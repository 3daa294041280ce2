"""`invoke redteam`: the catalog against a red-team cage, the scorecard, the reports.

A red-team cage is a Compose cage with the attacker's world around it
(:mod:`kit.redteam.testcage`), project ``<settings project>-redteam``. If one is
running it is used as is; otherwise one is started and, unless ``keep``,
removed afterwards. The user's own cage is never attacked in place: it has no
sink, and its proxy resolves names with the host's real resolver.
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
    if kind:
        raise CageError(
            "the red team's kind world (an attacker sink and resolver inside the cluster) is not built yet: "
            "run `invoke redteam --compose`; on kind the live NetworkPolicy tests (tests/kind, marker kind) run instead")
    settings = settings_mod.load()
    project = redteam_project(settings)
    cage = testcage.find(project)
    started = cage is None
    if started:
        console.info(f"starting a red-team cage (project {project}); `--keep` leaves it running")
        cage = testcage.start(project)
    else:
        console.info(f"using the running red-team cage (project {project})")
    catalog_ids, claude_ids = claude_cli.split_ids([i.strip() for i in only.split(",") if i.strip()])
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


def down() -> None:
    from kit import settings as settings_mod
    from kit.redteam import claude_cli

    project = redteam_project(settings_mod.load())
    cage = testcage.find(project)
    if cage is None:
        console.info(f"no red-team cage {project} is running")
        return
    cage.stop()
    claude_cli.down(project)
    console.info(f"removed the red-team cage {project}")


def _attack(cage: testcage.TestCage, agent: str, only: str, allow_offhost: bool, reports: Path) -> int:
    from kit.redteam.compose_world import ComposeWorld

    world = ComposeWorld(cage.backend, client=cage.client, allow_offhost=allow_offhost)
    ids = [i.strip() for i in only.split(",") if i.strip()]
    report = runner.run(world, runner.Options(agent=agent or None, ids=ids), progress=console.info)
    sys.stdout.write(scorecard.text(report))
    for path in scorecard.write(report, reports):
        console.info(f"wrote {path}")
    return 0 if report.ok else 1
