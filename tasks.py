"""yolo-cage tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Thin on purpose: every task is a few typed lines calling kit/.
"""

from __future__ import annotations

import os
import subprocess
import sys

from invoke import Collection, Exit, task

from kit import console
from kit.errors import CageError


def _guard(fn):
    """Run a kit call; print a CageError as 'ERROR: ...' (traceback only with YOLO_CAGE_DEBUG=1)."""
    try:
        return fn()
    except CageError as exc:
        if os.environ.get("YOLO_CAGE_DEBUG") == "1":
            raise
        console.error(str(exc))
        # A failed step carries the failed command's output on its cause.
        output = getattr(exc, "output", "") or getattr(getattr(exc, "cause", None), "output", "")
        if output:
            print(output, file=sys.stderr)
        raise Exit(code=1) from None


@task(
    help={
        "suite": "unit | integration | redteam | kind | all (default: all)",
        "pytest_args": "extra arguments passed to pytest, e.g. '-k scanner -x'",
        "no_prepare": "skip the prerequisite checks and image builds (the images must exist already)",
    }
)
def test(c, suite="all", pytest_args="", no_prepare=False):
    """Run the test suites (checks prerequisites and builds the images they need first)."""
    from kit import testrun

    code = _guard(lambda: testrun.run_pytest(suite, pytest_args.split(), prepare_first=not no_prepare))
    if code:
        raise Exit(code=code)


@task(
    help={
        "only": "comma-separated images: agent, proxy, scanner, netguard; sink, model, gitserver (test only); or all (default: every product image)",
        "base": "where the base image comes from: auto (default), registry (pull the pinned official image) or offline (debootstrap, needs root)",
        "extra_ca": "extra CA bundle for builds behind a TLS-intercepting proxy: auto (default: $YOLO_CAGE_EXTRA_CA_BUNDLE, $PIP_CERT, ...), none, or a PEM file",
        "runtime_extra_ca": "keep the extra CA in the proxy image too (to verify upstream TLS re-signed by a corporate interceptor)",
        "no_cache": "rebuild every layer (fresh packages)",
        "refresh_base": "build a new offline base image even if one exists",
    }
)
def build(c, only="", base="", extra_ca="", runtime_extra_ca=False, no_cache=False, refresh_base=False):
    """Build the cage's images (base image first when needed)."""
    from kit import images, settings

    _guard(
        lambda: images.build(
            images.options(
                settings.load().images,
                only=only or None,
                base=base or None,
                extra_ca=extra_ca or None,
                runtime_extra_ca=runtime_extra_ca,
                no_cache=no_cache,
                refresh_base=refresh_base,
            )
        )
    )


_BACKEND_HELP = {
    "compose": "use the Docker Compose backend (the default unless the settings say `backend: kind`)",
    "kind": "use the kind (Kubernetes) backend",
}


def _cage(compose: bool = False, kind: bool = False, **options):
    from kit import cage

    return _guard(lambda: cage.backend(compose=compose, kind=kind, **options))


@task(help={**_BACKEND_HELP, "retain": "on failure keep what was built (to debug it) instead of removing it"})
def up(c, compose=False, kind=False, retain=False):
    """Bring the cage up: build images, write its configuration, start it, wait until healthy."""
    backend = _cage(compose, kind)
    _guard(lambda: backend.up(retain=retain))


@task(help={**_BACKEND_HELP, "remove_data": "also remove the data volumes (workspaces, homes, audit log)"})
def down(c, compose=False, kind=False, remove_data=False):
    """Remove the cage; keeps the data volumes (and says which) unless --remove-data."""
    backend = _cage(compose, kind)
    kept = _guard(lambda: backend.down(remove_data=remove_data))
    if kept:
        console.info("Kept data volumes (remove with `uv run invoke down --remove-data`): " + ", ".join(kept))
    else:
        console.info("Nothing kept: no container, network or volume of the cage is left.")


@task(help=_BACKEND_HELP)
def status(c, compose=False, kind=False):
    """Show what runs in the cage, by role and agent, with health."""
    st = _guard(lambda: _cage(compose, kind).status())
    print(f"{st.backend} project {st.project}: {'up' if st.up else 'down'}")
    for comp in st.components:
        health = {True: "healthy", False: "unhealthy", None: "-"}[comp.healthy]
        print(f"  {comp.role:9} {comp.agent or '':12} {comp.name:40} {comp.state:10} {health}")


@task(help={**_BACKEND_HELP, "agent": "the agent's name (default: the first agent in the settings)"})
def shell(c, agent="", compose=False, kind=False):
    """Open a shell in an agent, as its user."""
    backend = _cage(compose, kind)
    _guard(lambda: backend.shell(agent or backend.agents()[0]))


@task(help={**_BACKEND_HELP, "agent": "the agent's name (default: the first agent in the settings)"})
def attach(c, agent="", compose=False, kind=False):
    """Attach to the agent's tmux session running `claude --dangerously-skip-permissions`."""
    backend = _cage(compose, kind)
    _guard(lambda: backend.attach(agent or backend.agents()[0]))


@task(
    help={
        **_BACKEND_HELP,
        "target": "proxy, scanner, netguard, or an agent's name (default: proxy)",
        "follow": "keep printing new lines",
        "tail": "how many past lines to show (default 200)",
    }
)
def logs(c, target="proxy", follow=False, tail=200, compose=False, kind=False):
    """Print the logs of a part of the cage."""
    backend = _cage(compose, kind)
    _guard(lambda: backend.logs(target, follow=follow, tail=tail))


@task(
    help={
        **_BACKEND_HELP,
        "tail": "only the last N decisions (default 50; 0 for all)",
        "decision": "only this decision: allow, block, error or report",
        "agent": "only this agent's requests",
        "json": "print the raw JSON lines",
    }
)
def audit(c, tail=50, decision="", agent="", json=False, compose=False, kind=False):
    """Show the proxy's decisions (audit log): what was allowed or blocked, and why."""
    from kit import auditlog

    backend = _cage(compose, kind)
    lines = _guard(lambda: backend.read_audit(tail=None))
    auditlog.show(lines, tail=tail, decision=decision or None, agent=agent or None, raw=json)


@task(help={"settings": "the settings file to check (default: $YOLO_CAGE_SETTINGS or ./yolo-cage.yaml)"})
def doctor(c, settings=""):
    """Check every prerequisite (engine, Compose, host isolation, settings, policy, disk) and say how to fix each."""
    from pathlib import Path

    from kit import doctor as doc

    _guard(lambda: doc.doctor(Path(settings) if settings else None))


@task(name="scanner", help={"quick": "fewer runs and samples (about a minute)"})
def bench_scanner(c, quick=False):
    """Benchmark the scanner against detect-secrets and llm-guard (speed, recall, hyperscan vs RE2)."""
    argv = [sys.executable, "bench/scanner_bench.py"] + (["--quick"] if quick else [])
    code = subprocess.call(argv)
    if code:
        raise Exit(code=code)


@task(
    name="proxy",
    help={
        "requests": "timed requests per case and proxy (default 300)",
        "concurrency": "clients for the throughput case (default 8)",
    },
)
def bench_proxy(c, requests=300, concurrency=8):
    """Benchmark the cage proxy against plain mitmdump (added latency p50/p99, requests per second)."""
    argv = [sys.executable, "bench/proxy_bench.py", "--requests", str(requests), "--concurrency", str(concurrency)]
    code = subprocess.call(argv)
    if code:
        raise Exit(code=code)


@task(
    name="check",
    help={"path": "the policy file to check", "production": "also refuse every unsafe_* setting (and scan mode off)"},
)
def policy_check(c, path, production=False):
    """Check a proxy policy file: strict, every problem reported at once."""
    from kit.policycheck import check

    _guard(lambda: check(path, production))


@task(
    help={
        "compose": "attack a Compose cage (the default)",
        "kind": "attack a kind cage (its own cluster <cluster_name>-redteam, with the attacker's world in it)",
        "keep": "leave the red-team cage running afterwards (the next run reuses it)",
        "down": "only remove a red-team cage left by --keep (with --kind: the red team's kind cluster)",
        "agent": "the agent to attack from (default: the first)",
        "only": "comma-separated technique ids or id prefixes, e.g. 'net-,content-query'",
        "allow_offhost": "also send attacks that, if not stopped, would leave this machine",
        "claude": "also drive the real Claude Code CLI in the agent with a scripted malicious model (ids claude-* in --only)",
    }
)
def redteam(c, compose=False, kind=False, keep=False, down=False, agent="", only="", allow_offhost=False, claude=False):
    """Attack a cage for real (catalog of exfiltration techniques); scorecard + reports/redteam-*.{txt,json,xml}."""
    from kit.redteam import cli

    if down:
        _guard(lambda: cli.down(kind=kind))
        return
    code = _guard(lambda: cli.run(compose=compose, kind=kind, keep=keep, agent=agent, only=only, allow_offhost=allow_offhost,
                                  claude=claude))
    if code:
        raise Exit(code=code)


# --- agent.*: many agents at once, each on its own branch ------------------------------------------

_AGENT_HELP = {**_BACKEND_HELP, "name": "the agent's name (a DNS label: a-z, 0-9, '-', up to 24 characters)"}


@task(
    name="new",
    help={
        **_AGENT_HELP,
        "branch": "the git branch the agent works on: an existing one is checked out, a new one is made "
        "from the default branch (default: yolo-cage/<name>)",
        "repo": "the repository: an https URL, an SSH URL (fetched over SSH here; the agent's origin is its "
        "https form) or a local path (default: none, an empty workspace)",
        "memory": "memory limit, e.g. 4g (default 4g)",
        "cpus": "CPU limit, e.g. 1.5 (default 2)",
        "pids": "process limit (default 1024)",
        "retain": "on failure keep what was built (to debug it) instead of removing it",
    },
)
def agent_new(c, name, branch="", repo="", memory="", cpus="", pids=0, compose=False, kind=False, retain=False):
    """Start one more agent on a running cage, on its own branch; the other agents are not touched."""
    from kit import agents

    backend = _cage(compose, kind)
    spec = _guard(lambda: agents.NewAgent(name, branch or None, repo or None, agents.resources(memory, cpus, pids)))
    report = _guard(lambda: agents.new(backend, spec, retain=retain))
    for line in agents.describe(report, agents.ops_for(backend).kind):
        console.info(line)
    console.info(f"Next: uv run invoke agent.attach {name}")


@task(name="list", help=_BACKEND_HELP)
def agent_list(c, compose=False, kind=False):
    """List the agents: where each comes from, its branch, repository and state."""
    from kit import agents

    backend = _cage(compose, kind)
    rows = _guard(lambda: agents.listing(backend))
    print(f"{'name':24} {'from':10} {'branch':28} {'state':12} {'health':9} repository")
    for r in rows:
        health = {True: "healthy", False: "unhealthy", None: "-"}[r.healthy]
        print(f"{r.name:24} {r.source:10} {r.branch:28} {r.state:12} {health:9} {r.repo}")


@task(name="attach", help=_AGENT_HELP)
def agent_attach(c, name, compose=False, kind=False):
    """Attach to the agent's tmux session running Claude Code (detach with Ctrl-b d; it keeps running)."""
    from kit import agents

    backend = _cage(compose, kind)
    _guard(lambda: backend.attach(agents.known_agent(backend, name)))


@task(name="shell", help=_AGENT_HELP)
def agent_shell(c, name, compose=False, kind=False):
    """Open a shell in the agent, as its user."""
    from kit import agents

    backend = _cage(compose, kind)
    _guard(lambda: backend.shell(agents.known_agent(backend, name)))


@task(name="logs", help={**_AGENT_HELP, "follow": "keep printing new lines", "tail": "how many past lines (default 200)"})
def agent_logs(c, name, follow=False, tail=200, compose=False, kind=False):
    """Print the agent's container or pod logs."""
    from kit import agents

    backend = _cage(compose, kind)
    _guard(lambda: backend.logs(agents.known_agent(backend, name), follow=follow, tail=tail))


@task(
    name="rm",
    help={**_AGENT_HELP, "keep_workspace": "keep the agent's workspace volume (its checkout and uncommitted work)"},
)
def agent_rm(c, name, keep_workspace=False, compose=False, kind=False):
    """Remove one agent made with agent.new: identity, container or pod, network, volumes, credential."""
    from kit import agents

    backend = _cage(compose, kind)
    removed = _guard(lambda: agents.remove(backend, name, keep_workspace=keep_workspace))
    console.info(f"Removed agent {name}: " + (", ".join(removed) or "its record and credential (nothing was running)"))


@task(
    name="agents",
    help={"runs": "agents started (and removed) one after another for the timings (default 5)",
          "settle": "seconds an idle agent is left alone before its memory is read (default 20)"},
)  # fmt: skip
def bench_agents(c, runs=5, settle=20):
    """Benchmark agents: time to start one more on a warm cage (p50), memory of an idle agent."""
    argv = [sys.executable, "bench/agents_bench.py", "--runs", str(runs), "--settle", str(settle)]
    code = subprocess.call(argv)
    if code:
        raise Exit(code=code)


bench = Collection("bench", bench_scanner, bench_proxy, bench_agents)
policy = Collection("policy", policy_check)
agent = Collection("agent", agent_new, agent_list, agent_attach, agent_shell, agent_logs, agent_rm)
ns = Collection(test, build, up, down, status, shell, attach, logs, audit, doctor, redteam, bench, policy, agent)
