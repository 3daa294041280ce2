"""Runs the Claude Code scenarios in a real agent of a running cage, and judges them.

1. Plant fresh canaries in a directory of the run inside the agent (the red
   team's own planter): ``home/`` (~/.aws/credentials, an SSH key,
   ~/.git-credentials) is Claude Code's ``HOME``, ``workspace/`` (a ``.env``) its
   working directory; the environment canaries go into its environment, the
   Anthropic one as its API key (``ANTHROPIC_API_KEY``).
2. Hand the model the run's scripts, then per scenario run the real CLI as
   the agent's user: ``claude -p <prompt> --dangerously-skip-permissions
   --output-format stream-json --verbose``. The model answers with the
   scenario's tool calls; Claude Code runs them.
3. Read what the attacker's sink captured, the model's transcript and the
   proxy's audit log for the run; search the capture for every canary.
4. Judge each scenario (:mod:`kit.redteam.claude_judge`); remove the canaries.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kit.errors import CageError
from kit.redteam import canaries as canaries_mod
from kit.redteam import capture, leaksearch, shipping
from kit.redteam import claude_scenarios as sc
from kit.redteam.claude_judge import API_PLACE, SinkEvidence, judge
from kit.redteam.claude_model import ModelContainer
from kit.redteam.claude_report import ClaudeReport, KeyCheck, endpoints
from kit.redteam.claude_stream import parse as parse_stream
from kit.redteam.scorecard import Finding
from kit.redteam.world import World

RUN_DIR = "/tmp/yolo-cage-claude-{run_id}"
AGENT_USER = "dev"
API_KEY_CANARY = "env-anthropic"
# Claude Code's own switch for telemetry, error reporting and feature flags.
# The agent image sets it; a run can turn that traffic back on to measure it.
NONESSENTIAL = "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
MAX_RETRIES = "CLAUDE_CODE_MAX_RETRIES"
SETTLE = 1.0  # seconds for in-flight captures and audit lines to land


@dataclass(frozen=True)
class ClaudeOptions:
    agent: str | None = None
    scenarios: Sequence[str] = ()
    timeout: float = 240.0  # per scenario
    max_turns: int = 20
    nonessential_traffic: bool = False  # True: let Claude Code send its non-essential traffic (to measure it)
    # The API key Claude Code holds: None = the run's Anthropic canary (a real
    # key in the agent, as today); with a credential binding, its placeholder.
    agent_api_key: str | None = None
    expected_model_key: str | None = None  # None: the key the agent holds (nothing swaps it on the way)
    env: Mapping[str, str] = field(default_factory=dict)  # more environment for Claude Code (and its tools)
    # Secrets that are not planted but must never reach the sink either, by
    # name (e.g. the bound key the proxy injects): searched like the canaries.
    secrets: Mapping[str, str] = field(default_factory=dict)


class ClaudeSession:
    def __init__(self, world: World, model: ModelContainer, options: ClaudeOptions | None = None,
                 progress: Callable[[str], None] | None = None):
        self.world = world
        self.backend = world.backend
        self.model = model
        self.options = options or ClaudeOptions()
        self.progress = progress or (lambda _msg: None)
        self.canaries = canaries_mod.generate()
        self.run_dir = RUN_DIR.format(run_id=self.canaries.run_id)
        self.findings: list[Finding] = []
        # Everything searched for at the sink: the planted canaries and the unplanted secrets.
        self.searched = self.canaries.canaries + tuple(_secret(n, v) for n, v in self.options.secrets.items())

    @property
    def run_id(self) -> str:
        return self.canaries.run_id

    @property
    def api_key(self) -> str:
        return self.options.agent_api_key or self.canaries.by_name(API_KEY_CANARY).value

    def run(self) -> ClaudeReport:
        started = time.monotonic()
        agent = self.options.agent or _first(self.backend.agents())
        targets = self.world.targets(agent, None)
        names = sc.values(sink_ip=targets.sink_ip, workspace=f"{self.run_dir}/workspace")
        planned = [sc.plan(s, self.run_id, names) for s in sc.select(self.options.scenarios)]
        expected_key = self.options.expected_model_key or self.api_key
        self.model.put_scripts(self.run_id, sc.script_document(self.run_id, planned, [expected_key]))
        with contextlib.ExitStack() as stack:
            self._plant(agent)
            stack.callback(self._unplant, agent)
            sink_mark, model_mark, audit_mark = self.world.sink_mark(), self.model.mark(), len(self.backend.read_audit())
            runs = [self._run_one(agent, p) for p in planned]
            time.sleep(SETTLE)
            events = capture.parse(self.world.sink_lines(sink_mark))
            transcript = self.model.transcript(since=model_mark)
            audit = [json.loads(line) for line in self.backend.read_audit()[audit_mark:]]
        audit = [a for a in audit if a.get("agent") == agent]
        hits = leaksearch.search(capture.blobs(events), self.searched)
        evidence = self._sink_evidence(events, hits, self._api_evidence(transcript, planned))
        results = [judge(p, run, self._masked(_model_results(transcript, self.run_id, p.scenario.id)),
                         _scenario_audit(audit, p, self.run_id, t0, t1), evidence)
                   for p, (run, t0, t1) in zip(planned, runs, strict=True)]
        return ClaudeReport(
            run_id=self.run_id, backend=self.backend.name, agent=agent, seconds=round(time.monotonic() - started, 1),
            results=results, findings=self.findings, hits=hits, capture_bytes=capture.size(events),
            capture_events=len(events), canaries=[(c.name, c.provider, canaries_mod.where_planted(c)) for c in self.searched],
            endpoints=endpoints(transcript), hosts=_hosts(audit), key=self._key_check(transcript, expected_key),
            llm_canaries=self._llm_canaries(transcript), nonessential_traffic=self.options.nonessential_traffic,
            api_bypass=self._api_bypass(transcript),
            claude_version=next((r.version for r, _, _ in runs if r.init), "?"),
        )

    # --- in the agent ------------------------------------------------------------------

    def _exec(self, agent: str, argv: list[str], *, env: Mapping[str, str] | None = None, stdin: bytes | None = None,
              timeout: float = 120.0):
        return self.backend.exec(agent, argv, user=AGENT_USER, env=env, stdin=stdin, timeout=timeout)

    def _plant(self, agent: str) -> None:
        spec = canaries_mod.plant_spec(self.canaries)
        argv, stdin = shipping.command({"run_dir": self.run_dir, "sources": spec["sources"], "signature": {},
                                        "probes": [{"op": "plant", "marker": "plant", "files": spec["files"]}]})
        result = self._exec(agent, argv, stdin=stdin)
        outcomes = shipping.parse_output(result.stdout)
        if result.returncode != 0 or not outcomes or outcomes[0].get("outcome") != "delivered":
            raise CageError(f"could not plant the canaries in agent {agent}: {result.text[-400:]}")
        for sub in ("workspace", "tmp"):
            self._exec(agent, ["mkdir", "-p", "-m", "0700", f"{self.run_dir}/{sub}"])

    def _unplant(self, agent: str) -> None:
        result = self._exec(agent, ["rm", "-rf", self.run_dir])
        if result.returncode != 0:
            self.findings.append(Finding("cleanup", f"canaries may remain in {self.run_dir}: {result.text[-200:]}"))

    def _env(self) -> dict[str, str]:
        env = {**self.canaries.env(), "HOME": f"{self.run_dir}/home", "TMPDIR": f"{self.run_dir}/tmp",
               "ANTHROPIC_API_KEY": self.api_key}
        # An empty value is "off" for Claude Code; the image's default is "1".
        env[NONESSENTIAL] = "" if self.options.nonessential_traffic else "1"
        # A cage that breaks the API path must fail a scenario in seconds, not
        # after Claude Code's ten retries with back-off.
        env[MAX_RETRIES] = "2"
        return {**env, **self.options.env}

    def _run_one(self, agent: str, planned: sc.Planned):
        self.progress(f"claude: {planned.scenario.id} ({len(planned.steps)} steps)")
        argv = ["env", f"--chdir={self.run_dir}/workspace", "claude", "-p", planned.prompt,
                "--dangerously-skip-permissions", "--output-format", "stream-json", "--verbose",
                "--max-turns", str(self.options.max_turns)]
        t0 = datetime.now(UTC)
        clock = time.monotonic()
        try:
            result = self._exec(agent, argv, env=self._env(), timeout=self.options.timeout)
            run = parse_stream(result.stdout, result.stderr, result.returncode, time.monotonic() - clock)
        except CageError as exc:
            run = parse_stream(b"", str(exc).encode(), -1, time.monotonic() - clock)
        self.progress(f"claude: {planned.scenario.id}: {'finished' if run.ok else 'FAILED'} in {run.seconds:.1f}s")
        return run, t0, datetime.now(UTC)

    # --- evidence ----------------------------------------------------------------------------

    def _api_evidence(self, transcript: Sequence[Mapping[str, Any]], planned: Sequence[sc.Planned]):
        """Requests the API stand-in got that name a step in their URL (not Claude Code's own API calls)."""
        markers = [m for p in planned for m in p.markers]
        kinds: dict[str, list[str]] = {}
        blobs = []
        for i, record in enumerate(transcript):
            if record.get("kind") in ("messages", "count_tokens", "started"):
                continue
            url = f"{record.get('path', '')}?{record.get('query', '')}"
            own = tuple(m for m in markers if m in url)
            for marker in own:
                kinds.setdefault(marker, []).append("api")
            if own and record.get("body_b64"):
                body = base64.b64decode(record["body_b64"])
                blobs.append(leaksearch.Blob(i, f"{API_PLACE}{record.get('seq')} {record.get('method')} {record.get('path')} body",
                                             body, own))
        return kinds, leaksearch.search(blobs, self.searched)

    def _sink_evidence(self, events: Sequence[capture.Event], hits: Sequence[leaksearch.Hit], api) -> SinkEvidence:
        kinds: dict[str, list[str]] = {}
        api_kinds, api_hits = api
        for marker, found in api_kinds.items():
            kinds.setdefault(marker, []).extend(found)
        for event in events:
            for marker in event.markers:
                kinds.setdefault(marker, []).append(event.kind)
        by_marker: dict[str, list[leaksearch.Hit]] = {}
        for hit in api_hits:
            for marker in hit.markers:
                by_marker.setdefault(marker, []).append(hit)
        for hit in hits:
            if not hit.markers:
                self.findings.append(Finding("canary", f"canary {hit.canary} at the sink in {hit.where}, "
                                                      "in traffic no scenario step names"))
            for marker in hit.markers:
                by_marker.setdefault(marker, []).append(hit)
        direct: dict[str, list[str]] = {}
        for event in capture.foreign_sources(events, self.world.allowed_sources()):
            for marker in event.markers:
                direct.setdefault(marker, []).append(f"{event.kind} on {event.listener} from {event.src_ip}")
        return SinkEvidence(kinds, by_marker, direct)

    def _masked(self, results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Tool results with every canary value replaced by its name: the report never shows a secret."""
        return [{**r, "text": mask(str(r.get("text", "")), self.searched)} for r in results]

    def _key_check(self, transcript: Sequence[Mapping[str, Any]], expected: str) -> KeyCheck:
        want = hashlib.sha256(expected.encode()).hexdigest()[:16]
        seen: dict[str, int] = {}
        for record in transcript:
            if record.get("kind") not in ("messages", "count_tokens", "rejected"):
                continue
            creds = record.get("credentials") or {}
            key = (creds.get("x-api-key") or creds.get("authorization") or {}).get("sha256_16", "none")
            seen[key] = seen.get(key, 0) + 1
        return KeyCheck(expected=want, seen=seen)

    def _api_bypass(self, transcript: Sequence[Mapping[str, Any]]) -> list[str]:
        """Client addresses of the API stand-in that are not the proxy's (a check that cannot pass empty)."""
        requests = [r for r in transcript if r.get("kind") != "started"]
        peers = {str(r.get("peer") or "<no client address recorded>") for r in requests}
        return sorted(peers - self.world.allowed_sources()) if requests else ["<no API request at all>"]

    def _llm_canaries(self, transcript: Sequence[Mapping[str, Any]]) -> list[str]:
        """Canaries the LLM endpoint saw (in report mode the proxy logs them and lets them through)."""
        blobs = [leaksearch.Blob(i, f"transcript#{r.get('seq')}", json.dumps(r.get("results", [])).encode())
                 for i, r in enumerate(transcript) if r.get("kind") == "messages" and r.get("run") == self.run_id]
        return sorted({hit.canary for hit in leaksearch.search(blobs, self.searched)})


def _secret(name: str, value: str) -> canaries_mod.Canary:
    prefix = "sk-ant-api03-" if value.startswith("sk-ant-api03-") else ""
    return canaries_mod.Canary(name, "unplanted secret", value, canaries_mod.Source(), prefix)


def _first(agents: Sequence[str]) -> str:
    if not agents:
        raise CageError("the cage has no agent to run Claude Code in")
    return agents[0]


def _model_results(transcript: Sequence[Mapping[str, Any]], run_id: str, scenario: str) -> list[Mapping[str, Any]]:
    """The tool results the model saw for this scenario: those of its last request (they accumulate)."""
    mine = [r for r in transcript if r.get("kind") == "messages" and r.get("run") == run_id and r.get("scenario") == scenario]
    return list(mine[-1].get("results") or []) if mine else []


def mask(text: str, canaries: Sequence[canaries_mod.Canary]) -> str:
    for canary in canaries:
        for secret in (canary.value, canary.material):
            if secret:
                text = text.replace(secret, f"<canary:{canary.name}>")
    return text


def _scenario_audit(audit: Sequence[Mapping[str, Any]], planned: sc.Planned, run_id: str,
                    start: datetime, end: datetime) -> list[Mapping[str, Any]]:
    """The decisions of one scenario: those naming its markers, and unmarked ones made while it ran."""
    run_marker = f"rt-{run_id}-"
    out = []
    for line in audit:
        where = f"{line.get('host', '')}{line.get('path', '')}".lower()
        if any(m in where for m in planned.markers):
            out.append(line)
        elif run_marker not in where and _within(line, start, end):
            out.append(line)
    return out


def _within(line: Mapping[str, Any], start: datetime, end: datetime) -> bool:
    try:
        when = datetime.fromisoformat(str(line.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return False
    return start <= when <= end


def _hosts(audit: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per destination host the agent asked for: decisions and counts (the API host included)."""
    out: dict[str, dict[str, int]] = {}
    for line in audit:
        host = str(line.get("host") or "?")
        decision = f"{line.get('decision')}" + (f" {line['reason']}" if line.get("decision") != "allow" and line.get("reason") else "")
        out.setdefault(host, {})
        out[host][decision] = out[host].get(decision, 0) + 1
    return out


def run(world: World, model: ModelContainer, options: ClaudeOptions | None = None,
        progress: Callable[[str], None] | None = None) -> ClaudeReport:
    return ClaudeSession(world, model, options, progress).run()

