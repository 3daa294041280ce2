"""Pod Security Standards, "restricted" profile, checked on pod specs offline.

The namespace enforces the profile at admission (``pod-security.kubernetes.io/
enforce: restricted``); this is the same set of rules applied to the rendered
manifests, so a violation is found before any cluster exists. Each rule
returns the problems it finds, each naming the container and the field.
The rules follow the profile's published table (baseline controls plus the
restricted ones); the cage's own stricter rules are in :func:`cage_problems`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

Spec = Mapping[str, Any]

_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
_PROFILE_TYPES = {"RuntimeDefault", "Localhost"}


def containers(spec: Spec) -> Iterator[tuple[str, Spec]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield f"{key}[{c.get('name', '?')}]", c


def _sc(c: Spec) -> Spec:
    return c.get("securityContext") or {}


def host_namespaces(spec: Spec) -> list[str]:
    return [f"spec.{k} is true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]


def host_process(spec: Spec) -> list[str]:
    out = []
    if (spec.get("securityContext") or {}).get("windowsOptions", {}).get("hostProcess"):
        out.append("spec.securityContext.windowsOptions.hostProcess is true")
    for where, c in containers(spec):
        if _sc(c).get("windowsOptions", {}).get("hostProcess"):
            out.append(f"{where}: windowsOptions.hostProcess is true")
    return out


def privileged(spec: Spec) -> list[str]:
    return [f"{where}: privileged" for where, c in containers(spec) if _sc(c).get("privileged")]


def host_ports(spec: Spec) -> list[str]:
    return [
        f"{where}: hostPort {p['hostPort']}"
        for where, c in containers(spec)
        for p in c.get("ports") or []
        if p.get("hostPort")
    ]


def volume_types(spec: Spec) -> list[str]:
    out = []
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        bad = kinds - _RESTRICTED_VOLUMES
        if bad:
            out.append(f"volume {v.get('name')}: type {sorted(bad)} not allowed (hostPath and others)")
    return out


def sysctls(spec: Spec) -> list[str]:
    found = (spec.get("securityContext") or {}).get("sysctls") or []
    return [f"sysctl {s['name']} is not in the safe set" for s in found if s["name"] not in _SAFE_SYSCTLS]


def proc_mount(spec: Spec) -> list[str]:
    return [
        f"{where}: procMount {_sc(c)['procMount']}"
        for where, c in containers(spec)
        if _sc(c).get("procMount", "Default") != "Default"
    ]


def selinux(spec: Spec) -> list[str]:
    out = []
    contexts = [("spec", spec.get("securityContext") or {})] + [(w, _sc(c)) for w, c in containers(spec)]
    for where, sc in contexts:
        opts = sc.get("seLinuxOptions") or {}
        if opts.get("type", "") not in _SELINUX_TYPES:
            out.append(f"{where}: seLinuxOptions.type {opts['type']}")
        for key in ("user", "role"):
            if opts.get(key):
                out.append(f"{where}: seLinuxOptions.{key} is set")
    return out


def apparmor(spec: Spec) -> list[str]:
    contexts = [("spec", spec.get("securityContext") or {})] + [(w, _sc(c)) for w, c in containers(spec)]
    return [
        f"{where}: appArmorProfile {sc['appArmorProfile'].get('type')}"
        for where, sc in contexts
        if sc.get("appArmorProfile") and sc["appArmorProfile"].get("type") not in _PROFILE_TYPES
    ]


def privilege_escalation(spec: Spec) -> list[str]:
    return [
        f"{where}: allowPrivilegeEscalation is not false"
        for where, c in containers(spec)
        if _sc(c).get("allowPrivilegeEscalation") is not False
    ]


def run_as_non_root(spec: Spec) -> list[str]:
    pod = (spec.get("securityContext") or {}).get("runAsNonRoot")
    out = []
    for where, c in containers(spec):
        own = _sc(c).get("runAsNonRoot")
        if own is False or (own is None and pod is not True):
            out.append(f"{where}: runAsNonRoot is not true")
    return out


def run_as_user(spec: Spec) -> list[str]:
    out = ["spec.securityContext.runAsUser is 0"] if (spec.get("securityContext") or {}).get("runAsUser") == 0 else []
    return out + [f"{where}: runAsUser is 0" for where, c in containers(spec) if _sc(c).get("runAsUser") == 0]


def seccomp(spec: Spec) -> list[str]:
    pod = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    out = []
    if pod is not None and pod not in _PROFILE_TYPES:
        out.append(f"spec.securityContext.seccompProfile.type is {pod}")
    for where, c in containers(spec):
        own = (_sc(c).get("seccompProfile") or {}).get("type")
        if own is not None and own not in _PROFILE_TYPES:
            out.append(f"{where}: seccompProfile.type is {own}")
        elif own is None and pod is None:
            out.append(f"{where}: no seccompProfile (pod or container) of type RuntimeDefault or Localhost")
    return out


def capabilities(spec: Spec) -> list[str]:
    out = []
    for where, c in containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}: capabilities.drop does not include ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            out.append(f"{where}: capabilities.add {sorted(extra)}")
    return out


RESTRICTED_RULES: tuple[Callable[[Spec], list[str]], ...] = (
    host_process,
    host_namespaces,
    privileged,
    host_ports,
    volume_types,
    sysctls,
    proc_mount,
    selinux,
    apparmor,
    privilege_escalation,
    run_as_non_root,
    run_as_user,
    seccomp,
    capabilities,
)


def restricted_problems(spec: Spec) -> list[str]:
    """Every way ``spec`` (a pod spec) breaks the restricted profile."""
    return [problem for rule in RESTRICTED_RULES for problem in rule(spec)]


def cage_problems(spec: Spec) -> list[str]:
    """The cage's own rules on top of the profile: no API token, no writable
    root, limits everywhere, local images only, readiness checked."""
    out = []
    if spec.get("automountServiceAccountToken") is not False:
        out.append("automountServiceAccountToken is not false")
    if spec.get("enableServiceLinks") is not False:
        out.append("enableServiceLinks is not false (Service addresses leak into the environment)")
    for where, c in containers(spec):
        if _sc(c).get("readOnlyRootFilesystem") is not True:
            out.append(f"{where}: readOnlyRootFilesystem is not true")
        limits = (c.get("resources") or {}).get("limits") or {}
        if not {"cpu", "memory"} <= set(limits):
            out.append(f"{where}: no cpu and memory limits")
        if c.get("imagePullPolicy") != "Never":
            out.append(f"{where}: imagePullPolicy is not Never (images are loaded, never pulled)")
        if "readinessProbe" not in c:
            out.append(f"{where}: no readinessProbe")
    return out
