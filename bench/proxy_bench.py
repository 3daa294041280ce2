"""The cage proxy against plain mitmdump, side by side in one run (``invoke bench.proxy``).

Three ways to reach the same loopback upstream (bench/proxy_bench_sink.py):
direct, through plain ``mitmdump`` (no addon, same options), and through the
cage proxy (mitmdump + addon + the real scanner). Cases:

- a small GET and a clean 1 MB POST (JSON shaped like an LLM request): latency
  p50 / p99 over keep-alive connections, the three targets interleaved in
  rounds so drift on a shared machine hits them alike;
- requests per second with N concurrent clients (small GET);
- CPU time per small GET of each proxy process (and of the scanner), from
  /proc: steadier than latency on a loaded machine, where every wake-up of
  another process waits for a CPU.

Targets: small-request latency ratio cage / mitmdump <= 1.3; a clean 1 MB
POST adds <= 20 ms at p99 over mitmdump. Every answer must be 200: a blocked
or failed request aborts the run rather than counting as fast.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.proxy_live_support import (  # noqa: E402
    AGENT,
    TOKEN,
    Proxy,
    ScannerService,
    TestCA,
    free_port,
    wait_for,
)

TARGETS = {"small-request latency ratio": 1.3, "1 MB POST added p99 ms": 20.0}
AUTH = "Basic " + base64.b64encode(f"{AGENT}:{TOKEN}".encode()).decode()


@dataclass
class Upstream:
    http_port: int
    https_port: int


def llm_like_body(size: int, seed: int = 7) -> bytes:
    """A clean JSON body the shape of an LLM API request: prose and code, no secrets."""
    rng = random.Random(seed)
    words = ("the", "function", "returns", "value", "config", "request", "agent", "branch", "test", "file",
             "import", "def", "class", "self", "return", "None", "list", "dict", "error", "path", "print")
    messages = []
    total = 0
    while total < size:
        text = " ".join(rng.choice(words) for _ in range(200))
        messages.append({"role": rng.choice(("user", "assistant")), "content": text})
        total += len(text) + 40
    body = json.dumps({"model": "claude-sonnet", "max_tokens": 4096, "messages": messages}).encode()
    return body[:size] if len(body) <= size else body[: size - 2] + b"]}"


class Client:
    """One keep-alive HTTP/1.1 connection, direct or through a proxy (absolute-form requests)."""

    def __init__(self, upstream_port: int, proxy_port: int | None):
        self.origin = f"http://localhost:{upstream_port}"
        self.proxied = proxy_port is not None
        host, port = ("127.0.0.1", proxy_port) if proxy_port else ("localhost", upstream_port)
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None) -> float:
        headers = {"Proxy-Authorization": AUTH} if self.proxied else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        target = self.origin + path if self.proxied else path
        started = time.perf_counter()
        self.conn.request(method, target, body=body, headers=headers)
        response = self.conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise SystemExit(f"{method} {target} answered {response.status}: the benchmark needs clean, allowed requests")
        return elapsed * 1000

    def close(self) -> None:
        self.conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def latencies(clients: dict[str, Client], send: Callable[[Client], float], n: int, rounds: int = 10) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            out[name] += [send(client) for _ in range(max(1, n // rounds))]
    return out


def throughput(upstream_port: int, proxy_port: int, concurrency: int, per_client: int) -> float:
    errors: list[BaseException] = []

    def work() -> None:
        client = Client(upstream_port, proxy_port)
        try:
            for _ in range(per_client):
                client.request("GET", "/rps")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"throughput run failed: {errors[0]!r}")
    return concurrency * per_client / elapsed


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_per_request(upstream_port: int, proxy_port: int, pids: dict[str, int], n: int) -> dict[str, float]:
    """Microseconds of CPU per small GET sent through ``proxy_port``, per process in ``pids``."""
    client = Client(upstream_port, proxy_port)
    before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    for _ in range(n):
        client.request("GET", "/cpu")
    client.close()
    return {name: (_cpu_seconds(pids[name]) - before[name]) / n * 1e6 for name in pids}


def row(name: str, values: list[float]) -> str:
    return f"  {name:<10} p50 {statistics.median(values):8.2f} ms   p99 {percentile(values, 0.99):8.2f} ms   (n={len(values)})"


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="yolo-cage-bench-") as tmp:
        return run_in(args, Path(tmp))


def run_in(args: argparse.Namespace, tmp: Path) -> int:
    upstream = Upstream(free_port(), free_port())
    sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "proxy_bench_sink.py"), str(upstream.http_port)])
    ca = TestCA(tmp / "ca")
    scanner = ScannerService(tmp)
    policy = '  unsafe_allow_private_networks: [127.0.0.0/8, "::1/128"]\n'
    cage = Proxy(tmp / "cage", scanner.url, upstream, ca.ca_file, private_networks=False, extra_destinations=policy,  # type: ignore[arg-type]
                 deadline_ms=10_000)
    plain = Proxy(tmp / "plain", "", upstream, ca.ca_file, addon=False)  # type: ignore[arg-type]
    try:
        wait_for(lambda: Client(upstream.http_port, None).request("GET", "/ready") > 0, 10, "sink")
        scanner.start()
        cage.start()
        plain.start()
        return report(args, upstream, cage, plain, scanner)
    finally:
        for p in (plain, cage, scanner):
            p.stop()
        sink.terminate()
        sink.wait(10)


def report(args: argparse.Namespace, upstream: Upstream, cage: Proxy, plain: Proxy, scanner: ScannerService) -> int:
    clients = {
        "direct": Client(upstream.http_port, None),
        "mitmdump": Client(upstream.http_port, plain.port),
        "cage": Client(upstream.http_port, cage.port),
    }
    big = llm_like_body(1024 * 1024)
    print(f"yolo-cage proxy benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}  python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    for name, send in (("small GET", lambda c: c.request("GET", "/small")),
                       ("1 MB POST", lambda c: c.request("POST", "/big", big))):
        latencies(clients, send, args.warmup, rounds=1)  # connections, pins, JIT-free warm-up
    results = {}
    for name, send, n in (("small GET", lambda c: c.request("GET", "/small"), args.requests),
                          ("1 MB POST", lambda c: c.request("POST", "/big", big), max(50, args.requests // 3))):
        results[name] = latencies(clients, send, n)
        print(f"\n{name}")
        for target, values in results[name].items():
            print(row(target, values))
    for c in clients.values():
        c.close()
    n = args.requests * 4
    cpu = cpu_per_request(upstream.http_port, plain.port, {"mitmdump": plain.proc.pid}, n)
    cpu |= cpu_per_request(upstream.http_port, cage.port, {"cage": cage.proc.pid, "its scanner": scanner.proc.pid}, n)
    print(f"\nCPU per small GET (process time from /proc, {n} requests, one client)")
    for name, value in cpu.items():
        print(f"  {name:<12} {value:8.0f} us")
    per_client = max(20, args.requests // args.concurrency)
    rps = {name: throughput(upstream.http_port, p.port, args.concurrency, per_client) for name, p in (("mitmdump", plain), ("cage", cage))}
    print(f"\nthroughput, {args.concurrency} concurrent keep-alive clients, small GET")
    for name, value in rps.items():
        print(f"  {name:<10} {value:8.1f} requests/s")
    return verdict(results, rps)


def verdict(results: dict[str, dict[str, list[float]]], rps: dict[str, float]) -> int:
    small, big = results["small GET"], results["1 MB POST"]
    ratio = statistics.median(small["cage"]) / statistics.median(small["mitmdump"])
    ratio99 = percentile(small["cage"], 0.99) / percentile(small["mitmdump"], 0.99)
    added_p50 = statistics.median(big["cage"]) - statistics.median(big["mitmdump"])
    added_p99 = percentile(big["cage"], 0.99) - percentile(big["mitmdump"], 0.99)
    print("\nratios and targets (cage against plain mitmdump)")
    print(f"  small GET latency ratio  p50 {ratio:5.2f}   p99 {ratio99:5.2f}   target p50 <= {TARGETS['small-request latency ratio']}"
          f"  {'MET' if ratio <= TARGETS['small-request latency ratio'] else 'MISSED'}")
    print(f"  small GET added latency  p50 {statistics.median(small['cage']) - statistics.median(small['mitmdump']):6.2f} ms")
    print(f"  1 MB POST added latency  p50 {added_p50:6.2f} ms   p99 {added_p99:6.2f} ms   target p99 <= "
          f"{TARGETS['1 MB POST added p99 ms']:.0f} ms  {'MET' if added_p99 <= TARGETS['1 MB POST added p99 ms'] else 'MISSED'}")
    print(f"  throughput ratio         {rps['cage'] / rps['mitmdump']:5.2f}  ({rps['cage']:.0f} vs {rps['mitmdump']:.0f} requests/s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="timed small GETs per target (1 MB POSTs: a third)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=20)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
