"""The kind manifests render, are up to date, and validate strictly against the
Kubernetes schemas of several minor versions (offline, bundled with
kubernetes-validate)."""

from __future__ import annotations

import copy
import json
import os
import shutil

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, all_versions

from kit import kindrender

# Every minor version whose schemas kubernetes-validate bundles (1.25 to 1.37 with
# kubernetes-validate 1.37.0), the pinned node image's 1.32 among them.
VERSIONS = tuple(dict.fromkeys(all_versions()))  # listed once per schema flavour


def test_enough_kubernetes_versions_are_bundled():
    assert len(VERSIONS) >= 3 and "1.32.0" in VERSIONS, VERSIONS
SCENARIOS = tuple(kindrender.SCENARIOS)


def _kubectl_or_skip() -> None:
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed on this CI machine: the manifests cannot be rendered")
        pytest.skip("kubectl is not installed: cannot re-render the kustomize overlays here")


def validate(doc: dict, version: str) -> None:
    """Strict validation; a kind without a bundled schema is an error, not a warning."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except SchemaNotFoundError as exc:
        raise AssertionError(exc.message) from None


@pytest.mark.parametrize("name", SCENARIOS)
def test_checked_in_scenarios_are_what_the_kit_renders(name):
    _kubectl_or_skip()
    fresh = kindrender.scenario_files(name)
    for fname, text in fresh.items():
        on_disk = (kindrender.SCENARIO_DIR / name / fname).read_text()
        # Objects, not text: another kubectl may format the same objects differently.
        assert kindrender.load_all(on_disk) == kindrender.load_all(text), (
            f"kind/scenarios/{name}/{fname} is stale: run `uv run python -m kit.kindrender`"
        )


def _all_objects() -> list[dict]:
    """Every scenario's manifests and the objects the kit creates, each distinct one once."""
    docs = [d for name in SCENARIOS for d in kindrender.rendered_scenario(name)]
    docs += kindrender.cage_objects(_inputs())
    unique = {json.dumps(d, sort_keys=True): d for d in docs}
    return list(unique.values())


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_and_created_objects_validate_strictly(version):
    docs = _all_objects()
    assert {"Namespace", "Deployment", "Service", "NetworkPolicy", "Secret", "ConfigMap"} <= {d["kind"] for d in docs}
    for doc in docs:
        validate(doc, version)


def test_strict_validation_rejects_an_unknown_field():
    """Control: the validator really is strict (a typo in a securityContext fails)."""
    doc = copy.deepcopy(next(d for d in kindrender.rendered_scenario("one-agent") if d["kind"] == "Deployment"))
    validate(doc, "1.32.0")
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(ValidationError):
        validate(doc, "1.32.0")


def test_strict_validation_rejects_a_wrong_type():
    doc = copy.deepcopy(next(d for d in kindrender.rendered_scenario("one-agent") if d["kind"] == "NetworkPolicy"))
    doc["spec"]["policyTypes"] = "Egress"
    with pytest.raises(ValidationError):
        validate(doc, "1.32.0")


def test_every_object_the_pods_name_is_created_by_the_kit():
    for name in SCENARIOS:
        docs = kindrender.rendered_scenario(name)
        project, agents = kindrender.SCENARIOS[name]
        created = {(o["kind"], o["metadata"]["name"]) for o in kindrender.cage_objects(_inputs(project, agents))}
        assert kindrender.referenced_objects(docs) == created


def test_no_secret_is_rendered_or_committed():
    for name in SCENARIOS:
        kinds = {d["kind"] for d in kindrender.rendered_scenario(name)}
        assert "Secret" not in kinds and "ConfigMap" not in kinds


def test_everything_is_in_the_project_namespace_and_labelled():
    for name in SCENARIOS:
        project, _ = kindrender.SCENARIOS[name]
        for doc in kindrender.rendered_scenario(name):
            meta = doc["metadata"]
            if doc["kind"] == "Namespace":
                assert meta["name"] == project
            else:
                assert meta["namespace"] == project, meta["name"]
            labels = meta["labels"]
            assert labels["yolo-cage.project"] == project
            assert labels["app.kubernetes.io/part-of"] == "yolo-cage"
            assert labels["app.kubernetes.io/instance"] == project


def test_namespace_enforces_pod_security_restricted():
    ns = next(d for d in kindrender.rendered_scenario("one-agent") if d["kind"] == "Namespace")
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def _inputs(project="yolo-cage", agents=None) -> kindrender.CageInputs:
    agents = agents if agents is not None else kindrender.SCENARIOS["two-agents"][1]
    return kindrender.CageInputs(
        project=project,
        ca_cert_pem=b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        ca_key_and_cert_pem=b"key and cert",
        policy_yaml="apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n",
        agents_json=b"{}",
        proxy_urls={a.name: f"http://{a.name}:t@proxy:8080" for a in agents},
        credentials={"GITHUB_TOKEN": b"value"},
    )
