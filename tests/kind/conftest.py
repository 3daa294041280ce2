"""Live kind tests: a real cluster brought up with `invoke up --kind`.

They run only with YOLO_CAGE_KIND=1 on a machine with Docker, kind, kubectl
and a registry (kind's node image and Calico's images are pulled); elsewhere
they skip with the reason (tests/conftest.py). Everything is created under a
run id: the cluster `yc-<run id>`, a sink namespace labelled
`yolo-cage.test=<run id>`; the session deletes the cluster at the end.

Test-only additions, applied after `up` (never part of the product):
- namespace `yc-sink`: the sink (www.example.org and pastebin.com for the
  proxy, via the policy's host overrides), and an unrestricted probe pod used as the
  "allowed" control of every blocked flow;
- a hostNetwork listener on the node at 169.254.169.254:80 (an address the
  test adds to the node), so "metadata is blocked" has a live control;
- a NetworkPolicy letting the proxy reach the sink pods (the sink lives on
  the pod network, which the product's policy rightly excludes).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kit import settings as settings_mod
from kit.kind import KindBackend

REPO = Path(__file__).resolve().parents[2]
SINK_NS = "yc-sink"
SINK_IP = "10.96.0.90"  # in the Service range's static band, beside the proxy's
METADATA_IP = "169.254.169.254"
CLEAN_HOST = "www.example.org"
PASTE_HOST = "pastebin.com"

# One probe for every pod (python3 is in every image): TCP connect, or a DNS query over UDP.
PROBE = textwrap.dedent(
    """
    import socket, struct, sys
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        if mode == "tcp":
            socket.create_connection((host, port), timeout=4).close()
        else:
            q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
            q += b"".join(bytes([len(p)]) + p.encode() for p in "kubernetes.default.svc.cluster.local".split(".")) + b"\\0"
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(4)
            s.sendto(q + struct.pack(">HH", 1, 1), (host, port)); s.recv(512)
        print("open")
    except OSError as exc:
        print(f"closed: {exc}"); sys.exit(1)
    """
)


@dataclass
class LiveCage:
    backend: KindBackend
    run_id: str
    env: dict[str, str]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["kubectl", "--context", self.backend.context, *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, check=check, timeout=300)

    def pod_ip(self, namespace: str, selector: str) -> str:
        out = self.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json").stdout
        return json.loads(out)["items"][0]["status"]["podIP"]

    def probe_from_agent(self, agent: str, mode: str, host: str, port: int) -> bool:
        result = self.backend.exec(agent, ["python3", "-c", PROBE, mode, host, str(port)], timeout=30)
        return result.returncode == 0

    def probe_from(self, namespace: str, selector: str, container: str, mode: str, host: str, port: int) -> bool:
        pod = self.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "name").stdout.split()[0]
        argv = ["-n", namespace, "exec", pod, "-c", container, "--", "python3", "-c", PROBE, mode, host, str(port)]
        return self.kubectl(*argv, check=False).returncode == 0

    def sink_events(self) -> list[dict]:
        pod = self.kubectl("-n", SINK_NS, "get", "pods", "-l", "app=sink", "-o", "name").stdout.split()[0]
        out = self.kubectl("-n", SINK_NS, "exec", pod, "--", "cat", "/capture/events.jsonl", check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def _invoke(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(["uv", "run", "invoke", *args], cwd=REPO, env={**os.environ, **env}, check=True, timeout=3600)


@pytest.fixture(scope="session")
def live_cage(tmp_path_factory) -> Iterator[LiveCage]:
    run_id = secrets.token_hex(4)
    work = tmp_path_factory.mktemp("kind")
    policy = {
        "apiVersion": "yolo-cage.dev/v1alpha1",
        "kind": "Policy",
        "destinations": {
            # Both names lead to the sink: the first is a clean destination, the
            # second a paste site the proxy's blocklist refuses.
            "unsafe_host_overrides": {CLEAN_HOST: SINK_IP, PASTE_HOST: SINK_IP},
            "unsafe_allow_private_networks": [f"{SINK_IP}/32"],
        },
    }
    (work / "policy.yaml").write_text(yaml.safe_dump(policy))
    doc = {
        "apiVersion": "yolo-cage.dev/v1alpha1",
        "kind": "Settings",
        "backend": "kind",
        "policy": str(work / "policy.yaml"),
        "agents": [{"name": "alice"}, {"name": "bob"}],
        "backends": {"kind": {"cluster_name": f"yc-{run_id}"}},
    }
    (work / "yolo-cage.yaml").write_text(yaml.safe_dump(doc))
    env = {"YOLO_CAGE_SETTINGS": str(work / "yolo-cage.yaml"), "YOLO_CAGE_STATE_DIR": str(work / "state")}
    cfg = settings_mod.load(work / "yolo-cage.yaml")
    cage = LiveCage(KindBackend(cfg, build=False), run_id, env)
    try:
        _invoke(["up", "--kind"], env)
        _test_fixtures(cage)
        yield cage
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", f"yc-{run_id}"], check=False, timeout=600)


def _test_fixtures(cage: LiveCage) -> None:
    node = f"{cage.backend.cluster}-control-plane"
    subprocess.run(["uv", "run", "invoke", "build", "--only", "sink"], cwd=REPO, check=True, timeout=3600)
    subprocess.run(["kind", "load", "docker-image", "--name", cage.backend.cluster, "yolo-cage/sink:local"], check=True)
    # A stand-in metadata service: the address on the node, a listener in the node's namespace.
    subprocess.run(["docker", "exec", node, "ip", "addr", "replace", f"{METADATA_IP}/32", "dev", "lo"], check=True)
    cage.kubectl("apply", "-f", "-", input=_fixtures_yaml(cage))
    for name in ("sink", "probe", "metadata"):
        cage.kubectl("-n", SINK_NS, "rollout", "status", f"deployment/{name}", "--timeout=300s")
    time.sleep(2)  # Calico programs the new policy asynchronously


def _fixtures_yaml(cage: LiveCage) -> str:
    labels = {"yolo-cage.test": cage.run_id}
    sink_env = [{"name": "SINK_ICMP", "value": "0"}, {"name": "SINK_ALLOW_PARTIAL", "value": "1"}]

    def deployment(name, extra_spec=None, env=()):
        spec = {"containers": [{"name": name, "image": "yolo-cage/sink:local", "imagePullPolicy": "Never", "env": list(env)}]}
        spec.update(extra_spec or {})
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": SINK_NS, "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name, **labels}}, "spec": spec},
            },
        }

    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SINK_NS, "labels": labels}},
        deployment("sink", env=sink_env),
        # The unrestricted control: same probe, a pod where no policy applies.
        deployment("probe", {"containers": [{"name": "probe", "image": "yolo-cage/sink:local", "imagePullPolicy": "Never",
                                              "command": ["sleep", "infinity"]}]}),
        deployment(
            "metadata",
            {"hostNetwork": True},
            env=[*sink_env, {"name": "SINK_HTTPS_PORTS", "value": ""}, {"name": "SINK_TCP_PORTS", "value": ""},
                 {"name": "SINK_UDP_PORTS", "value": ""}, {"name": "SINK_DNS_PORTS", "value": ""},
                 {"name": "SINK_CAPTURE_DIR", "value": "/tmp"}],
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "pastebin", "namespace": SINK_NS, "labels": labels},
            "spec": {"clusterIP": SINK_IP, "selector": {"app": "sink"}, "ports": [{"name": "http", "port": 80}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "test-proxy-egress-to-sink", "namespace": cage.backend.project, "labels": labels},
            "spec": {
                "podSelector": {"matchLabels": {"yolo-cage.role": "proxy"}},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": SINK_NS}},
                            "podSelector": {"matchLabels": {"app": "sink"}}}],
                    "ports": [{"protocol": "TCP", "port": 80}],
                }],
            },
        },
    ]
    return yaml.safe_dump_all(docs)
