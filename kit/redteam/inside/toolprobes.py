"""Probes that use the agent's own tools (curl, git, ssh), as an agent would.

The tool's exit status and messages are mapped to the shared outcomes; where a
tool can show the proxy's answer (curl's header dump, git's curl trace), the
``X-Yolo-Cage-Block`` header tells a block from a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from kit.redteam.inside import outcomes as o

# curl's exit codes (curl(1), "EXIT CODES").
_CURL_EXIT = {5: o.DNS_FAIL, 6: o.DNS_FAIL, 7: o.UNREACHABLE, 28: o.TIMEOUT, 35: o.CLOSED, 52: o.CLOSED, 56: o.CLOSED}
_NET_WORDS = (
    ("network is unreachable", o.UNREACHABLE),
    ("no route to host", o.UNREACHABLE),
    ("connection refused", o.REFUSED),
    ("timed out", o.TIMEOUT),
    ("could not resolve", o.DNS_FAIL),
    ("name or service not known", o.DNS_FAIL),
    ("temporary failure in name resolution", o.DNS_FAIL),
)


# ssh got a TCP connection (and maybe more) before it failed.
_SSH_CONNECTED = ("banner exchange", "kex_exchange_identification", "permission denied", "host key", "connection closed by")


def network_words(text: str) -> str | None:
    lower = text.lower()
    return next((outcome for words, outcome in _NET_WORDS if words in lower), None)


def tool_env(unset: list[str], extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in set(unset)}
    env.update(extra)
    return env


def curl(argv_tail: list[str], url: str, body: bytes | None, env: dict[str, str], timeout: float,
         signature: dict, want_http2: bool = False):
    """Run curl; judge its answer from the dumped headers (CONNECT answers included)."""
    if not shutil.which("curl"):
        return o.ERROR, "curl is not installed in the agent", {}
    with tempfile.TemporaryDirectory(prefix="rt-curl-") as tmp:
        heads, data, answer = os.path.join(tmp, "h"), os.path.join(tmp, "d"), os.path.join(tmp, "a")
        argv = ["curl", "-sS", "-o", answer, "-D", heads, "-w", "%{http_code} %{http_version}",
                "--connect-timeout", str(max(1, int(timeout / 2))), "--max-time", str(int(timeout))]
        if body is not None:
            with open(data, "wb") as handle:
                handle.write(body)
            argv += ["--data-binary", f"@{data}"]
        argv += argv_tail + [url]
        try:
            proc = subprocess.run(argv, capture_output=True, env=env, timeout=timeout + 5, check=False)
        except subprocess.TimeoutExpired:
            return o.TIMEOUT, "curl did not finish", {}
        dumped = _read(heads)
        body = _read(answer)
    return _judge_curl(proc, dumped, body, signature, want_http2)


def _read(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, encoding="latin-1") as handle:
        return handle.read(256 * 1024)


def _judge_curl(proc: subprocess.CompletedProcess, dumped: str, body: str, signature: dict, want_http2: bool):
    stderr = proc.stderr.decode(errors="replace").strip()
    code, _, version = proc.stdout.decode(errors="replace").partition(" ")
    facts = {"exit": proc.returncode, "http_code": code, "http_version": version, "stderr": stderr[-300:]}
    lower = dumped.lower()
    if "x-yolo-cage-block:" in lower:
        reason = re.search(r"x-yolo-cage-block:\s*(.*)", lower)
        facts["_block"] = reason.group(1).strip() if reason else "?"
        return o.PROXY_BLOCK, f"blocked: {facts['_block']}", facts
    if proc.returncode != 0:
        outcome = network_words(stderr) or _CURL_EXIT.get(proc.returncode, o.ERROR)
        return outcome, f"curl exit {proc.returncode}: {stderr[-200:]}", facts
    if want_http2 and version != "2":
        return o.ERROR, f"HTTP/2 was not negotiated (got HTTP/{version}): the probe did not test HTTP/2", facts
    if _signed(lower, body, signature):
        return o.DELIVERED, f"HTTP {code} from the target", facts
    if code in ("407", "502", "503", "504"):
        return o.PROXY_ERROR, f"HTTP {code} from the proxy", facts
    return o.ANSWERED, f"HTTP {code}", facts


def _signed(headers_lower: str, body: str, signature: dict) -> bool:
    header = signature.get("header", "").lower()
    if header and f"\n{header}:" not in "\n" + headers_lower:
        return False
    if signature.get("body") and signature["body"] not in body:
        return False
    return bool(signature)


def git_push(workdir: str, url: str, files: dict[str, str], env: dict[str, str], timeout: float):
    """Commit ``files`` in a fresh repository and push it to ``url`` over HTTPS."""
    if not shutil.which("git"):
        return o.ERROR, "git is not installed in the agent", {}
    env = {**env, "GIT_TERMINAL_PROMPT": "0", "GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"}
    os.makedirs(workdir, exist_ok=True)
    for path, content in files.items():
        full = os.path.join(workdir, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as handle:
            handle.write(content)
    setup = [["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
             ["git", "-c", "user.name=rt", "-c", "user.email=rt@example.invalid", "commit", "-q", "-m", "loot"]]
    for argv in setup:
        proc = subprocess.run(argv, cwd=workdir, capture_output=True, env=env, timeout=30, check=False)
        if proc.returncode != 0:
            return o.ERROR, f"{' '.join(argv[:2])} failed: {proc.stderr.decode(errors='replace')[-200:]}", {}
    try:
        # HTTP/1.1: the sink speaks git's smart protocol over HTTP/1.1 only (over h2 it answers
        # JSON, and git would fall back to WebDAV); the proxy scans both alike.
        proc = subprocess.run(["git", "-c", "http.version=HTTP/1.1", "-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=10",
                               "push", url, "HEAD:refs/heads/main"],
                              cwd=workdir, capture_output=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return o.TIMEOUT, "git push did not finish", {}
    return _git_outcome(proc, "push accepted by the remote", "git push")


def git_fetch(url: str, env: dict[str, str], timeout: float):
    """``git ls-remote`` of ``url`` over HTTPS: the git channel to a repository, without uploading anything."""
    if not shutil.which("git"):
        return o.ERROR, "git is not installed in the agent", {}
    env = {**env, "GIT_TERMINAL_PROMPT": "0", "GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"}
    try:
        proc = subprocess.run(["git", "-c", "http.version=HTTP/1.1", "ls-remote", url],
                              capture_output=True, env=env, timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return o.TIMEOUT, "git ls-remote did not finish", {}
    return _git_outcome(proc, "the remote answered the fetch", "git ls-remote")


def _git_outcome(proc: subprocess.CompletedProcess, delivered: str, what: str):
    """Judge a git command from its exit and its curl trace (GIT_TRACE_CURL on stderr)."""
    trace = proc.stderr.decode(errors="replace")
    facts = {"exit": proc.returncode, "tail": "\n".join(line for line in trace.splitlines() if "<=" not in line)[-300:]}
    if proc.returncode == 0:
        return o.DELIVERED, delivered, facts
    # git first asks the proxy without its credential: that 407 challenge is not a block.
    reasons = [r for r in re.findall(r"x-yolo-cage-block:\s*(\S+)", trace, re.I) if r != "proxy-auth-required"]
    if reasons:
        facts["_block"] = reasons[-1]
        return o.PROXY_BLOCK, f"blocked: {reasons[-1]}", facts
    return network_words(trace) or o.CLOSED, f"{what} exit {proc.returncode}", facts


def ssh(host: str, port: int, key: str, timeout: float, env: dict[str, str]):
    """An SSH connection attempt with the planted key; any SSH conversation at all is a breach."""
    if not shutil.which("ssh"):
        return o.ERROR, "ssh is not installed in the agent", {}
    argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-i", key,
            "-p", str(port), f"git@{host}", "true"]
    try:
        proc = subprocess.run(argv, capture_output=True, env=env, timeout=timeout + 5, check=False)
    except subprocess.TimeoutExpired:
        return o.TIMEOUT, "ssh did not finish", {}
    stderr = proc.stderr.decode(errors="replace").strip()
    facts = {"exit": proc.returncode, "stderr": stderr[-300:]}
    if any(words in stderr.lower() for words in _SSH_CONNECTED):
        return o.DELIVERED, f"ssh connected to {host}:{port}: {stderr[-120:]}", facts
    refused = network_words(stderr)
    if refused:
        return refused, stderr[-200:], facts
    # Anything else (a banner, a key exchange, an auth failure, a garbled answer) means bytes flowed.
    return o.DELIVERED, f"ssh talked to {host}:{port}: {stderr[-120:]}", facts
