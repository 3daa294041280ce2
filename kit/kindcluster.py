"""The kind cluster and its CNI: config rendering, Calico manifest checks.

Pure functions (no cluster needed), so the unit tests cover them; kit.kind
runs ``kind`` and ``kubectl`` with what they return.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kit.errors import CageError, ConfigError

KIND_DIR = Path(__file__).resolve().parent.parent / "kind"
CLUSTER_FILE = KIND_DIR / "cluster.yaml"
CALICO_PIN = KIND_DIR / "calico" / "pin.yaml"
# Kubernetes keeps the first addresses of the Service range for static
# assignment (min(max(16, size/16), 256)); the proxy's fixed address must be there.
_STATIC_BAND = 256


def cluster_config(node_image: str, path: Path = CLUSTER_FILE) -> dict[str, Any]:
    """kind's cluster config with every node on ``node_image`` (pinned by digest)."""
    if "@sha256:" not in node_image:
        raise CageError(f"node image {node_image!r} is not pinned by digest (name:tag@sha256:...)")
    config = yaml.safe_load(path.read_text())
    problems = config_problems(config)
    if problems:
        raise ConfigError(str(path), problems)
    config = copy.deepcopy(config)
    for node in config["nodes"]:
        node["image"] = node_image
    return config


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """What the cage needs from the cluster config that ``config`` lacks."""
    net = config.get("networking") or {}
    out = []
    if config.get("apiVersion") != "kind.x-k8s.io/v1alpha4" or config.get("kind") != "Cluster":
        out.append("apiVersion/kind must be kind.x-k8s.io/v1alpha4 / Cluster")
    if net.get("disableDefaultCNI") is not True:
        out.append("networking.disableDefaultCNI must be true (kindnet enforces no NetworkPolicy)")
    if net.get("ipFamily") != "ipv4":
        out.append("networking.ipFamily must be ipv4 (the NetworkPolicies are written for IPv4)")
    for key in ("podSubnet", "serviceSubnet"):
        if not net.get(key):
            out.append(f"networking.{key} must be set")
    if not config.get("nodes"):
        out.append("nodes must list at least the control-plane")
    return out


def proxy_address_problems(config: Mapping[str, Any], cluster_ip: str) -> list[str]:
    """Is the proxy's fixed ClusterIP inside the Service range's static band?"""
    subnet = ipaddress.ip_network(config["networking"]["serviceSubnet"])
    address = ipaddress.ip_address(cluster_ip)
    if address not in subnet:
        return [f"the proxy's ClusterIP {cluster_ip} is outside the service subnet {subnet}"]
    if int(address) - int(subnet.network_address) >= min(max(16, subnet.num_addresses // 16), _STATIC_BAND):
        return [f"the proxy's ClusterIP {cluster_ip} is outside the static band of {subnet}"]
    return []


def load_pin(path: Path = CALICO_PIN) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def calico_source(version: str, manifest: str | None, pin: Mapping[str, Any]) -> str:
    """Where the Calico manifest comes from: the user's path or URL, else the pinned release."""
    return manifest or pin["manifest_url"].format(version=version)


def fetch(source: str, timeout: float = 60) -> bytes:
    """The manifest's bytes from a local path or an https URL (never plain http)."""
    if source.startswith("https://"):
        with urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310 - https only
            return response.read()
    if "://" in source:
        raise CageError(f"Calico manifest {source!r}: only a local path or an https:// URL is accepted")
    path = Path(source).expanduser()
    if not path.is_file():
        raise CageError(f"Calico manifest {path} does not exist (backends.kind.calico_manifest)")
    return path.read_bytes()


def images(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every container image the manifest's workloads name."""
    found: list[str] = []
    for doc in docs:
        spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for key in ("initContainers", "containers"):
            found += [c["image"] for c in spec.get(key) or [] if "image" in c]
    return found


def _repo_and_tag(image: str) -> tuple[str, str]:
    """`calico/node`, `v3.29.3` from any registry's reference to it (a first path component with a
    `.` or `:`, or `localhost`, names a registry: the image reference grammar)."""
    name, _, tag = image.split("@")[0].rpartition(":")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        name = rest
    return name, tag


def manifest_problems(data: bytes, version: str, pin: Mapping[str, Any], pod_subnet: str) -> list[str]:
    """Why this Calico manifest is not the pinned release for this cluster (empty: it is)."""
    try:
        docs = [d for d in yaml.safe_load_all(data) if d]
    except yaml.YAMLError as exc:
        return [f"not YAML: {exc}"]
    named = images(docs)
    out = []
    repos = {_repo_and_tag(i)[0] for i in named}
    out += [f"no {repo} image" for repo in pin["images"] if repo not in repos]
    out += [f"image {i} is not at {version}" for i in named if _repo_and_tag(i)[1] != version]
    pool = _pool_cidr(docs)
    if pool is not None and pool != pod_subnet:
        out.append(f"CALICO_IPV4POOL_CIDR {pool} differs from the cluster's podSubnet {pod_subnet}")
    return out


def _pool_cidr(docs: Sequence[Mapping[str, Any]]) -> str | None:
    for doc in docs:
        spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in spec.get("containers") or []:
            for env in c.get("env") or []:
                if env.get("name") == "CALICO_IPV4POOL_CIDR":
                    return str(env.get("value"))
    return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
