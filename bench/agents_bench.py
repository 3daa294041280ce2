"""Agents: how long one more agent takes to start on a warm cage, and what an idle one costs
(``invoke bench.agents``).

A Compose cage of its own (real images, this repository as the agents' repository), up
once; then ``agent.new`` ``--runs`` times in a row, each timed from the call to the agent
being healthy (its phases timed too), then ``agent.rm`` of each. Memory of one idle agent
from its cgroup after ``--settle`` seconds: with nothing running but its entrypoint's
``sleep``, then with Claude Code's tmux session started and left idle. Claude Code quits at
start when it cannot reach its API, so the red team's scripted model (``images/model``)
stands in for ``api.anthropic.com`` on the cage's egress network: the policy is an
allowlist of that one host, mapped to the model's address, so nothing leaves this machine;
the Anthropic key binding injects a made-up key (the agent holds a placeholder). The shared
parts (proxy, scanner, netguard, model) are measured beside it. Conditions (load, cores,
engine, other containers) are printed with the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kit import agents, settings as settings_mod  # noqa: E402
from kit.agents_compose import ComposeAgents  # noqa: E402
from kit.compose import ComposeBackend, docker_client  # noqa: E402
from kit.names import LABEL_TEST, image_ref  # noqa: E402
from kit.redteam.claude_model import API_HOST, ModelContainer, make_tls, model_address  # noqa: E402
from tests.integration.cagekit import free_subnets  # noqa: E402

IMAGES = ("netguard", "scanner", "proxy", "agent", "model")
PHASES = ("create", "fill_workspace", "publish_registry", "start")
MiB = 1 << 20


def conditions(client) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    running = len(client.containers.list())
    version = client.version().get("Version", "?")
    return f"load {load}; {os.cpu_count()} cores; Docker {version}; {running} containers running on the engine"


def memory(container) -> dict[str, float]:
    """cgroup memory of a container, MiB: usage, working set (usage - inactive file cache), RSS (anon)."""
    stats = container.stats(stream=False)["memory_stats"]
    raw = stats.get("stats", {})
    inactive = raw.get("total_inactive_file", raw.get("inactive_file", 0))
    rss = raw.get("total_rss", raw.get("anon", 0))
    usage = stats.get("usage", 0)
    return {"usage": usage / MiB, "working_set": (usage - inactive) / MiB, "rss": rss / MiB}


def pids(container) -> int:
    return int(container.stats(stream=False).get("pids_stats", {}).get("current", 0))


class Phases:
    """Times the per-backend phases of every agent.new (wrapping ComposeAgents' methods)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {p: [] for p in PHASES}
        self._saved: dict[str, Callable] = {}

    def __enter__(self) -> Phases:
        for name in PHASES:
            original = getattr(ComposeAgents, name)
            self._saved[name] = original

            def timed(self_, *args, __original=original, __name=name, **kw):
                started = time.perf_counter()
                try:
                    return __original(self_, *args, **kw)
                finally:
                    self.samples[__name].append(time.perf_counter() - started)

            setattr(ComposeAgents, name, timed)
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._saved.items():
            setattr(ComposeAgents, name, original)


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def make_cage(client, workdir: Path, tag: str, run: str, egress, model_ca: bytes) -> ComposeBackend:
    from kit.redteam.canaries import anthropic

    key = workdir / "anthropic-api-key"
    key.write_text(anthropic())  # made up: the model accepts any key
    key.chmod(0o600)
    overlay = workdir / "egress.yaml"
    overlay.write_text(f"networks:\n  egress:\n    ipam:\n      config:\n        - subnet: {egress}\n")
    policy = workdir / "policy.yaml"
    # Nothing may leave: one allowed host, and it is the model on the egress network.
    policy.write_text(
        "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
        f"destinations:\n  mode: allowlist\n  allowlist: [{API_HOST}]\n  unsafe_allow_private_networks: ['{egress}']\n"
        f"  unsafe_host_overrides: {{{API_HOST}: '{model_address(egress)}'}}\n"
        "credentials:\n  bindings:\n"
        f"    - {{name: anthropic-api-key, preset: anthropic-api-key, source: {{file: {key}}}, required: true}}\n"
    )
    settings = settings_mod.from_mapping(
        {"apiVersion": settings_mod.API_VERSION, "kind": settings_mod.KIND, "project": f"ycbench-{run}",
         "images": {"tag": tag}},
        source="bench",
    )  # fmt: skip
    return ComposeBackend(settings, policy_file=policy, extra_files=[overlay], test_labels={LABEL_TEST: f"bench-{run}"},
                          upstream_cas={"model": model_ca}, build=False, client=client)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="agents started one after another (default 5)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds an idle agent is left alone (default 20)")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_CAGE_QUIET", "1")
    client = docker_client()
    run = secrets.token_hex(3)
    tag = f"bench-{run}"
    workdir = Path(tempfile.mkdtemp(prefix="yolo-cage-agents-bench-"))
    os.environ["YOLO_CAGE_STATE_DIR"] = str(workdir / "state")
    for name in IMAGES:
        client.images.get(image_ref(name)).tag(f"yolo-cage/{name}", tag)
    egress, tls = free_subnets(client, count=1)[0], make_tls()
    backend = make_cage(client, workdir, tag, run, egress, tls.ca_pem)
    model = None
    try:
        started = time.perf_counter()
        backend.up()
        up_seconds = time.perf_counter() - started
        model = ModelContainer.start(client, network=f"{backend.project}_egress", egress4=egress, tls=tls,
                                     name=f"{backend.project}-model", labels=backend.test_labels,
                                     project=backend.project, tag=tag)  # fmt: skip
        return measure(client, backend, model, workdir, args, up_seconds)
    finally:
        if model is not None:
            model.remove()
        backend.down(remove_data=True)
        for name in IMAGES:
            client.images.remove(image_ref(name, tag))
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def measure(client, backend: ComposeBackend, model, workdir: Path, args, up_seconds: float) -> int:
    print(f"# agents benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')} on {platform.node()}")
    print(f"conditions at start: {conditions(client)}")
    print(f"cage up (one agent, from the settings): {up_seconds:.1f} s")
    repo = workdir / "repo"
    subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(repo)], check=True)
    size = subprocess.run(["du", "-sh", str(repo)], capture_output=True, text=True).stdout.split()[0]
    files = len(subprocess.run(["git", "-C", str(repo), "ls-files"], capture_output=True, text=True).stdout.splitlines())
    print(f"repository: a clone of this repository ({files} files, {size} with .git), local path")

    limits = agents.resources("2g", "1", 512)

    started = time.perf_counter()
    agents.new(backend, agents.NewAgent("warm", None, str(repo), limits))
    first = time.perf_counter() - started
    totals = []
    with Phases() as phases:
        for i in range(args.runs):
            started = time.perf_counter()
            agents.new(backend, agents.NewAgent(f"a{i}", None, str(repo), limits))
            totals.append(time.perf_counter() - started)
    print(f"\n## time to start one more agent (warm cage, {len(backend.agents())} agents running at the end)")
    print(f"first agent.new (clones the repository mirror): {first:.2f} s")
    print(f"agent.new, {args.runs} runs: p50 {p50(totals):.2f} s, min {min(totals):.2f} s, max {max(totals):.2f} s")
    for name in PHASES:
        print(f"  {name:17} p50 {p50(phases.samples[name]):.2f} s")
    rest = p50(totals) - sum(p50(phases.samples[n]) for n in PHASES)
    print(f"  {'checks, git, lock':17} p50 {rest:.2f} s (the remainder)")

    print(f"\n## memory of an idle agent (cgroup v1 stats; after {args.settle:g} s idle)")
    container = backend.container_for("warm")
    time.sleep(args.settle)
    idle = memory(container)
    print(f"idle, no session:        usage {idle['usage']:.1f} MiB, working set {idle['working_set']:.1f} MiB, "
          f"RSS {idle['rss']:.1f} MiB, {pids(container)} processes")  # fmt: skip
    # As after a first login: onboarding done (its connectivity check asks for a route the stand-in
    # does not serve, and Claude Code quits when that check fails), folder trusted.
    seed = '{"hasCompletedOnboarding": true, "theme": "dark", "projects": {"/workspace": {"hasTrustDialogAccepted": true}}}'
    backend.exec("warm", ["sh", "-c", f"printf %s '{seed}' > ~/.claude.json"])
    result = backend.exec("warm", ["/usr/local/bin/yolo-cage-tmux", "--detached"], timeout=60)
    if result.returncode != 0:
        print(f"could not start Claude Code's tmux session: {result.text}")
        return 1
    time.sleep(args.settle)
    claude = backend.exec("warm", ["ps", "-C", "claude", "-o", "pid="]).stdout.decode().split()
    if not claude:
        screen = backend.exec("warm", ["tmux", "capture-pane", "-p", "-t", "claude"]).stdout.decode().strip()
        print(f"Claude Code is not running in the session; its screen:\n{screen}")
        return 1
    screen = backend.exec("warm", ["tmux", "capture-pane", "-p", "-t", "claude"]).stdout.decode()
    first = next((line.strip() for line in screen.splitlines() if line.strip()), "")
    with_claude = memory(container)
    print(f"claude in tmux, idle:    usage {with_claude['usage']:.1f} MiB, working set {with_claude['working_set']:.1f} MiB, "
          f"RSS {with_claude['rss']:.1f} MiB, {pids(container)} processes")
    status = backend.exec("warm", ["grep", "-E", "^(VmRSS|RssAnon|RssFile)", f"/proc/{claude[0]}/status"]).stdout.decode()
    rss = ", ".join(" ".join(line.split()) for line in status.splitlines())
    print(f"  the claude process: {rss} (file pages: its 400 MB binary, shared page cache, charged to the cgroup")
    print(f"  that first read them); screen: {'the prompt, idle' if '─' in first else repr(first[:80])}")  # fmt: skip
    shared = {role: memory(backend.container_for(role)) for role in ("proxy", "scanner", "netguard")}
    shared["model (stand-in)"] = memory(model.container)
    print("shared by all agents:   " + ", ".join(f"{r} {m['working_set']:.1f} MiB" for r, m in shared.items())
          + " (working set)")  # fmt: skip

    removals = []
    for i in range(args.runs):
        started = time.perf_counter()
        agents.remove(backend, f"a{i}")
        removals.append(time.perf_counter() - started)
    print(f"\nagent.rm, {args.runs} runs: p50 {p50(removals):.2f} s")
    print(f"conditions at end: {conditions(client)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
