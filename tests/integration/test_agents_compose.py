"""Many agents at once on a real Compose cage: `agent.new` three times beside the settings' agent,
each on its own branch of a local repository, then isolation, identity, disturbance and removal.

The cage is this module's own (project ``yct-<run>-ag``, its own image tag so a rebuild elsewhere
cannot recreate its containers halfway), with an attacker sink on its egress network as in
``conftest.compose_cage``. Every "blocked" has its "allowed" control through the same path.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shlex
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kit import agents, state
from kit.errors import BackendError
from kit.names import image_ref
from tests.integration.cagekit import ALLOWED_SINK, SINK_NAMES, Sink, free_subnets, marker, run_probe

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(1500)]

IMAGES = ("netguard", "scanner", "proxy", "agent")
ADDED = {"alice": "feature/alice", "bob": "feature/existing", "carol": None}  # None: yolo-cage/carol
PROJECT_LABEL = "com.docker.compose.project"


@dataclass
class AgentCage:
    backend: Any  # kit.compose.ComposeBackend
    client: Any
    sink: Sink
    repo: Path
    commits: dict[str, str] = field(default_factory=dict)  # branch -> commit in the repository

    @property
    def project(self) -> str:
        return self.backend.project

    def exec(self, agent: str, argv: list[str], timeout: float = 60, env: dict[str, str] | None = None):
        return self.backend.exec(agent, argv, timeout=timeout, env=env)

    def container(self, agent: str):
        return self.backend.container_for(agent)

    def address(self, agent: str) -> str:
        container = self.container(agent)
        container.reload()
        networks = container.attrs["NetworkSettings"]["Networks"]
        (only,) = networks.values()
        return only["IPAddress"]

    def snapshot(self) -> dict[str, tuple[str, str, int]]:
        """Every container of the cage: id, start time, restart count (unchanged = undisturbed)."""
        out = {}
        for c in self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            st = c.attrs["State"]
            out[c.name] = (c.id, st["StartedAt"], c.attrs.get("RestartCount", 0))
        return out

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.backend.read_audit()]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> dict[str, str]:
    git("init", "-q", "-b", "main", str(path))
    git("-C", str(path), "config", "user.name", "t")
    git("-C", str(path), "config", "user.email", "t@example.invalid")
    (path / "README.md").write_text("# project\n")
    git("-C", str(path), "add", ".")
    git("-C", str(path), "commit", "-qm", "first")
    git("-C", str(path), "checkout", "-qb", "feature/existing")
    (path / "feature.txt").write_text("work in progress\n")
    git("-C", str(path), "add", ".")
    git("-C", str(path), "commit", "-qm", "feature")
    git("-C", str(path), "checkout", "-q", "main")
    return {b: git("-C", str(path), "rev-parse", b) for b in ("main", "feature/existing")}


@pytest.fixture(scope="module")
def agent_cage(docker_client, run_id: str, test_labels: dict[str, str], tmp_path_factory) -> Iterator[AgentCage]:
    from kit import settings as settings_mod
    from kit.compose import ComposeBackend

    workdir = tmp_path_factory.mktemp("agents")
    tag = f"yct-{run_id}-ag"
    for name in IMAGES:
        docker_client.images.get(image_ref(name)).tag(f"yolo-cage/{name}", tag)
    previous = os.environ.get("YOLO_CAGE_STATE_DIR")
    os.environ["YOLO_CAGE_STATE_DIR"] = str(workdir / "state")
    egress = free_subnets(docker_client, count=1)[0]
    sink = Sink.start(docker_client, f"{run_id}-ag", test_labels)
    backend = None
    try:
        (workdir / "egress.yaml").write_text(f"networks:\n  egress:\n    ipam:\n      config:\n        - subnet: {egress}\n")
        (workdir / "policy.yaml").write_text(
            "apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n"
            f"destinations:\n  unsafe_allow_private_networks: ['{egress}']\n"
        )
        repo = workdir / "repo"
        commits = make_repo(repo)
        # The settings' own agent has the repository too: `up` checks it out into its new workspace.
        settings = settings_mod.from_mapping(
            {"apiVersion": settings_mod.API_VERSION, "kind": settings_mod.KIND, "project": f"yct-{run_id}-ag",
             "images": {"tag": tag}, "agents": [{"name": "dev", "repo": str(repo)}]},
            source="agent_cage fixture",
        )  # fmt: skip
        backend = ComposeBackend(
            settings, policy_file=workdir / "policy.yaml", extra_files=[workdir / "egress.yaml"],
            test_labels=test_labels, upstream_cas={"sink": sink.ca_pem}, build=False, client=docker_client,
        )  # fmt: skip
        backend.up()
        sink.ip4 = str(egress.network_address + 200)
        docker_client.networks.get(f"{backend.project}_egress").connect(sink.container, ipv4_address=sink.ip4,
                                                                       aliases=list(SINK_NAMES))  # fmt: skip
        cage = AgentCage(backend, docker_client, sink, repo, commits)
        for name, branch in ADDED.items():
            agents.new(backend, agents.NewAgent(name, branch, str(repo), agents.resources("1g", "1", 256)))
        yield cage
    finally:
        try:
            sink.remove()
        finally:
            if backend is not None:
                backend.down(remove_data=True)
            for name in IMAGES:
                docker_client.images.remove(image_ref(name, tag))  # only this tag; the image stays
            if previous is None:
                os.environ.pop("YOLO_CAGE_STATE_DIR", None)
            else:
                os.environ["YOLO_CAGE_STATE_DIR"] = previous


# --- helpers that run inside agents ---------------------------------------------------------------

CURL = (
    'curl -sS --max-time 30 -o /dev/null -D /tmp/h -w "%{http_code}" --proxy "${1:-$YOLO_CAGE_PROXY_URL}" '
    '-X POST --data-binary x "$2"; echo; grep -i "^x-yolo-cage-block" /tmp/h | tail -1'
)


def post(cage: AgentCage, agent: str, url: str, proxy: str = "") -> tuple[str, str]:
    """POST through ``proxy`` (default: the agent's own credential); (status, block reason)."""
    result = cage.exec(agent, ["bash", "-c", CURL, "post", proxy, url], timeout=60)
    lines = result.stdout.decode().splitlines() + ["", ""]
    return lines[0].strip(), lines[1].split(":", 1)[-1].strip()


# A request whose body trickles in over SECONDS: in flight through the proxy while something
# else happens. Prints the status, and the local port to show it was one connection throughout.
SLOW = r"""
import base64, http.client, os, sys, time, urllib.parse
url, seconds, flag = sys.argv[1], float(sys.argv[2]), sys.argv[3]
proxy = urllib.parse.urlsplit(os.environ["YOLO_CAGE_PROXY_URL"])
conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=seconds + 60)
piece, count = b"slow-body-" * 10, 40
conn.putrequest("POST", url)
conn.putheader("Proxy-Authorization", "Basic " + base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode())
conn.putheader("Content-Length", str(len(piece) * count))
conn.endheaders()
port = conn.sock.getsockname()[1]
open(flag, "w").close()
for _ in range(count):
    conn.sock.sendall(piece)
    time.sleep(seconds / count)
response = conn.getresponse()
print(response.status, port, flush=True)
"""


class InFlight:
    """A slow request from ``agent`` running in a thread; ``started()`` once its first bytes are sent."""

    def __init__(self, cage: AgentCage, agent: str, seconds: float = 25):
        self.cage, self.agent, self.marker = cage, agent, marker()
        self.flag = f"/tmp/{self.marker}.started"
        self.result: Any = None
        argv = ["python3", "-c", SLOW, f"http://{ALLOWED_SINK}/slow/{self.marker}", str(seconds), self.flag]
        self.thread = threading.Thread(target=lambda: setattr(self, "result", cage.exec(agent, argv, timeout=seconds + 90)))

    def __enter__(self) -> InFlight:
        self.thread.start()
        deadline = time.monotonic() + 30
        while self.cage.exec(self.agent, ["test", "-e", self.flag]).returncode != 0:
            assert time.monotonic() < deadline, "the slow request never started"
            time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=200)

    def status(self) -> str:
        assert self.result is not None, "the slow request did not finish"
        return self.result.stdout.decode().split()[0] if self.result.stdout else self.result.text


STUB_CLAUDE = "#!/bin/sh\necho 'stub claude (test): the session must survive'\nexec sleep 100000\n"


def tmux_session(cage: AgentCage, agent: str) -> str:
    """The agent's `claude` tmux session (the image's yolo-cage-tmux, Claude Code replaced by a stub
    that starts nothing and sends nothing): name, creation time and the pane's process id."""
    result = cage.exec(agent, ["tmux", "list-panes", "-t", "claude", "-F", "#{session_name} #{session_created} #{pane_pid}"])
    assert result.returncode == 0, result.text
    return result.stdout.decode().strip()


def start_tmux(cage: AgentCage, agent: str) -> str:
    install = f"mkdir -p ~/.local/bin && printf %s {shlex.quote(STUB_CLAUDE)} > ~/.local/bin/claude && chmod +x ~/.local/bin/claude"
    assert cage.exec(agent, ["bash", "-c", install]).returncode == 0
    result = cage.exec(agent, ["/usr/local/bin/yolo-cage-tmux", "--detached"])
    assert result.returncode == 0, result.text
    return tmux_session(cage, agent)


def not_open(results: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in results.items() if v == "open"}


# --- the tests ---------------------------------------------------------------------------------


def test_four_agents_each_in_its_own_container_network_and_limits(agent_cage: AgentCage) -> None:
    comps = {c.agent: c for c in agent_cage.backend.status().components if c.role == "agent"}
    assert set(comps) == {"dev", *ADDED} and all(c.state == "running" and c.healthy for c in comps.values()), comps
    proxy = agent_cage.backend.container_for("proxy")
    proxy_networks = set(proxy.attrs["NetworkSettings"]["Networks"])
    for name in ADDED:
        container = agent_cage.container(name)
        networks = set(container.attrs["NetworkSettings"]["Networks"])
        assert networks == {f"{agent_cage.project}_cage-{name}"}, networks
        assert networks <= proxy_networks  # the proxy, and only the proxy, is there too
        host = container.attrs["HostConfig"]
        assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (1 << 30, 10**9, 256)
        assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
        mounts = {m["Destination"]: m["Name"] for m in container.attrs["Mounts"] if m["Type"] == "volume"}
        assert mounts["/workspace"] == f"{agent_cage.project}_workspace-{name}"
        assert mounts["/home/dev"] == f"{agent_cage.project}_home-{name}"
    rows = {r.name: r for r in agents.listing(agent_cage.backend)}
    assert [rows[n].source for n in ("dev", *ADDED)] == ["settings"] + ["agent.new"] * 3


def test_each_workspace_is_its_own_clone_on_its_own_branch_with_origin_set(agent_cage: AgentCage) -> None:
    expected = {
        "dev": ("yolo-cage/dev", agent_cage.commits["main"]),  # checked out by `invoke up`
        "alice": ("feature/alice", agent_cage.commits["main"]),  # new branch from the default branch
        "bob": ("feature/existing", agent_cage.commits["feature/existing"]),  # existing branch
        "carol": ("yolo-cage/carol", agent_cage.commits["main"]),
    }
    script = "cd /workspace && git rev-parse --abbrev-ref HEAD && git rev-parse HEAD && git remote get-url origin && stat -c %u:%g . .git/HEAD && git status --porcelain | wc -l && ls .git/hooks | wc -l && test ! -e .git/objects/info/alternates && echo no-alternates"  # noqa: E501
    for name, (branch, commit) in expected.items():
        out = agent_cage.exec(name, ["bash", "-c", script]).stdout.decode().split()
        assert out == [branch, commit, str(agent_cage.repo), "1000:1000", "1000:1000", "0", "0", "no-alternates"], (name, out)
    # Nothing shared: a hook planted in alice's .git does not exist in bob's, and bob can commit.
    plant = "printf '#!/bin/sh\\ntouch /tmp/planted\\n' > /workspace/.git/hooks/post-commit && chmod +x /workspace/.git/hooks/post-commit"
    assert agent_cage.exec("alice", ["bash", "-c", plant]).returncode == 0
    commit = agent_cage.exec("bob", ["bash", "-c", "cd /workspace && echo more >> feature.txt && git commit -qam more && git log -1 --format=%an"])
    assert commit.returncode == 0 and commit.stdout.decode().strip() == "bob (yolo-cage agent)", commit.text
    assert agent_cage.exec("bob", ["test", "-e", "/tmp/planted"]).returncode != 0
    assert agent_cage.exec("bob", ["test", "-e", "/workspace/.git/hooks/post-commit"]).returncode != 0


def test_each_agent_reaches_the_sink_through_the_proxy_and_is_audited_as_itself(agent_cage: AgentCage) -> None:
    sent = {}
    for name in ("dev", *ADDED):
        sent[name] = marker()
        assert post(agent_cage, name, f"https://{ALLOWED_SINK}/upload/{sent[name]}") == ("200", ""), name
        assert agent_cage.sink.saw(sent[name])
    records = agent_cage.audit()
    for name, mark in sent.items():
        mine = [r for r in records if mark in (r.get("path") or "")]
        assert mine and {r["agent"] for r in mine} == {name}, (name, mine)
    # Every request that left the proxy names its agent (health checks answered by the proxy itself need no credential).
    forwarded = [r for r in records if r.get("decision") == "allow" and r.get("host") != "yolo-cage.internal"]
    assert forwarded and all(r.get("agent") in {"dev", *ADDED} for r in forwarded), forwarded


def test_an_agent_cannot_reach_another_agent(agent_cage: AgentCage) -> None:
    bob = agent_cage.container("bob")
    bob.exec_run(["python3", "-c", "import socket,time\ns=socket.create_server(('0.0.0.0', 8000))\nwhile True: s.accept()[0].close()"],
                 user="1000:1000", detach=True)  # fmt: skip
    bob_ip, dev_ip = agent_cage.address("bob"), agent_cage.address("dev")
    time.sleep(1)
    # Control: the proxy, on bob's network, reaches bob's listener; bob reaches it itself.
    proxy = agent_cage.backend.container_for("proxy")
    from_proxy = run_probe(lambda argv, timeout: _exec_in(proxy, argv), [(bob_ip, 8000)])
    assert from_proxy == {f"{bob_ip}:8000": "open"}
    assert run_probe(lambda argv, timeout: agent_cage.exec("bob", argv, timeout=timeout), [("127.0.0.1", 8000)]) == {
        "127.0.0.1:8000": "open"
    }
    targets = [("proxy", 8080), (bob_ip, 8000), (bob_ip, 22), ("bob", 8000), ("agent-bob", 8000),
               (f"{agent_cage.project}-agent-bob-1", 8000), (dev_ip, 8080), ("dev", 8000)]  # fmt: skip
    from_alice = run_probe(lambda argv, timeout: agent_cage.exec("alice", argv, timeout=timeout), targets)
    assert from_alice.pop("proxy:8080") == "open"  # alice's own way out works
    assert not_open(from_alice) == {}, from_alice


def _exec_in(container, argv):
    from kit.backend import ExecResult

    code, out = container.exec_run(argv, demux=True)
    stdout, stderr = out if isinstance(out, tuple) else (out, b"")
    return ExecResult(code, stdout or b"", stderr or b"")


def test_an_agent_cannot_use_another_agents_identity(agent_cage: AgentCage) -> None:
    bob_token = state.agent_token(agent_cage.project, "bob")
    as_bob = f"http://bob:{bob_token}@proxy:8080"
    stolen, wrong, own = marker(), marker(), marker()
    assert post(agent_cage, "alice", f"http://{ALLOWED_SINK}/{stolen}", as_bob) == ("403", "proxy-auth-network")
    assert post(agent_cage, "alice", f"http://{ALLOWED_SINK}/{wrong}", "http://bob:not-the-token@proxy:8080")[0] == "407"
    # Control: the same credential from bob's own network passes.
    assert post(agent_cage, "bob", f"http://{ALLOWED_SINK}/{own}", as_bob) == ("200", "")
    assert agent_cage.sink.saw(own)
    assert not agent_cage.sink.saw(stolen) and not agent_cage.sink.saw(wrong)
    # The refusal is on record, from alice's address, and never counted as bob's request.
    alice_ip = agent_cage.address("alice")
    refused = [r for r in agent_cage.audit() if r.get("reason") == "proxy-auth-network"]
    assert refused and all(r["decision"] == "block" and r["agent"] != "bob" for r in refused), refused
    assert {r["client"].rsplit(":", 1)[0] for r in refused} == {alice_ip}, refused


def test_adding_an_agent_disturbs_no_other_agent_nor_the_proxy(agent_cage: AgentCage) -> None:
    session = start_tmux(agent_cage, "alice")
    before = agent_cage.snapshot()
    with InFlight(agent_cage, "alice") as slow:
        agents.new(agent_cage.backend, agents.NewAgent("dave", None, str(agent_cage.repo), agents.resources("1g", "1", 256)))
    assert slow.status() == "200" and agent_cage.sink.saw(slow.marker)
    after = agent_cage.snapshot()
    new = {name for name in after if name not in before}
    assert new == {f"{agent_cage.project}-agent-dave-1"}, new
    assert {k: after[k] for k in before} == before  # same containers, same start, no restart
    assert tmux_session(agent_cage, "alice") == session
    assert post(agent_cage, "dave", f"http://{ALLOWED_SINK}/{marker()}") == ("200", "")
    assert {r["agent"] for r in agent_cage.audit() if slow.marker in (r.get("path") or "")} == {"alice"}


@pytest.mark.parametrize("how", ["restart", "crash", "kill"])
def test_restarting_or_killing_an_agent_leaves_the_others_untouched(agent_cage: AgentCage, how: str) -> None:
    session = start_tmux(agent_cage, "alice")
    before = agent_cage.snapshot()
    bob = agent_cage.container("bob")
    with InFlight(agent_cage, "alice") as slow:
        if how == "restart":
            bob.restart(timeout=5)
        elif how == "crash":  # its main process dies: Docker's restart policy brings it back
            agent_cage.exec("bob", ["pkill", "-KILL", "-x", "sleep"])
            _wait_restarted(bob, before[bob.name][2])
        else:  # stopped for good, until someone starts it
            bob.kill()
            bob.reload()
            assert bob.status == "exited"
            with pytest.raises(BackendError):
                agent_cage.backend.container_for("bob")
    assert slow.status() == "200" and agent_cage.sink.saw(slow.marker)
    if how == "kill":
        bob.start()
    _wait_healthy(agent_cage, "bob")
    after = agent_cage.snapshot()
    others = {k: v for k, v in before.items() if "agent-bob" not in k}
    assert {k: after[k] for k in others} == others
    assert tmux_session(agent_cage, "alice") == session
    assert post(agent_cage, "bob", f"http://{ALLOWED_SINK}/{marker()}") == ("200", "")  # bob works again


ROOT = Path(__file__).resolve().parents[2]


def task_env(project: str) -> dict[str, str]:
    """The environment a user's `uv run invoke ...` would have for this cage (the state dir is the fixture's)."""
    return {**os.environ, "YOLO_CAGE_PROJECT": project, "TERM": "xterm"}


def invoke(project: str, *args: str) -> subprocess.CompletedProcess[str]:
    """An `invoke` task as typed, without a terminal."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=task_env(project),
                          capture_output=True, text=True, timeout=120)  # fmt: skip


class Terminal:
    """An `invoke` task (as a user types it, e.g. agent.attach NAME) on a pseudo-terminal of its own."""

    def __init__(self, project: str, *args: str):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=task_env(project),
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True)  # fmt: skip
        os.close(slave)
        self.master, self.output = master, b""

    def read(self) -> None:
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other side closed
                return
            if not chunk:
                return
            self.output += chunk

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read()
        self.read()
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        os.close(self.master)


def tmux_clients(cage: AgentCage, agent: str) -> int:
    result = cage.exec(agent, ["tmux", "list-clients", "-t", "claude"])
    return len(result.stdout.decode().split("\n")) - 1 if result.returncode == 0 else -1


def session_program(cage: AgentCage, agent: str, pane_pid: str) -> str:
    """The process the pane's shell runs (the stub Claude Code's `sleep`); empty once it has ended."""
    return cage.exec(agent, ["pgrep", "-P", pane_pid]).stdout.decode().strip()


def test_agent_attach_detach_and_attach_again_keep_the_session_running(agent_cage: AgentCage) -> None:
    session = start_tmux(agent_cage, "alice")
    program = session_program(agent_cage, "alice", session.split()[-1])
    assert program, "the session runs nothing"
    for round_ in (1, 2):
        term = Terminal(agent_cage.project, "agent.attach", "alice")
        try:
            deadline = time.monotonic() + 60
            while tmux_clients(agent_cage, "alice") != 1:
                term.read()
                assert term.proc.poll() is None and time.monotonic() < deadline, term.output.decode(errors="replace")
                time.sleep(0.3)
            time.sleep(0.5)
            term.read()
            assert b"stub claude (test)" in term.output, (round_, term.output.decode(errors="replace"))
            term.type(b"\x02d")  # Ctrl-b d: tmux's detach
            assert term.wait() == 0, (round_, term.output.decode(errors="replace"))
            assert b"[detached" in term.output, (round_, term.output.decode(errors="replace"))
        finally:
            term.close()
        assert tmux_clients(agent_cage, "alice") == 0
        # The same session, created once, with the same program in its pane: still running.
        assert tmux_session(agent_cage, "alice") == session
        assert session_program(agent_cage, "alice", session.split()[-1]) == program


def test_agent_list_logs_and_shell_as_typed(agent_cage: AgentCage) -> None:
    p = agent_cage.project
    listing = invoke(p, "agent.list")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:] if line.strip()}
    assert rows["alice"][:5] == ["alice", "agent.new", "feature/alice", "running", "healthy"], listing.stdout
    assert rows["dev"][:2] == ["dev", "settings"], listing.stdout
    # Something alice's main process prints reaches her logs, and only hers (control: bob's).
    said = marker()
    assert agent_cage.exec("alice", ["sh", "-c", f"echo {said} > /proc/1/fd/1"]).returncode == 0
    logs = {name: invoke(p, "agent.logs", name, "--tail", "50") for name in ("alice", "bob")}
    assert logs["alice"].returncode == 0 and said in logs["alice"].stdout + logs["alice"].stderr, logs["alice"]
    assert said not in logs["bob"].stdout + logs["bob"].stderr
    # A shell in alice, as dev, with her identity; it ends when the user exits.
    term = Terminal(p, "agent.shell", "alice")
    try:
        time.sleep(2)
        term.type(b"echo shell-$(id -u)-$(id -un)-$YOLO_CAGE_AGENT-$(pwd); exit\r")
        assert term.wait(60) == 0, term.output.decode(errors="replace")
    finally:
        term.close()
    assert b"shell-1000-dev-alice-/workspace" in term.output, term.output.decode(errors="replace")
    unknown = invoke(p, "agent.shell", "nobody")
    assert unknown.returncode == 1 and "no agent named 'nobody'" in unknown.stderr and "alice" in unknown.stderr


def _wait_restarted(container, restarts: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.attrs.get("RestartCount", 0) > restarts:
            return
        time.sleep(0.5)
    raise AssertionError(f"{container.name} was not restarted by its restart policy")


def _wait_healthy(cage: AgentCage, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        comp = next((c for c in cage.backend.status().components if c.agent == name), None)
        if comp is not None and comp.state == "running" and comp.healthy:
            return
        time.sleep(1)
    raise AssertionError(f"{name} did not become healthy again")


def _everything(cage: AgentCage) -> dict[str, set[str]]:
    """Every resource of the cage: Docker objects by the project's label, the proxy's registry,
    and the host-side state (records, tokens)."""
    label = {"label": f"{PROJECT_LABEL}={cage.project}"}
    base = state.project_dir(cage.project)
    return {
        "containers": {c.name for c in cage.client.containers.list(all=True, filters=label)},
        "networks": {n.name for n in cage.client.networks.list(filters=label)},
        "volumes": {v.name for v in cage.client.volumes.list(filters=label)},
        "registry": set(json.loads(_registry(cage))),
        "tokens": {p.name for p in (base / "tokens").iterdir()},
        "records": {p.stem for p in (base / "agents").glob("*.json")},
    }


def _registry(cage: AgentCage) -> bytes:
    from kit.compose import read_volume_file

    image = image_ref("proxy", cage.backend.settings.images.tag)
    return read_volume_file(cage.client, f"{cage.project}_proxy-config", "agents.json", image, cage.backend.test_labels)


def test_agent_rm_removes_exactly_one_agents_resources(agent_cage: AgentCage) -> None:
    p = agent_cage.project
    dave_token = state.agent_token(p, "dave")
    before, ids = _everything(agent_cage), agent_cage.snapshot()
    removed = agents.remove(agent_cage.backend, "dave")
    after = _everything(agent_cage)
    gone = {key: before[key] - after[key] for key in before}
    assert gone == {
        "containers": {f"{p}-agent-dave-1"},
        "networks": {f"{p}_cage-dave"},
        "volumes": {f"{p}_workspace-dave", f"{p}_home-dave"},
        "registry": {"dave"},
        "tokens": {"dave"},
        "records": {"dave"},
    }, gone
    assert all(after[key] <= before[key] for key in before)  # nothing new either
    assert sorted(removed) == sorted([f"container {p}-agent-dave-1", f"network {p}_cage-dave", f"volume {p}_workspace-dave",
                                      f"volume {p}_home-dave"])  # fmt: skip
    assert {k: v for k, v in agent_cage.snapshot().items() if "dave" not in k} == {k: v for k, v in ids.items() if "dave" not in k}
    # Its old credential is refused from now on; control: alice's own still works.
    time.sleep(1.5)
    assert post(agent_cage, "alice", f"http://{ALLOWED_SINK}/{marker()}", f"http://dave:{dave_token}@proxy:8080")[0] == "407"
    assert post(agent_cage, "alice", f"http://{ALLOWED_SINK}/{marker()}")[0] == "200"
    with pytest.raises(BackendError, match="no agent named 'dave'"):
        agents.remove(agent_cage.backend, "dave")
    assert _everything(agent_cage) == after


def test_agent_rm_keep_workspace_keeps_only_the_workspace(agent_cage: AgentCage) -> None:
    p = agent_cage.project
    before = _everything(agent_cage)
    agents.remove(agent_cage.backend, "carol", keep_workspace=True)
    after = _everything(agent_cage)
    assert before["volumes"] - after["volumes"] == {f"{p}_home-carol"}
    assert f"{p}_workspace-carol" in after["volumes"]
    assert "carol" not in after["registry"] | after["records"] | after["tokens"]
    # A new carol gets the kept workspace as it was (not checked out again over it).
    agents.new(agent_cage.backend, agents.NewAgent("carol", "yolo-cage/carol", str(agent_cage.repo)))
    head = agent_cage.exec("carol", ["git", "-C", "/workspace", "rev-parse", "--abbrev-ref", "HEAD"])
    assert head.stdout.decode().strip() == "yolo-cage/carol"
