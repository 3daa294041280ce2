"""scanner/service.py on scanner/http1.py: routes, errors, the pool, the busy limit, and a clean stop on SIGTERM."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from test_scanner_http1 import Client, request, serving

from scanner import service
from scanner.core import Scanner
from scanner.http1 import Limits, Server

TOKEN = "ghp_" + "Zq8LmN2pR4sT6vW8xY0aB1cD3eF5gH7jK9mQ"
REPO = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def running(scanner: Scanner, limits: Limits | None = None) -> Iterator[tuple[service.ScanService, Server, str]]:
    """The service on a loopback port, its loop in a thread; stopped and closed afterwards."""
    started: list[service.ScanService] = []

    async def start() -> Server:
        svc, server = await service.start(scanner, "127.0.0.1", 0, limits)
        started.append(svc)
        return server

    async def close() -> None:
        await started[0].close()

    with serving(start, close) as (server, loop_thread):
        yield started[0], server, loop_thread


def scan_payload(body: bytes) -> bytes:
    return orjson.dumps({"request_id": "t", "agent": None, "destination": "api.test", "kind": "http", "method": "POST",
                         "url": "https://api.test/v1", "headers": [["content-type", "text/plain"]],
                         "body_b64": base64.b64encode(body).decode()})


def post_scan(client: Client, payload: bytes) -> tuple[int, dict[str, object]]:
    client.send(request("POST", "/v1/scan", payload, "Content-Type: application/json"))
    status, _, body = client.response()
    return status, orjson.loads(body)


def test_routes_unknown_paths_and_wrong_methods(scanner: Scanner) -> None:
    with running(scanner) as (_, server, _), Client(server.port) as c:
        c.send(request("GET", "/healthz?probe=1"))
        assert c.response()[0] == 200  # a query does not change the route
        c.send(request("GET", "/nope"))
        status, _, body = c.response()
        assert status == 404 and orjson.loads(body)["error"] == "not-found"
        c.send(request("GET", "/v1/scan"))
        status, headers, body = c.response()
        assert status == 405 and headers["allow"] == "POST" and orjson.loads(body)["error"] == "method-not-allowed"
        c.send(request("POST", "/healthz", b"{}"))
        assert c.response()[0] == 405
        c.send(request("GET", "/metrics"))
        status, headers, body = c.response()
        assert status == 200 and headers["x-content-type-options"] == "nosniff"
        assert headers["content-type"] == "text/plain; charset=utf-8" and b"yolo_cage_scanner_inflight 0" in body
        assert post_scan(c, scan_payload(b"hello"))[1]["verdict"] == "clean"  # the same connection still serves


def test_too_large_is_413_with_the_json_error_and_counted(scanner: Scanner) -> None:
    payload = scan_payload(b"a" * 30_000)
    with running(scanner, Limits(max_body=len(payload))) as (svc, server, _):
        with Client(server.port) as c:  # the control: exactly the limit is scanned
            status, answer = post_scan(c, payload)
            assert status == 200 and answer["verdict"] == "clean"
        with Client(server.port) as c:
            status, answer = post_scan(c, payload + b" ")
            assert status == 413 and answer["error"] == "too-large" and set(answer) == {"error", "detail"}
            assert c.closed()
        assert svc.metrics.errors["too-large"] == 1


def test_a_failing_scan_is_a_logged_500_without_the_body(scanner: Scanner, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    def broken(req):
        raise RuntimeError("engine bug")

    with running(scanner) as (svc, server, _), Client(server.port) as c:
        monkeypatch.setattr(scanner, "scan_request", broken)
        with caplog.at_level(logging.ERROR, logger="scanner.service"):
            for size in (10, service.INLINE_MAX):  # inline and in the pool
                status, answer = post_scan(c, scan_payload(TOKEN.encode() + b"x" * size))
                assert status == 500 and answer["error"] == "internal"
        monkeypatch.undo()
        assert post_scan(c, scan_payload(b"fine"))[0] == 200  # the control: the service goes on
    assert svc.metrics.errors["internal"] == 2 and "engine bug" in caplog.text and TOKEN not in caplog.text


def test_a_big_scan_in_the_pool_leaves_probes_answering_and_busy_is_503(scanner: Scanner,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """workers=1, max_queue=1: one scan runs, one waits, the third is refused; /healthz answers all along."""
    monkeypatch.setattr(scanner, "cfg", scanner.cfg.model_copy(update={"workers": 1, "max_queue": 1}))
    gate, entered = threading.Event(), threading.Semaphore(0)
    original = scanner.scan_request

    def held(req):
        entered.release()
        assert gate.wait(20)
        return original(req)

    monkeypatch.setattr(scanner, "scan_request", held)
    big = scan_payload(b"y" * service.INLINE_MAX)
    answers: list[tuple[int, dict[str, object]]] = []

    def scan_on_own_connection() -> None:
        with Client(server.port, timeout=30) as c:
            answers.append(post_scan(c, big))

    with running(scanner) as (svc, server, _):
        first = threading.Thread(target=scan_on_own_connection)
        first.start()
        assert entered.acquire(timeout=10)  # the first scan is in the pool, held
        second = threading.Thread(target=scan_on_own_connection)
        second.start()
        deadline = time.monotonic() + 10
        while svc.metrics.inflight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with Client(server.port) as c:
            c.send(request("GET", "/healthz"))
            assert c.response()[0] == 200  # the event loop answers while the pool is full
            status, answer = post_scan(c, big)
            assert (status, answer) == (503, {"error": "busy"})
            gate.set()
            first.join(20)
            second.join(20)
            assert [s for s, _ in answers] == [200, 200]  # the control: the held ones are served
            assert post_scan(c, big)[0] == 200  # and, with room again, a new one
        assert svc.metrics.errors["busy"] == 1 and svc.metrics.inflight == 0


def test_python_m_scanner_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "scanner.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "--host", "127.0.0.1", "--port", str(port)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                idle = Client(port)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "scanner.log").read_text()
                time.sleep(0.2)
        with idle:
            idle.send(request("GET", "/readyz"))
            assert idle.response()[0] == 200  # the control: it serves, and keeps the connection
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            assert idle.closed()  # the kept-alive connection was closed, not left hanging
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "stopping" in (tmp_path / "scanner.log").read_text()


def test_the_proxys_scan_client_reuses_connections_and_survives_an_idle_close(scanner: Scanner) -> None:
    """addon/scanclient.py against this server: answers on a kept-alive connection, and a request that meets
    a connection the server closed for idleness is sent again on a new one (the client's contract)."""
    import asyncio

    from addon.scanclient import ScannerClient

    limits = Limits(max_body=scanner.cfg.max_request_bytes, idle_timeout=0.3)
    with running(scanner, limits) as (svc, server, _):
        async def calls() -> list[str]:
            client = ScannerClient(f"http://127.0.0.1:{server.port}")
            verdicts = []
            try:
                for pause in (0, 0, 0.6, 0):
                    await asyncio.sleep(pause)
                    outcome = await client.scan(scan_payload(TOKEN.encode() if pause else b"clean"), 10)
                    verdicts.append(getattr(outcome, "verdict", repr(outcome)))
                    assert len(server.connections) == 1  # one kept-alive connection at a time
            finally:
                await client.close()
            return verdicts

        assert asyncio.run(calls()) == ["clean", "clean", "findings", "clean"]
        assert sum(n for (endpoint, _), n in svc.metrics.scans.items() if endpoint == "scan") == 4
