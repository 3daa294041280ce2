"""Every pod spec of every scenario meets Pod Security "restricted" and the
cage's own rules; each rule, in turn, catches the violation it is about."""

from __future__ import annotations

import copy
import ipaddress

import pytest
import yaml

from kit import kindcluster, kindrender, podsecurity
from kit.netpol import workload_pods
from kit.ipsets import Addresses

SCENARIOS = tuple(kindrender.SCENARIOS)


def pod_specs(name: str) -> list[tuple[str, dict]]:
    docs = kindrender.rendered_scenario(name)
    return [(pod.name, spec) for spec, pod in workload_pods(docs, Addresses())]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_pod_meets_restricted(name):
    specs = pod_specs(name)
    assert len(specs) >= 3
    for workload, spec in specs:
        assert podsecurity.restricted_problems(spec) == [], workload


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_pod_meets_the_cage_rules(name):
    for workload, spec in pod_specs(name):
        assert podsecurity.cage_problems(spec) == [], workload


def _agent_spec() -> dict:
    return copy.deepcopy(next(s for w, s in pod_specs("one-agent") if w.startswith("agent-")))


def _first(spec: dict) -> dict:
    return spec["containers"][0]


# (what is broken, how, a word the problem must contain)
VIOLATIONS = [
    ("hostNetwork", lambda s: s.update(hostNetwork=True), "hostNetwork"),
    ("hostPID", lambda s: s.update(hostPID=True), "hostPID"),
    ("hostIPC", lambda s: s.update(hostIPC=True), "hostIPC"),
    ("privileged", lambda s: _first(s)["securityContext"].update(privileged=True), "privileged"),
    ("hostPath", lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
    ("hostPort", lambda s: _first(s).setdefault("ports", []).append({"containerPort": 1, "hostPort": 80}), "hostPort"),
    ("escalation", lambda s: _first(s)["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    ("escalation true", lambda s: _first(s)["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    ("runAsNonRoot", lambda s: _first(s)["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
    ("runAsNonRoot unset", lambda s: s["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    ("root uid", lambda s: _first(s)["securityContext"].update(runAsUser=0), "runAsUser"),
    ("seccomp unconfined", lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccomp"),
    ("seccomp unset", lambda s: s["securityContext"].pop("seccompProfile"), "seccomp"),
    ("drop ALL", lambda s: _first(s)["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "drop"),
    ("add cap", lambda s: _first(s)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "SYS_ADMIN"),
    ("sysctl", lambda s: s["securityContext"].update(sysctls=[{"name": "net.ipv4.ip_forward", "value": "1"}]), "sysctl"),
    ("procMount", lambda s: _first(s)["securityContext"].update(procMount="Unmasked"), "procMount"),
    ("selinux", lambda s: s["securityContext"].update(seLinuxOptions={"type": "spc_t"}), "seLinux"),
    ("apparmor", lambda s: s["securityContext"].update(appArmorProfile={"type": "Unconfined"}), "appArmor"),
    ("init container", lambda s: s.update(initContainers=[{"name": "i", "image": "x"}]), "initContainers[i]"),
]


@pytest.mark.parametrize("what,mutate,word", VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_each_restricted_rule_catches_its_violation(what, mutate, word):
    spec = _agent_spec()
    assert podsecurity.restricted_problems(spec) == []  # control: clean before
    mutate(spec)
    problems = podsecurity.restricted_problems(spec)
    assert any(word in p for p in problems), problems


CAGE_VIOLATIONS = [
    ("token", lambda s: s.pop("automountServiceAccountToken"), "automountServiceAccountToken"),
    ("service links", lambda s: s.update(enableServiceLinks=True), "enableServiceLinks"),
    ("writable root", lambda s: _first(s)["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    ("no limits", lambda s: _first(s)["resources"].pop("limits"), "limits"),
    ("pulls", lambda s: _first(s).update(imagePullPolicy="IfNotPresent"), "imagePullPolicy"),
    ("no readiness", lambda s: _first(s).pop("readinessProbe"), "readinessProbe"),
]


@pytest.mark.parametrize("what,mutate,word", CAGE_VIOLATIONS, ids=[v[0] for v in CAGE_VIOLATIONS])
def test_each_cage_rule_catches_its_violation(what, mutate, word):
    spec = _agent_spec()
    assert podsecurity.cage_problems(spec) == []
    mutate(spec)
    assert any(word in p for p in podsecurity.cage_problems(spec))


def test_agents_run_as_uid_1000_without_dns_and_reach_the_proxy_by_its_fixed_address():
    docs = kindrender.rendered_scenario("two-agents")
    proxy_ip = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "proxy")["spec"]["clusterIP"]
    config = kindcluster.cluster_config("kindest/node:v1@sha256:" + "0" * 64)
    assert kindcluster.proxy_address_problems(config, proxy_ip) == []
    agents = [s for w, s in pod_specs("two-agents") if w.startswith("agent-")]
    assert len(agents) == 2
    for spec in agents:
        assert spec["securityContext"]["runAsUser"] == 1000
        assert spec["dnsPolicy"] == "None"
        # The only resolver is the agent's own loopback, where nothing listens.
        assert all(ipaddress.ip_address(n).is_loopback for n in spec["dnsConfig"]["nameservers"])
        assert spec["hostAliases"] == [{"ip": proxy_ip, "hostnames": ["proxy"]}]


def test_proxy_address_outside_the_static_band_is_refused():
    config = kindcluster.cluster_config("kindest/node:v1@sha256:" + "0" * 64)
    assert kindcluster.proxy_address_problems(config, "10.96.200.1")
    assert kindcluster.proxy_address_problems(config, "10.97.0.80")


def test_only_agents_mount_the_ca_certificate_and_never_the_key():
    for workload, spec in pod_specs("two-agents"):
        text = yaml.safe_dump(spec)
        if workload.startswith("agent-"):
            assert kindrender.CA_CONFIGMAP in text
            for secret in (kindrender.PROXY_CA_SECRET, kindrender.CREDENTIALS_SECRET, kindrender.AGENTS_SECRET):
                assert secret not in text
        if workload == "scanner":
            assert kindrender.PROXY_CA_SECRET not in text


def test_probe_scripts_exist_in_the_images():
    """An exec probe naming a script the image does not ship would never pass."""
    root = kindrender.KIND_DIR.parent / "images"
    checked = 0
    for workload, spec in pod_specs("one-agent"):
        image = workload.split("-")[0]  # agent-dev -> agent
        for c in spec["containers"]:
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                command = (c.get(probe) or {}).get("exec", {}).get("command", [])
                if command and command[0].startswith("/usr/local/bin/"):
                    assert (root / image / "files" / command[0].lstrip("/")).is_file(), command[0]
                    checked += 1
    assert checked == 3


def test_file_names_match_what_the_images_read():
    """The Compose backend and the images agree on these names; kind must too."""
    from kit import composeplan

    assert kindrender.CA_CERT_KEY == composeplan.AGENT_CA_FILE
    agent = dict(pod_specs("one-agent"))["agent-dev"]
    ca = next(v for v in agent["volumes"] if v["name"] == "ca")["configMap"]["items"]
    assert ca == [{"key": composeplan.AGENT_CA_FILE, "path": composeplan.AGENT_CA_FILE}]
    proxy = dict(pod_specs("one-agent"))["proxy"]
    mount = next(m for m in proxy["containers"][0]["volumeMounts"] if m["name"] == "ca")
    assert mount["mountPath"] == "/var/lib/yolo-cage/ca/" + composeplan.PROXY_CA_FILE
    assert mount["subPath"] == composeplan.PROXY_CA_FILE
