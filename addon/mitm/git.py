"""Git smart HTTP: repository gate (requestheaders), push commands (request), ref advertisements (response).

A push's ``POST .../git-receive-pack`` is judged against the advertisement
that the same agent fetched for the same repository just before it
(``GET .../info/refs?service=git-receive-pack``, recorded here from the
response). Advertisements are kept per (agent, repository) for a few minutes.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from mitmproxy import http

from addon import gitpack
from addon.decision import block
from addon.gitsmart import (
    RECEIVE,
    AgentGit,
    GitProtocolError,
    GitRequest,
    classify,
    decide_push,
    decide_request,
    parse_advertisement,
    parse_receive_pack,
)
from addon.hostnames import Host
from addon.identity import Registry
from addon.mitm.destinations import TARGET
from addon.mitm.runtime import AGENT, DECISION, Runtime, log
from addon.mitm.safety import guard

GIT = "yolo_cage.git"
ADVERTISEMENT_TTL = 600.0
MAX_ADVERTISEMENTS = 1024


def agent_git(runtime: Runtime, agent: str | None) -> AgentGit | None:
    registry = runtime.require_config().registry
    state = registry.current() if registry is not None else None
    if not isinstance(state, Registry) or agent is None or agent not in state.agents:
        return None
    entry = state.agents[agent]
    return AgentGit(entry.branch, entry.repositories)


class GitBinding:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._advertised: OrderedDict[tuple[str | None, str], tuple[float, dict[str, str]]] = OrderedDict()

    @guard
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        self._judge(flow, self._classify(flow, b""))

    @guard
    def request(self, flow: http.HTTPFlow) -> None:
        if self.runtime.decided(flow):
            return
        request = flow.metadata.get(GIT)
        if len(flow.request.raw_content or b"") > self.runtime.require_config().policy.scan.max_body_bytes:
            return  # refused as too large to scan by the content scan; not worth parsing
        if request is None and flow.request.method == "POST":
            # A receive-pack body at a path that does not say so: judged like any push.
            request = self._classify(flow, (flow.request.get_content(strict=False) or b"")[:4096])
            if request is not None and not self._judge(flow, request):
                return
        if request is not None and request.service == RECEIVE and not request.advertisement:
            self._push(flow, request)

    def _classify(self, flow: http.HTTPFlow, body_start: bytes) -> GitRequest | None:
        target: Host = flow.metadata[TARGET]
        req = flow.request
        return classify(
            host=target.name, port=req.port, scheme=req.scheme, method=req.method, path=req.path,
            content_type=req.headers.get("content-type", ""), body_start=body_start,
        )  # fmt: skip

    def _judge(self, flow: http.HTTPFlow, request: GitRequest | None) -> bool:
        if request is None:
            return True
        flow.metadata[GIT] = request
        decision = decide_request(self.runtime.require_config().git, agent_git(self.runtime, flow.metadata.get(AGENT)), request)
        if not decision.allowed:
            self.runtime.finish(flow, decision)
            return False
        return True

    def _push(self, flow: http.HTTPFlow, request: GitRequest) -> None:
        agent = agent_git(self.runtime, flow.metadata.get(AGENT))
        try:
            body = flow.request.get_content(strict=True) or b""
        except ValueError:
            self.runtime.finish(flow, block("undecodable-body", "git", "the push's Content-Encoding cannot be decoded"))
            return
        try:
            push = parse_receive_pack(body)
        except GitProtocolError as exc:
            self.runtime.finish(flow, block("git-push-denied", "git:protocol", f"the push cannot be checked: {exc}"))
            return
        if agent is None:
            self.runtime.finish(flow, block("git-push-denied", "git:repository", "no agent identity: pushes are refused"))
            return
        commits = _PackProof(body, push.pack_offset, push.oid_length)
        advertised = self._advertisement(flow.metadata.get(AGENT), request.repository)
        decision = decide_push(self.runtime.require_config().git, agent, push, advertised, commits.fast_forward)
        if not decision.allowed:
            self.runtime.finish(flow, decision)

    @guard
    def response(self, flow: http.HTTPFlow) -> None:
        request: GitRequest | None = flow.metadata.get(GIT)
        decision = flow.metadata.get(DECISION)
        if request is None or not request.advertisement or request.service != RECEIVE or decision is None:
            return
        if not decision.allowed or flow.response is None or flow.response.status_code != 200:
            return
        key = (flow.metadata.get(AGENT), request.repository)
        try:
            refs = parse_advertisement(flow.response.get_content(strict=True) or b"")
        except (ValueError, GitProtocolError) as exc:
            log.warning("yolo-cage: unreadable ref advertisement for %s: %s", request.repository, exc)
            self._advertised.pop(key, None)
            return
        self._remember(key, refs)

    def _remember(self, key: tuple[str | None, str], refs: dict[str, str]) -> None:
        self._advertised[key] = (time.monotonic(), refs)
        self._advertised.move_to_end(key)
        while len(self._advertised) > MAX_ADVERTISEMENTS:
            self._advertised.popitem(last=False)

    def _advertisement(self, agent: str | None, repository: str) -> dict[str, str] | None:
        seen = self._advertised.get((agent, repository))
        if seen is None or time.monotonic() - seen[0] > ADVERTISEMENT_TTL:
            return None
        return seen[1]


class _PackProof:
    """Parses the pack once, on the first update that needs a fast-forward proof."""

    def __init__(self, body: bytes, offset: int | None, oid_length: int):
        self._body, self._offset, self._oid_length = body, offset, oid_length
        self._commits: gitpack.PackCommits | str | None = None

    def fast_forward(self, old: str, new: str) -> str | None:
        if self._commits is None:
            self._commits = self._read()
        if isinstance(self._commits, str):
            return self._commits
        return self._commits.fast_forward(old, new)

    def _read(self) -> gitpack.PackCommits | str:
        if self._offset is None:
            return "the push carries no pack"
        try:
            return gitpack.read_commits(self._body[self._offset :], self._oid_length)
        except gitpack.PackError as exc:
            return f"the pack cannot be read ({exc})"
