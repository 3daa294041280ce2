"""A fake of what the red team's kind world talks to: kubectl, kind and the nodes' docker.

It answers from a small model of a red-team cluster (pods with labels and
addresses, Services, the cage's NetworkPolicies as rendered, captures, the
nodes' loopback addresses and cgroups) and records every command, so the
world's reading and its fault commands can be checked without a cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kit.errors import RunError
from kit.redteam import kind_render
from kit.runner import Result

PROJECT = kind_render.SCENARIO_PROJECT
CLUSTER = "yolo-cage-redteam"
NODE = f"{CLUSTER}-control-plane"
NODE_IP = "172.18.0.2"
ROLES = {"agent", "proxy", "scanner", "sink", "witness", "node-standin"}


def pod(name: str, namespace: str, labels: dict[str, str], ip: str, *, host_network: bool = False) -> dict:
    container = labels.get("yolo-cage.role", "agent")
    container = "agent" if container == "agent" else container
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": NODE, "hostNetwork": host_network, "containers": [{"name": container}]},
        "status": {"phase": "Running", "podIP": NODE_IP if host_network else ip, "hostIP": NODE_IP,
                   "containerStatuses": [{"containerID": f"containerd://{name}-cid"}]},
    }


@dataclass
class FakeKube:
    policies: list[dict]  # the cage's NetworkPolicies (as the cluster would return them)
    commands: list[list[str]] = field(default_factory=list)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (pod, path) -> content
    loopback: dict[str, set[str]] = field(default_factory=lambda: {NODE: {"127.0.0.1", "169.254.169.254", "100.100.100.200"}})
    cgroup: str = "0::/kubelet.slice/kubelet-kubepods.slice/cri-containerd-abc.scope\n"
    fail_on: str | None = None

    def __post_init__(self) -> None:
        ns, att = PROJECT, kind_render.ATTACKER_NS
        self.pods = [
            pod("agent-dev-1", ns, {"yolo-cage.role": "agent", "yolo-cage.agent": "dev"}, "192.168.10.5"),
            pod("agent-peer-1", ns, {"yolo-cage.role": "agent", "yolo-cage.agent": "peer"}, "192.168.10.6"),
            pod("proxy-1", ns, {"yolo-cage.role": "proxy", "app.kubernetes.io/name": "proxy"}, "192.168.10.7"),
            pod("scanner-1", ns, {"yolo-cage.role": "scanner"}, "192.168.10.8"),
            pod("sink-1", att, {"yolo-cage.role": "sink"}, "192.168.20.2"),
            pod("witness-1", att, {"yolo-cage.role": "witness"}, "192.168.20.3"),
            pod("node-standin-1", att, {"yolo-cage.role": "node-standin"}, "", host_network=True),
        ]
        self.services = {("default", "kubernetes"): "10.96.0.1", ("kube-system", "kube-dns"): "10.96.0.10",
                         (att, "sink"): kind_render.SINK_SERVICE_IP}
        self.files.setdefault(("sink-1", kind_render.CAPTURE_FILE), b"")
        self.files.setdefault(("node-standin-1", kind_render.CAPTURE_FILE), b"")

    # --- the fake runner ----------------------------------------------------------------------

    def __call__(self, argv, **kw) -> Result:
        argv = [str(a) for a in argv]
        self.commands.append(argv)
        if self.fail_on and self.fail_on in " ".join(argv):
            raise RunError(argv, 1, "simulated failure")
        out = self._answer(argv, kw.get("input"))
        return Result(tuple(argv), 0, out, "")

    def _answer(self, argv: list[str], stdin) -> str:
        if argv[:3] == ["kind", "get", "nodes"]:
            return "\n".join(sorted(self.loopback))
        if argv[:3] == ["docker", "network", "inspect"]:
            return json.dumps([{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}, {"Subnet": "fc00:f853::/64"}])
        if argv[:2] == ["docker", "exec"]:
            return self._node(argv[2], argv[3:])
        if argv[0] == "kubectl":
            return self._kubectl(argv[3:], stdin)
        return ""

    def _node(self, node: str, argv: list[str]) -> str:
        if argv[:3] == ["ip", "-o", "-4"]:
            # `ip -o` prints one line per address ("\\" stands for the line breaks it folded).
            return "".join(f"1: lo    inet {a}/32 scope host lo\\       valid_lft forever preferred_lft forever\n"
                           for a in sorted(self.loopback[node]))
        if argv[:2] == ["crictl", "inspect"]:
            return "4242\n"
        if argv == ["cat", "/proc/4242/cgroup"]:
            return self.cgroup
        return ""

    def _kubectl(self, args: list[str], stdin) -> str:
        namespace = args[args.index("-n") + 1] if "-n" in args else None
        if "exec" in args:
            target = args[args.index("exec") + 1:]
            target = [a for a in target if a != "-i"]
            if target[-2:] and target[-2] == "cat":
                return self.files.get((target[0], target[-1]), b"").decode()
            return json.dumps({"ran": target, "stdin": len(stdin or b"")})
        if "get" in args and "pods" in args:
            selector = dict(kv.split("=") for kv in args[args.index("-l") + 1].split(","))
            items = [p for p in self.pods if p["metadata"]["namespace"] == namespace
                     and all(p["metadata"]["labels"].get(k) == v for k, v in selector.items())]
            return json.dumps({"items": items})
        if "get" in args and "service" in args:
            return json.dumps({"spec": {"clusterIP": self.services[(namespace, args[args.index("service") + 1])]}})
        if "get" in args and "networkpolicies" in args:
            return json.dumps({"items": self.policies})
        if "get" in args and "namespace" in args:
            name = args[args.index("namespace") + 1]
            return json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {}}})
        return ""

    def lines(self, needle: str) -> list[str]:
        return [" ".join(c) for c in self.commands if needle in " ".join(c)]
