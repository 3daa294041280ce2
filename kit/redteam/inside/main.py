"""Entry point inside the agent: run a batch of probes, print one JSON line each.

The spec (JSON on stdin, see :mod:`kit.redteam.shipping`) carries the run's
directory, where each canary was planted, the sink's signature and the probes.
Independent probes run on a thread pool: the batch takes about as long as its
slowest probe, not the sum of their timeouts.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from kit.redteam.inside import httpprobes as h
from kit.redteam.inside import netprobes as n
from kit.redteam.inside import outcomes as o
from kit.redteam.inside import payloads as p
from kit.redteam.inside import toolprobes as t


class Context:
    def __init__(self, spec: dict):
        self.run_dir = spec["run_dir"]
        self.secrets = p.Secrets(self.run_dir, spec.get("sources", {}))
        self.signature = spec.get("signature", {})
        self.proxy = h.Proxy.from_env("https")
        self.original_home = os.environ.get("HOME", "/")

    def x(self, value, marker: str):
        return p.expand_all(value, self.secrets, marker)


def run(spec: dict) -> list[dict]:
    ctx = Context(spec)
    home = os.path.join(ctx.run_dir, "home")
    if os.path.isdir(home):
        # Tools read ~/.aws, ~/.ssh, ~/.git-credentials: the planted ones.
        os.environ["HOME"] = home
    probes = spec.get("probes", [])
    with ThreadPoolExecutor(max_workers=max(1, min(int(spec.get("workers", 24)), len(probes) or 1))) as pool:
        return list(pool.map(lambda probe: one(ctx, probe), probes))


def one(ctx: Context, probe: dict) -> dict:
    result = o.Result(marker=probe.get("marker", ""), op=probe.get("op", "?"))
    clock = o.Clock()
    if probe.get("delay"):
        time.sleep(float(probe["delay"]))
    try:
        handler = OPS[probe["op"]]
        result.outcome, result.detail, facts = handler(ctx, probe)
        result.facts.update(facts)
        result.status = facts.pop("_status", None)  # type: ignore[assignment]
        result.block = facts.pop("_block", None)  # type: ignore[assignment]
    except Exception as exc:  # noqa: BLE001 - a broken probe is an "error" row, never a pass
        result.outcome = o.ERROR
        result.detail = f"probe failed: {type(exc).__name__}: {exc}"
        result.facts["traceback"] = traceback.format_exc()[-800:]
    result.ms = clock.ms()
    return result.as_json()


def op_http(ctx: Context, probe: dict):
    m = probe["marker"]
    data, body_headers = p.body(probe.get("body"), ctx.secrets, m)
    return exchange(ctx, probe, ctx.x(probe["url"], m), data, body_headers)


def exchange(ctx: Context, probe: dict, url_text: str, data: bytes, body_headers: list[tuple[str, str]]):
    """One HTTP/1.1 request through the proxy (or direct), judged by who answered."""
    m = probe["marker"]
    url = urllib.parse.urlsplit(url_text)
    proxy = ctx.proxy if probe.get("via", "proxy") == "proxy" else None
    timeout = float(probe.get("timeout", 8))
    try:
        sock, absolute = h.open_connection(url, proxy, timeout, ctx.x(probe.get("connect"), m), ctx.x(probe.get("sni"), m))
    except h.Failed as failed:
        return _failed(failed, proxy is not None, ctx)
    with sock:
        if probe.get("raw_tunnel") is not None:
            return _raw_tunnel(sock, ctx.x(probe["raw_tunnel"], m).encode())
        target = ctx.x(probe.get("target"), m) or _target(url, absolute)
        headers = _headers(ctx, probe, url, m, body_headers, proxy if absolute else None)
        method = probe.get("method", "POST" if data else "GET")
        try:
            h.send_request(sock, method, target, headers, data, bool(probe.get("chunked")))
            response = h.read_response(sock.makefile("rb"))
        except h.Failed as failed:
            return _failed(failed, proxy is not None, ctx)
    return _answer(response, ctx, proxy is not None)


def op_doh(ctx: Context, probe: dict):
    """DNS over HTTPS: the query name travels as a DNS message, base64url in the URL or as a binary body."""
    m = probe["marker"]
    _, message = n.dns_query(ctx.x(probe["name"], m), probe.get("qtype", "A"))
    url = ctx.x(probe["url"], m)
    if probe.get("method") == "POST":
        headers = [("Content-Type", "application/dns-message"), ("Accept", "application/dns-message")]
        return exchange(ctx, {**probe, "method": "POST"}, f"{url}?rt={m}", message, headers)
    encoded = base64.urlsafe_b64encode(message).decode().rstrip("=")
    return exchange(ctx, probe, f"{url}?dns={encoded}&rt={m}", b"", [("Accept", "application/dns-message")])


def _target(url: urllib.parse.SplitResult, absolute: bool) -> str:
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    if not absolute:
        return path
    return f"{url.scheme}://{url.netloc.rpartition('@')[2]}{path}"


def _headers(ctx: Context, probe: dict, url, marker: str, body_headers, proxy: h.Proxy | None):
    host = ctx.x(probe.get("host"), marker) or url.netloc.rpartition("@")[2]
    headers = [("Host", host), ("User-Agent", "yolo-cage-redteam/1"), ("Accept", "*/*"), ("Connection", "close")]
    if probe.get("marker_header", True):
        headers.append(("X-Rt-Marker", marker))
    if url.username is not None:
        creds = f"{urllib.parse.unquote(url.username)}:{urllib.parse.unquote(url.password or '')}"
        headers.append(("Authorization", "Basic " + base64.b64encode(creds.encode()).decode()))
    headers += [(k, ctx.x(v, marker)) for k, v in probe.get("headers", [])] + body_headers
    if proxy and proxy.auth:
        headers.append(("Proxy-Authorization", proxy.auth))
    return headers


def _answer(response: h.Response, ctx: Context, via_proxy: bool):
    outcome = h.judge(response, ctx.signature, via_proxy)
    facts = {"_status": response.status, "_block": response.header("x-yolo-cage-block"),
             "server": response.header("server"), "body": response.body[:200].decode("latin-1")}
    return outcome, f"HTTP {response.status}", facts


def _failed(failed: h.Failed, via_proxy: bool, ctx: Context):
    if failed.response is not None:
        return _answer(failed.response, ctx, via_proxy)
    return failed.outcome, failed.detail, {}


def _raw_tunnel(sock, payload: bytes):
    """Non-TLS, non-HTTP bytes through an established CONNECT tunnel."""
    try:
        sock.sendall(payload)
        reply = sock.recv(4096)
    except OSError as exc:
        return (*o.from_exception(exc), {})
    if not reply:
        return o.CLOSED, "tunnel closed without an answer", {}
    blocked = b"x-yolo-cage-block" in reply.lower()
    return (o.PROXY_BLOCK if blocked else o.DELIVERED), "answer through the tunnel", {"reply": reply[:200].decode("latin-1")}


def op_ws(ctx: Context, probe: dict):
    m = probe["marker"]
    url = urllib.parse.urlsplit(ctx.x(probe["url"], m))
    proxy = ctx.proxy if probe.get("via", "proxy") == "proxy" else None
    timeout = float(probe.get("timeout", 8))
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        sock, absolute = h.open_connection(url, proxy, timeout)
    except h.Failed as failed:
        return _failed(failed, proxy is not None, ctx)
    with sock:
        headers = _headers(ctx, {**probe, "headers": []}, url, m, [], proxy if absolute else None)
        headers = [x for x in headers if x[0] != "Connection"] + [
            ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", key)]
        reader = sock.makefile("rb")
        try:
            h.send_request(sock, "GET", _target(url._replace(scheme="https" if url.scheme == "wss" else "http"), absolute),
                           headers, b"", False)
            response = h.read_response(reader, head_only=True)
        except h.Failed as failed:
            return _failed(failed, proxy is not None, ctx)
        if response.status != 101:
            return _answer(response, ctx, proxy is not None)
        return _ws_messages(sock, reader, [ctx.x(x, m) for x in probe.get("messages", [])], bool(probe.get("binary")))


def _ws_messages(sock, reader, messages: list[str], binary: bool):
    replies = []
    for message in messages:
        try:
            sock.sendall(h.ws_frame(message.encode(), binary))
            opcode, payload = h.ws_read(reader)
        except (OSError, EOFError) as exc:
            outcome, detail = o.from_exception(exc)
            return outcome, f"after the handshake: {detail}", {"replies": replies}
        if opcode == 8:
            return o.CLOSED, f"close frame: {payload[2:].decode(errors='replace')}", {"replies": replies}
        replies.append(payload[:100].decode("latin-1"))
    return o.DELIVERED, f"{len(replies)} message(s) answered", {"replies": replies}


def op_tcp(ctx: Context, probe: dict):
    m = probe["marker"]
    payload = ctx.x(probe.get("payload", "RT {{m}}\n"), m).encode()
    return n.tcp(ctx.x(probe["host"], m), int(probe["port"]), payload, float(probe.get("timeout", 3)))


def op_udp(ctx: Context, probe: dict):
    m = probe["marker"]
    payload = ctx.x(probe.get("payload", "RT {{m}}\n"), m).encode()
    return n.udp(ctx.x(probe["host"], m), int(probe["port"]), payload, float(probe.get("timeout", 2)))


def op_icmp(ctx: Context, probe: dict):
    m = probe["marker"]
    payload = ctx.x(probe.get("payload", "RT {{m}}"), m).encode()
    return n.icmp(ctx.x(probe["host"], m), payload, float(probe.get("timeout", 2)))


def op_dns(ctx: Context, probe: dict):
    m = probe["marker"]
    return n.dns(ctx.x(probe["name"], m), probe.get("qtype", "A"), ctx.x(probe.get("server", "system"), m),
                 float(probe.get("timeout", 2)), bool(probe.get("tcp")), int(probe.get("port", 53)))


def op_resolve(ctx: Context, probe: dict):
    return n.resolve(ctx.x(probe["name"], probe["marker"]), float(probe.get("timeout", 3)))


def op_route(ctx: Context, probe: dict):
    return n.route(probe["host"])


def op_curl(ctx: Context, probe: dict):
    m = probe["marker"]
    env = t.tool_env(probe.get("env_unset", []), ctx.x(probe.get("env", {}), m))
    data, body_headers = p.body(probe.get("body"), ctx.secrets, m) if probe.get("body") else (None, [])
    args = list(ctx.x(probe.get("args", []), m)) + ["-H", f"X-Rt-Marker: {m}"]
    for name, value in body_headers:
        args += ["-H", f"{name}: {value}"]
    return t.curl(args, ctx.x(probe["url"], m), data, env, float(probe.get("timeout", 8)), ctx.signature,
                  bool(probe.get("http2")))


def op_git_push(ctx: Context, probe: dict):
    m = probe["marker"]
    workdir = os.path.join(ctx.run_dir, "git", m)
    files = {k: ctx.x(v, m) for k, v in probe.get("files", {}).items()}
    return t.git_push(workdir, ctx.x(probe["url"], m), files, dict(os.environ), float(probe.get("timeout", 30)))


def op_git_fetch(ctx: Context, probe: dict):
    return t.git_fetch(ctx.x(probe["url"], probe["marker"]), dict(os.environ), float(probe.get("timeout", 30)))


def op_ssh(ctx: Context, probe: dict):
    m = probe["marker"]
    key = ctx.secrets.path(probe.get("key", "home/.ssh/id_ed25519"))
    return t.ssh(ctx.x(probe["host"], m), int(probe.get("port", 22)), key, float(probe.get("timeout", 4)), dict(os.environ))


def op_plant(ctx: Context, probe: dict):
    """Write the canary files (mode 0600 in 0700 directories) and a git config for the run's HOME."""
    old = os.umask(0o077)
    try:
        for relative, item in probe["files"].items():
            full = ctx.secrets.path(relative)
            os.makedirs(os.path.dirname(full), mode=0o700, exist_ok=True)
            with open(full, "wb") as handle:
                handle.write(base64.b64decode(item["content_b64"]))
            os.chmod(full, item["mode"])
        _git_config(ctx.run_dir, ctx.original_home)
    finally:
        os.umask(old)
    return o.DELIVERED, f"planted {len(probe['files'])} file(s) under {ctx.run_dir}", {"run_dir": ctx.run_dir}


def _git_config(run_dir: str, original_home: str) -> None:
    # Keep the agent's own git settings (CA, proxy), add the credential store
    # that holds the git-credentials canary, as a developer's machine would.
    lines = []
    if os.path.exists(os.path.join(original_home, ".gitconfig")):
        lines.append(f"[include]\n\tpath = {os.path.join(original_home, '.gitconfig')}\n")
    lines.append("[credential]\n\thelper = store\n[user]\n\tname = rt\n\temail = rt@example.invalid\n")
    home = os.path.join(run_dir, "home")
    os.makedirs(home, mode=0o700, exist_ok=True)
    with open(os.path.join(home, ".gitconfig"), "w", encoding="utf-8") as handle:
        handle.write("".join(lines))


def op_unplant(ctx: Context, probe: dict):
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    return (o.DELIVERED if not os.path.exists(ctx.run_dir) else o.ERROR), f"removed {ctx.run_dir}", {}


LISTENER = r'''
import json, socket, sys, time
port, seconds, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port)); srv.listen(16); srv.settimeout(0.5)
seen = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        conn, peer = srv.accept()
    except OSError:
        continue
    conn.settimeout(1)
    try:
        data = conn.recv(4096)
    except OSError:
        data = b""
    seen.append({"peer": peer[0], "data": data.decode("latin-1")})
    conn.close()
    with open(path, "w") as handle:
        json.dump(seen, handle)
'''


def op_listen_start(ctx: Context, probe: dict):
    """A TCP listener that outlives this exec (another agent is the target)."""
    port, seconds = int(probe.get("port", 7777)), float(probe.get("seconds", 60))
    record = os.path.join(ctx.run_dir, f"listener-{port}.json")
    os.makedirs(ctx.run_dir, mode=0o700, exist_ok=True)
    with open(record, "w", encoding="utf-8") as handle:
        json.dump([], handle)
    child = subprocess.Popen([sys.executable, "-c", LISTENER, str(port), str(seconds), record],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    time.sleep(0.5)
    # The control for "another agent is unreachable": the listener answers here.
    outcome, detail, _ = n.tcp("127.0.0.1", port, f"RT {probe['marker']} self-check\n".encode(), 2, read=False)
    return outcome, f"listener pid {child.pid} on :{port}; self-check {detail}", {"pid": child.pid, "record": record}


def op_listen_collect(ctx: Context, probe: dict):
    try:
        os.kill(int(probe["pid"]), 15)
    except OSError:
        pass
    with open(probe["record"], encoding="utf-8") as handle:
        seen = json.load(handle)
    return o.DELIVERED, f"{len(seen)} connection(s) received", {"connections": seen}


OPS = {
    "http": op_http, "doh": op_doh, "ws": op_ws, "tcp": op_tcp, "udp": op_udp, "icmp": op_icmp, "dns": op_dns,
    "resolve": op_resolve, "route": op_route, "curl": op_curl, "git-push": op_git_push, "git-fetch": op_git_fetch, "ssh": op_ssh,
    "plant": op_plant, "unplant": op_unplant, "listen-start": op_listen_start, "listen-collect": op_listen_collect,
}


def main(spec: dict) -> None:
    for line in run(spec):
        sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
