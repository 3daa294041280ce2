"""The scripted model's container, seen from the host: TLS, start, scripts in, transcript out.

TEST ONLY. The model (``images/model``, code in :mod:`kit.redteam.model`)
stands where ``api.anthropic.com`` would be: on the cage's egress network at
a fixed address, which the test policy names for that host
(``destinations.unsafe_host_overrides``), so Claude Code's API calls take the
same path as in production, agent -> proxy (scan, audit) -> upstream TLS.

Its TLS identity comes from a CA made here, on the host, before the cage is
up: the cage's proxy must trust that CA for upstream TLS from its start
(``upstream_cas``), and the image stays standard-library only. Scripts go in,
and the transcript comes out, through the archive API: the model has no
control endpoint an agent could reach through the proxy.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
import tarfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit.errors import CageError
from kit.names import LABEL_ROLE, image_ref

API_HOST = "api.anthropic.com"
STATE = "/var/lib/yolo-cage-model"
TRANSCRIPT = f"{STATE}/transcript.jsonl"
MODEL_UID = 10003
MODEL_HOST = 201  # the model's address within the egress subnet (the sink has .200)
READY_TIMEOUT = 60.0


# --- TLS ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelTLS:
    ca_pem: bytes  # what the proxy trusts upstream
    chain_pem: bytes  # leaf + CA, what the model serves
    key_pem: bytes  # the leaf's key (the CA's key is thrown away once the leaf is signed)
    names: tuple[str, ...]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def make_tls(names: Iterable[str] = (API_HOST,), days: int = 7) -> ModelTLS:
    """A throwaway CA and one leaf for ``names``, strict enough for OpenSSL's and Python's X.509 checks."""
    names = tuple(names)
    now = dt.datetime.now(dt.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(_name("yolo-cage test model CA")).issuer_name(_name("yolo-cage test model CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(ca=True), critical=True).add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in names]
    leaf = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ModelTLS(ca.public_bytes(pem), leaf.public_bytes(pem) + ca.public_bytes(pem), key, names)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


# --- the container -----------------------------------------------------------------------------


def model_address(egress4: ipaddress.IPv4Network) -> str:
    return str(egress4.network_address + MODEL_HOST)


EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "addon" / "policy.example.yaml"
TELEMETRY_RULE = "claude-code-telemetry"


def policy_fragment(egress4: ipaddress.IPv4Network, api_key_file: Path | None = None) -> dict[str, Any]:
    """What the test policy adds for Claude Code, as the example policy has it, plus the model's address.

    From ``addon/policy.example.yaml`` (read, not copied, so the two cannot
    drift): ``report`` as the scan mode of the LLM API (it carries whole files
    the agent read), its blocklist (Claude Code's third-party telemetry
    intakes) and the rule that denies Claude Code's telemetry calls to its
    API host. The model's address is in the egress subnet the test policy
    already allows (``unsafe_allow_private_networks``). With ``api_key_file``,
    the ready-made ``anthropic-api-key`` binding takes its real value from that
    file (required): the agents get a placeholder, the proxy injects the key.
    """
    import yaml

    example = yaml.safe_load(EXAMPLE_POLICY.read_text(encoding="utf-8"))
    modes = [d for d in example["scan"]["destinations"] if API_HOST in d["hosts"]]
    rules = [r for r in example["rules"]["deny"] if r["id"] == TELEMETRY_RULE]
    if not modes or not rules:
        raise CageError(f"{EXAMPLE_POLICY} has no scan mode for {API_HOST} or no rule {TELEMETRY_RULE!r}")
    fragment: dict[str, Any] = {
        "destinations": {"unsafe_host_overrides": {API_HOST: model_address(egress4)},
                         "blocklist": list(example["destinations"]["blocklist"])},
        "scan": {"destinations": modes},
        "rules": {"deny": rules},
    }
    if api_key_file is not None:
        binding = {"name": BINDING, "preset": BINDING, "source": {"file": str(api_key_file)}, "required": True}
        fragment["credentials"] = {"bindings": [binding]}
    return fragment


def tar_of(files: Mapping[str, bytes], uid: int = MODEL_UID, mode: int = 0o600) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, uid, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class ModelContainer:
    container: Any
    address: str
    tls: ModelTLS

    @classmethod
    def start(cls, client, *, network: str, egress4: ipaddress.IPv4Network, tls: ModelTLS, name: str,
              labels: Mapping[str, str], project: str, tag: str = "local") -> ModelContainer:
        """Create the model on ``network`` at its fixed address, put its TLS files, start, wait until ready."""
        address = model_address(egress4)
        endpoint = client.api.create_endpoint_config(ipv4_address=address, aliases=[API_HOST])
        container = client.containers.create(
            image_ref("model", tag), name=name, detach=True, network=network,
            networking_config={network: endpoint},
            # Port 443 without any capability: the sysctl is per network namespace.
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
            cap_drop=["ALL"], security_opt=["no-new-privileges:true"], mem_limit="256m", pids_limit=64,
            labels={**labels, LABEL_ROLE: "model", "yolo-cage.project": project},
        )
        model = cls(container, address, tls)
        try:
            container.put_archive(f"{STATE}/tls", tar_of({"chain.pem": tls.chain_pem, "key.pem": tls.key_pem}))
            container.start()
            model.wait_ready()
        except BaseException:
            model.remove()
            raise
        return model

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.container.reload()
            logs = self.container.logs().decode("utf-8", "replace")
            if self.container.status == "exited":
                raise CageError(f"the test model exited: {logs[-800:]}")
            if "yolo-cage model ready" in logs:
                return
            time.sleep(0.2)
        raise CageError(f"the test model did not become ready in {timeout:.0f}s")

    def put_scripts(self, run: str, document: Mapping[str, Any]) -> None:
        data = json.dumps(document, indent=1).encode()
        self.container.put_archive(f"{STATE}/scripts", tar_of({f"{run}.json": data}))

    def transcript_lines(self) -> list[str]:
        from kit.redteam.compose_world import read_file

        try:
            data = read_file(self.container, TRANSCRIPT)
        except Exception as exc:  # noqa: BLE001 - docker.errors.NotFound and friends
            raise CageError(f"cannot read the test model's transcript: {exc}") from exc
        return data.decode("utf-8", "replace").splitlines()

    def transcript(self, since: int = 0) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.transcript_lines()[since:] if line.strip()]

    def mark(self) -> int:
        return len(self.transcript_lines())

    def remove(self) -> None:
        try:
            self.container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001 - already gone; the run's reaper catches the rest
            pass


# --- attaching to a red-team cage -------------------------------------------------------------


def merge_policy(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``: mappings merge, lists put ``extra``'s items first (first match wins);
    a named item (rule ``id``, binding ``name``) of ``extra`` replaces the base's item of that name."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_policy(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            names = {_item_name(v) for v in value} - {None}
            out[key] = list(value) + [v for v in out[key] if v not in value and _item_name(v) not in names]
        else:
            out[key] = value
    return out


def _item_name(item: Any) -> str | None:
    return (item.get("id") or item.get("name")) if isinstance(item, Mapping) else None


CLAUDE_POLICY = "policy.claude.yaml"


def attach(cage, *, tag: str = "local") -> ModelContainer:
    """Put the model on a running red-team cage (``kit.redteam.testcage.TestCage``) as ``api.anthropic.com``."""
    project = cage.backend.project
    # A model left by an earlier run (a kept cage) has a TLS key this process
    # no longer holds: replace it.
    for old in cage.client.containers.list(all=True, filters={"label": [f"{LABEL_ROLE}=model", f"yolo-cage.project={project}"]}):
        old.remove(force=True, v=True)
    model = ModelContainer.start(cage.client, network=f"{project}_egress", egress4=cage.egress4, tls=make_tls(),
                                 name=f"{project}-model", labels=cage.labels, project=project, tag=tag)
    try:
        configure(cage, model)
    except BaseException:
        model.remove()
        raise
    return model


def configure(cage, model: ModelContainer) -> bool:
    """Make the cage's proxy trust the model and send the API host to it; False if it already did.

    The proxy reads both at its start, so the policy (the cage's own plus
    :func:`policy_fragment`) and the upstream CAs are extended and ``up`` runs
    again: only the proxy is recreated (its configuration digest changed).
    Called before every run: a red-team test that reconfigured the cage for
    its own purpose may have dropped the model's part.
    """
    import yaml

    from addon import policy as policy_model

    backend = cage.backend
    if backend.policy_file is not None and backend.policy_file.name == CLAUDE_POLICY and \
            backend.upstream_cas.get("model") == model.tls.ca_pem:
        return False
    base = yaml.safe_load(backend.policy_file.read_text(encoding="utf-8")) if backend.policy_file else {
        "apiVersion": policy_model.API_VERSION, "kind": policy_model.KIND}
    directory = backend.policy_file.parent if backend.policy_file else model_dir(backend)
    merged = merge_policy(base, policy_fragment(cage.egress4, api_key_file(backend.project)))
    path = directory / CLAUDE_POLICY
    text = "# A red-team policy plus Claude Code's part (kit/redteam/claude_model.py): TEST ONLY.\n"
    path.write_text(text + yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    policy_model.load(path)  # refuse a broken merge here, not in the proxy
    backend.policy_file = path
    backend.upstream_cas["model"] = model.tls.ca_pem
    backend.up()
    return True


# --- the Anthropic key the cage binds (credentials, issue 7) ------------------------------------

BINDING = "anthropic-api-key"
KEY_FILE = "anthropic-api-key"


def api_key_file(project: str) -> Path:
    """The bound key's real value, made once per cage (a fresh Anthropic-format key, 0600 in the state dir)."""
    from kit import state
    from kit.redteam.canaries import anthropic

    path = state.project_dir(project) / "redteam" / KEY_FILE
    if not path.exists():
        state.write_private(path, anthropic().encode())
    return path


def bound_key(project: str) -> str:
    """The real value the proxy injects for the cage's agents (never inside an agent)."""
    from kit import state

    return state.read_private(api_key_file(project)).decode().strip()


def placeholder(cage, agent: str) -> str:
    """The agent's placeholder for the key, as its container's environment holds it."""
    container = cage.backend.container_for(agent)
    container.reload()
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"] if "=" in e)
    value = env.get("ANTHROPIC_API_KEY", "")
    if not value.startswith("yolo-cage-placeholder-"):
        raise CageError(f"agent {agent} holds no placeholder for {BINDING} (is the binding in the cage's policy?)")
    return value


def binding_options(cage, agent: str) -> dict[str, Any]:
    """``ClaudeOptions`` fields for a run under the binding: the agent's placeholder as Claude Code's key,
    the real key as what the API must receive, and the real key among the secrets searched at the sink."""
    real = bound_key(cage.backend.project)
    return {"agent": agent, "agent_api_key": placeholder(cage, agent), "expected_model_key": real,
            "secrets": {"bound-anthropic-key": real}}


def model_dir(backend) -> Path:
    from kit import state

    path = state.project_dir(backend.project) / "redteam"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- a kept cage (`invoke redteam --claude --keep`, then another run) -------------------------------------

TLS_FILE = "model-tls.json"


def _tls_path(project: str) -> Path:
    from kit import state

    return state.project_dir(project) / "redteam" / TLS_FILE


def save_tls(project: str, tls: ModelTLS) -> None:
    """The model's TLS material, so a later run can reuse a kept cage's model (the key stays 0600)."""
    from kit import state

    doc = {"ca": tls.ca_pem.decode(), "chain": tls.chain_pem.decode(), "key": tls.key_pem.decode(), "names": list(tls.names)}
    state.write_private(_tls_path(project), json.dumps(doc).encode())


def kept(cage) -> ModelContainer | None:
    """The running model of a kept red-team cage, if its proxy was configured for it, else None."""
    from kit import state

    project = cage.backend.project
    found = cage.client.containers.list(filters={"label": [f"{LABEL_ROLE}=model", f"yolo-cage.project={project}"]})
    path = _tls_path(project)
    if not found or not path.exists() or not (path.parent / CLAUDE_POLICY).exists():
        return None
    doc = json.loads(state.read_private(path))
    tls = ModelTLS(doc["ca"].encode(), doc["chain"].encode(), doc["key"].encode(), tuple(doc["names"]))
    return ModelContainer(found[0], model_address(cage.egress4), tls)


def remove_all(project: str) -> None:
    """Every model container of ``project`` (a kept cage's, on `invoke redteam --down`)."""
    from kit.compose import docker_client

    client = docker_client()
    for container in client.containers.list(all=True, filters={"label": [f"{LABEL_ROLE}=model", f"yolo-cage.project={project}"]}):
        container.remove(force=True, v=True)
    _tls_path(project).unlink(missing_ok=True)
