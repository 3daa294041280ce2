"""The real scanner service over real HTTP: `python -m scanner` as a subprocess on a free loopback port.

Nothing is mocked. Every "found" case has a clean control through the same endpoint.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

TOKEN = "ghp_" + "Zq8LmN2pR4sT6vW8xY0aB1cD3eF5gH7jK9mQ"
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("scanner")
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "prod-db").write_text("Prod-DB-Password-9f3K2mQx\n")
    config = tmp / "scanner.yaml"
    config.write_text("apiVersion: yolo-cage.dev/v1alpha1\nkind: ScannerConfig\nmax_body_bytes: 2000000\nsecrets_poll_s: 0.2\n")
    port = _free_port()
    log = open(tmp / "scanner.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanner", "--host", "127.0.0.1", "--port", str(port), "--config", str(config),
         "--secrets-dir", str(secrets), "--key-file", str(tmp / "key")],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/readyz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"scanner exited: {(tmp / 'scanner.log').read_text()}")
    else:
        proc.kill()
        pytest.fail("scanner did not become ready in 60 s")
    yield base, secrets, tmp / "scanner.log"
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def scan(base: str, body: bytes = b"", headers=(("content-type", "application/json"),), url: str = "https://api.test/v1", **extra):
    req = {"request_id": "t1", "agent": extra.pop("agent", "a1"), "destination": "api.test", "kind": "http", "method": "POST",
           "url": url, "headers": [list(h) for h in headers], "body_b64": base64.b64encode(body).decode(), **extra}
    return requests.post(base + "/v1/scan", json=req, timeout=60)


def test_probes_and_metrics(service) -> None:
    base, _, _ = service
    assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(base + "/readyz", timeout=5).json()
    assert ready["ready"] and ready["secrets_loaded"] == 1 and ready["rules"] > 60
    scan(base, json.dumps({"a": TOKEN}).encode())
    text = requests.get(base + "/metrics", timeout=5).text
    assert 'yolo_cage_scanner_findings_total{rule="github-token",source="pattern"}' in text
    assert "yolo_cage_scanner_scan_seconds_bucket" in text
    assert "yolo_cage_scanner_findings_dropped_total 0" in text


def test_native_endpoint_contract(service) -> None:
    base, _, _ = service
    found = scan(base, json.dumps({"messages": [{"content": TOKEN}]}).encode())
    assert found.status_code == 200
    doc = found.json()
    assert set(doc) == {"verdict", "findings", "errors", "bytes_scanned", "scan_ms"}
    assert doc["verdict"] == "findings"
    f = doc["findings"][0]
    assert set(f) == {"rule", "source", "location", "transforms", "preview", "fingerprint"}
    assert (f["rule"], f["source"], f["location"], f["preview"]) == ("github-token", "pattern", "body:$.messages[0].content", "ghp_…(40)")
    assert f["fingerprint"].startswith("hm:") and TOKEN not in found.text
    clean = scan(base, json.dumps({"messages": [{"content": "hello"}]}).encode()).json()
    assert clean["verdict"] == "clean" and clean["findings"] == [] and clean["bytes_scanned"] > 0
    # every location of a secret is a finding, with one fingerprint
    twice = scan(base, json.dumps({"a": TOKEN, "b": [TOKEN]}).encode(), url=f"https://api.test/v1?k={TOKEN}").json()
    assert sorted(f["location"] for f in twice["findings"]) == ["body:$.a", "body:$.b[0]", "url:query:k"]
    assert len({f["fingerprint"] for f in twice["findings"]}) == 1


def test_llm_guard_endpoint_contract(service) -> None:
    base, _, _ = service
    found = requests.post(base + "/analyze/prompt", json={"prompt": f"use {TOKEN} please"}, timeout=30).json()
    assert found == {"is_valid": False, "scanners": {"Secrets": 1.0}, "sanitized_prompt": "use ****** please"}
    clean = requests.post(base + "/analyze/prompt", json={"prompt": "use the env var please"}, timeout=30).json()
    assert clean == {"is_valid": True, "scanners": {"Secrets": -1.0}, "sanitized_prompt": "use the env var please"}
    assert requests.post(base + "/analyze/prompt", json={"text": "x"}, timeout=30).status_code == 400


def test_operator_secret_and_reload(service) -> None:
    base, secrets, _ = service
    hit = scan(base, json.dumps({"a": base64.b64encode(b"Prod-DB-Password-9f3K2mQx").decode()}).encode()).json()
    assert [f["rule"] for f in hit["findings"]] == ["operator-secret:prod-db"]
    new_value = "Fresh-Api-Secret-71hQz0Lp"
    probe = json.dumps({"a": new_value}).encode()
    assert scan(base, probe).json()["verdict"] == "clean"
    (secrets / "fresh").write_text(new_value)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and scan(base, probe).json()["verdict"] == "clean":
        time.sleep(0.3)
    assert scan(base, probe).json()["findings"][0]["rule"] == "operator-secret:fresh"


@pytest.mark.parametrize("name,body,headers,code", [
    ("invalid json", b'{"a": ', (("content-type", "application/json"),), "invalid-json"),
    ("bad gzip", b"not gzip", (("content-encoding", "gzip"),), "undecodable-body"),
    ("bomb", gzip.compress(bytes(300 << 20)), (("content-encoding", "gzip"),), "decompression-bomb"),
    ("unknown coding", b"x", (("content-encoding", "lzma"),), "unsupported-content-encoding"),
    ("bad multipart", b"junk", (("content-type", "multipart/form-data; boundary=Z"),), "malformed-multipart"),
    ("over the body limit", b"a" * 2_000_001, (), "body-too-large"),
])
def test_bad_bodies_get_invalid(service, name: str, body: bytes, headers, code: str) -> None:
    base, _, _ = service
    r = scan(base, body, headers)
    assert r.status_code == 200, name
    assert r.json()["verdict"] == "invalid" and [e["code"] for e in r.json()["errors"]] == [code]
    assert scan(base, b'{"ok": 1}').json()["verdict"] == "clean"  # still up and answering


def test_binary_body_has_a_definite_verdict(service) -> None:
    base, _, _ = service
    blob = os.urandom(100_000)
    assert scan(base, blob, (("content-type", "application/octet-stream"),)).json()["verdict"] == "clean"
    assert scan(base, blob + TOKEN.encode(), (("content-type", "application/octet-stream"),)).json()["verdict"] == "findings"


@pytest.mark.parametrize("payload,status", [
    (b"not json", 400),
    (b'{"body_b64": "%%%"}', 400),
    (b'{"headers": "x"}', 400),
    (b'{"kind": "ftp"}', 400),
    (b'{"surprise": 1}', 400),
])
def test_malformed_scan_requests_get_400(service, payload: bytes, status: int) -> None:
    base, _, _ = service
    r = requests.post(base + "/v1/scan", data=payload, headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == status and r.json()["error"] == "bad-request"


def test_too_large_scan_request_gets_413(service) -> None:
    base, _, _ = service
    r = requests.post(base + "/v1/scan", data=b"x" * (8 << 20), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "too-large"
    assert requests.get(base + "/healthz", timeout=5).status_code == 200


def test_fifty_concurrent_1mb_requests(service) -> None:
    base, _, _ = service
    sys.path.insert(0, str(REPO / "tests" / "data"))
    import random

    import scanner_corpus

    body = scanner_corpus.claude_body(random.Random(3), 1_000_000, scanner_corpus._stdlib_sources(40))
    secret_body = body.replace(b'"stream": true', b'"stream": true, "leak": "' + TOKEN.encode() + b'"', 1)
    assert secret_body != body

    def one(i: int) -> tuple[int, str]:
        r = scan(base, secret_body if i % 10 == 0 else body, agent=f"agent-{i}")
        return r.status_code, r.json()["verdict"]

    healthz_ms = []
    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(one, i) for i in range(50)]
        for _ in range(5):  # the event loop stays responsive while scans run in the pool
            t0 = time.perf_counter()
            assert requests.get(base + "/healthz", timeout=5).status_code == 200
            healthz_ms.append((time.perf_counter() - t0) * 1000)
        results = [f.result() for f in futures]
    assert all(status == 200 for status, _ in results)
    assert [v for i, (_, v) in enumerate(results) if i % 10 == 0] == ["findings"] * 5
    assert [v for i, (_, v) in enumerate(results) if i % 10] == ["clean"] * 45
    print(f"\nhealthz during load: max {max(healthz_ms):.1f} ms")


def test_logs_never_contain_a_secret(service) -> None:
    base, _, log = service
    scan(base, json.dumps({"a": TOKEN}).encode())
    text = log.read_text(errors="replace")
    assert TOKEN not in text and "Prod-DB-Password" not in text and "Fresh-Api-Secret" not in text


# GitHub classic token with a valid CRC32: a join across requests must verify it (scanner/splits.py)
CRC_TOKEN = "ghp_" + "Zq8LmN2pR4sT6vW8xY0aB1cD3eF5gH" + "1oqNlv"
CURL = (("user-agent", "curl/8.5.0"), ("accept", "*/*"))


def test_a_token_prefix_does_not_block_its_agents_later_requests(service) -> None:
    """The red team's false positive: after `sk-ant-api03-` and 23 of a key's characters, every later
    request of that agent had findings (35 for a handful of clean requests, CONNECTs included)."""
    base, _, _ = service
    partial = "sk-ant-api03-" + "Xk9mP2vL8qRt4wZ7Ab3dEf5"
    first = scan(base, url=f"https://sink.test/rt?d={partial}", headers=CURL, agent="dev").json()
    assert [(f["rule"], f["transforms"]) for f in first["findings"]] == [("anthropic-api-key", ["partial"])]
    mention = json.dumps({"text": "your key starts with sk-ant-api03-"}).encode()
    assert scan(base, mention, agent="dev").json()["verdict"] == "clean"
    ordinary = [
        {"method": "CONNECT", "url": "https://api.anthropic.com:443/", "headers": (("host", "api.anthropic.com:443"),)},
        {"url": "https://api.test/v1", "headers": (("content-type", "application/json"), *CURL),
         "body": json.dumps({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hello"}]}).encode()},
        {"method": "GET", "url": "https://example.test/index.html", "headers": CURL},
        {"url": "https://api.test/items", "headers": (("content-type", "application/json; charset=utf-8"),
                                                     ("user-agent", "python-requests/2.32.3")), "body": b'{"name": "widget"}'},
    ]
    for req in ordinary * 3:
        got = scan(base, req.get("body", b""), **{k: v for k, v in req.items() if k != "body"}, agent="dev").json()
        assert got["verdict"] == "clean", (req["url"], got["findings"])
    # the control: a token really split over two requests of one agent is found, for that agent only
    scan(base, url=f"https://sink.test/rt?d={CRC_TOKEN[:20]}", headers=CURL, agent="dev2")
    second = scan(base, url=f"https://sink.test/rt?d={CRC_TOKEN[20:]}", headers=CURL, agent="dev2").json()
    assert [(f["rule"], f["location"], f["transforms"]) for f in second["findings"]] == [("github-token", "url:query:d", ["split-request"])]
    peer = scan(base, url=f"https://sink.test/rt?d={CRC_TOKEN[20:]}", headers=CURL, agent="peer").json()
    assert peer["verdict"] == "clean"
