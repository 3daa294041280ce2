"""netguard's program (the `x-netguard-script` in compose/compose.yaml), run for real
against a fake iptables that keeps its rules in a JSON file.

The fake implements the handful of iptables verbs the script uses, with
iptables' exit codes, so these tests check the script's logic: backend
choice, install, re-check and restore, removal on SIGTERM. The real kernel
rules are checked by tests/integration/test_cage_compose.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kit import hostguard
from kit.compose import netguard_script

PREFIX = hostguard.bridge_prefix("yolo-cage")
CHAIN = hostguard.netguard_chain("yolo-cage")
TOOLS = ("iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy")

FAKE = r'''
import fcntl, json, os, sys
tool = os.path.basename(sys.argv[0])
path = os.environ["FAKE_IPTABLES_STATE"]
# Like iptables -w: one writer at a time (two netguards and a check may run at once).
lock = open(path + ".lock", "w")
fcntl.flock(lock, fcntl.LOCK_EX)
with open(path) as f:
    state = json.load(f)
chains = state.setdefault(tool, {"INPUT": [], "FORWARD": [], "OUTPUT": []})
args = [a for a in sys.argv[1:] if a not in ("-w", "-n")]
verb, chain, rest = args[0], args[1] if len(args) > 1 else "", args[2:]
def save():
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(path + ".tmp", path)
rule = " ".join(rest)
if verb == "-L":
    sys.exit(0 if chain in chains else 1)
if chain not in chains and verb != "-N":
    sys.exit(1)
if verb == "-S":
    if chain in ("INPUT", "FORWARD", "OUTPUT"):
        print(f"-P {chain} ACCEPT")
    else:
        print(f"-N {chain}")
    for r in chains[chain]:
        print(f"-A {chain} {r}")
elif verb == "-N":
    if chain in chains:
        sys.exit(1)
    chains[chain] = []
elif verb == "-F":
    chains[chain] = []
elif verb == "-X":
    referenced = any(r.endswith(f"-j {chain}") for rules in chains.values() for r in rules)
    if referenced or chains[chain]:
        sys.exit(1)
    del chains[chain]
elif verb == "-A":
    chains[chain].append(rule)
elif verb == "-I":
    pos = int(rest[0]) - 1
    chains[chain].insert(pos, " ".join(rest[1:]))
elif verb == "-D":
    if rule not in chains[chain]:
        sys.exit(1)
    chains[chain].remove(rule)
elif verb == "-C":
    sys.exit(0 if rule in chains[chain] else 1)
else:
    sys.exit(2)
save()
'''


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, object]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in TOOLS:
        script = bindir / tool
        script.write_text(f"#!{sys.executable}\n{FAKE}")
        script.chmod(0o755)
    state_file = tmp_path / "state.json"
    # The engine's rules live in the nft backend, like on Debian 12.
    state_file.write_text(json.dumps({"iptables-nft": {"INPUT": [], "FORWARD": [], "OUTPUT": [], "DOCKER": []}}))
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_IPTABLES_STATE": str(state_file),
        "YOLO_CAGE_BRIDGE_PREFIX": PREFIX,
    }
    return {"env": env, "state": state_file}


def netguard(fake: dict[str, object], mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", netguard_script(), "netguard", mode],
        env=fake["env"], capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def rules(fake: dict[str, object]) -> dict[str, dict[str, list[str]]]:
    return json.loads(Path(str(fake["state"])).read_text())


def write_state(fake: dict[str, object], state: dict) -> None:
    """Change the fake's rules the way another tool would: under its lock."""
    import fcntl

    path = Path(str(fake["state"]))
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path.write_text(json.dumps(state))


def start(fake: dict[str, object]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["/bin/sh", "-c", netguard_script(), "netguard", "run"],
        env=fake["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "dropping INPUT" in line, line
    return proc


def expected_chain() -> list[str]:
    return ["-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN", "-j DROP"]


def test_check_fails_before_anything_is_installed(fake: dict[str, object]) -> None:
    assert netguard(fake, "check").returncode != 0


def test_run_installs_in_the_engines_backend_for_ipv4_and_ipv6_and_removes_on_sigterm(fake: dict[str, object]) -> None:
    proc = start(fake)
    try:
        state = rules(fake)
        tools = ["iptables-nft"] + (["ip6tables-nft"] if Path("/proc/net/if_inet6").exists() else [])
        for tool in tools:
            assert state[tool]["INPUT"][0] == f"-i {PREFIX}+ -j {CHAIN}"
            assert state[tool][CHAIN] == expected_chain()
        assert "iptables-legacy" not in state  # the engine's rules are in nft: nothing goes to legacy
        assert netguard(fake, "check").returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "rules removed" in out
    state = rules(fake)
    for tool in tools:
        assert CHAIN not in state[tool]
        assert not any(CHAIN in r for r in state[tool]["INPUT"])
    assert netguard(fake, "check").returncode != 0


def test_rules_put_after_ours_by_another_tool_are_moved_back_behind_ours(fake: dict[str, object]) -> None:
    proc = start(fake)
    try:
        # Another firewall manager inserts an ACCEPT above ours: the check must notice.
        state = rules(fake)
        state["iptables-nft"]["INPUT"].insert(0, "-j ACCEPT")
        write_state(fake, state)
        assert netguard(fake, "check").returncode != 0
        deadline = time.monotonic() + 15
        while netguard(fake, "check").returncode != 0:
            assert time.monotonic() < deadline, "netguard did not restore its rules"
            time.sleep(0.5)
        assert rules(fake)["iptables-nft"]["INPUT"][0] == f"-i {PREFIX}+ -j {CHAIN}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_two_cages_on_one_host_do_not_fight_over_the_top_of_input(fake: dict[str, object]) -> None:
    other_prefix = hostguard.bridge_prefix("another-cage")
    other_env = {**fake["env"], "YOLO_CAGE_BRIDGE_PREFIX": other_prefix}
    first = start(fake)
    second = start({**fake, "env": other_env})
    def settled() -> bool:
        input_rules = rules(fake)["iptables-nft"]["INPUT"]
        return (
            input_rules.count(f"-i {PREFIX}+ -j {CHAIN}") == 1
            and input_rules[0] == f"-i {other_prefix}+ -j YC-{other_prefix[:-1]}"
            and netguard(fake, "check").returncode == 0
            and netguard({**fake, "env": other_env}, "check").returncode == 0
        )

    try:
        # Poll rather than sleep a fixed time: a loaded machine delays each re-check round.
        deadline = time.monotonic() + 20
        while not settled():
            assert time.monotonic() < deadline, rules(fake)["iptables-nft"]["INPUT"]
            time.sleep(0.5)
        before = rules(fake)["iptables-nft"]["INPUT"]
        time.sleep(7)  # two re-check rounds (3 s each) of both: neither moves the other
        assert rules(fake)["iptables-nft"]["INPUT"] == before
        assert settled()
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)


def test_flushed_rules_are_restored(fake: dict[str, object]) -> None:
    proc = start(fake)
    try:
        state = rules(fake)
        state["iptables-nft"]["INPUT"] = []
        state["iptables-nft"].pop(CHAIN)
        write_state(fake, state)
        deadline = time.monotonic() + 15
        while netguard(fake, "check").returncode != 0:
            assert time.monotonic() < deadline, "netguard did not restore its rules"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_legacy_backend_is_used_when_the_engines_rules_live_there(fake: dict[str, object]) -> None:
    Path(str(fake["state"])).write_text(json.dumps({"iptables-legacy": {"INPUT": [], "DOCKER": []}}))
    proc = start(fake)
    try:
        state = rules(fake)
        assert state["iptables-legacy"]["INPUT"][0] == f"-i {PREFIX}+ -j {CHAIN}"
        assert CHAIN not in state.get("iptables-nft", {})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_remove_is_idempotent_and_install_does_not_duplicate(fake: dict[str, object]) -> None:
    for _ in range(2):
        proc = start(fake)
        proc.send_signal(signal.SIGKILL)  # a killed netguard leaves its rules behind
        proc.communicate(timeout=20)
    assert rules(fake)["iptables-nft"]["INPUT"].count(f"-i {PREFIX}+ -j {CHAIN}") == 1
    assert netguard(fake, "remove").returncode == 0
    assert netguard(fake, "remove").returncode == 0
    assert CHAIN not in rules(fake)["iptables-nft"]


def test_no_working_backend_fails_loudly(fake: dict[str, object], tmp_path: Path) -> None:
    Path(str(fake["state"])).write_text(json.dumps({}))
    for tool in TOOLS:
        (tmp_path / "bin" / tool).write_text("#!/bin/sh\nexit 3\n")
    result = netguard(fake, "run")
    assert result.returncode == 1 and "no working iptables backend" in result.stderr
