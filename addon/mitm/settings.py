"""Options of the yolo-cage addon, parsed once in ``configure()`` into an immutable Config.

Also refuses mitmproxy settings that would let traffic around the checks:
``ignore_hosts``/``allow_hosts``/``tcp_hosts``/``udp_hosts`` (tunnel hosts
unfiltered), ``stream_large_bodies`` (forwards bodies before they are
scanned), ``connection_strategy=eager`` (contacts the upstream before the
request is checked), ``ssl_insecure`` and any proxy mode but ``regular``.
A bad value raises ``OptionsError`` naming it; at startup mitmdump then exits.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions

from addon import policy as policy_mod
from addon.audit import AuditLog
from addon.credentials import ValueDir, compile_bindings
from addon.gitsmart import GitRules
from addon.destinations import DestinationPolicy
from addon.identity import RegistryFile
from addon.mitm.runtime import Config, Runtime
from addon.rules import compile_rules
from addon.scanclient import ScannerClient

log = logging.getLogger("yolo_cage")

OWN = {
    "yolo_cage_policy": ("/etc/yolo-cage/policy.yaml", "Path of the policy file (apiVersion yolo-cage.dev/v1alpha1, kind Policy)."),
    "yolo_cage_agents": (
        "/etc/yolo-cage/agents.json",
        "Path of the agent registry (JSON: agent -> token_sha256, networks). "
        "Empty: no agent identity (every request is from agent 'unknown'); said loudly at startup.",
    ),
    "yolo_cage_scanner": ("http://scanner:8000", "Base URL of the scanner service (POST /v1/scan)."),
    "yolo_cage_audit_log": ("/var/log/yolo-cage/audit.jsonl", "Audit log path (JSON lines, appended)."),
    "yolo_cage_credentials": (
        "/run/yolo-cage/credentials",
        "Directory of real credential values (one file per binding, named after it), swapped in for placeholders. "
        "Empty: no credential is ever injected.",
    ),
}
POOL_OPTION = "yolo_cage_scanner_connections"

# mitmproxy option -> (predicate for a safe value, why).
GUARDED = {
    "ignore_hosts": (lambda v: not v, "ignored hosts are tunnelled without any check"),
    "allow_hosts": (lambda v: not v, "hosts outside allow_hosts are tunnelled without any check"),
    "tcp_hosts": (lambda v: not v, "tcp_hosts are relayed as raw TCP without any check"),
    "udp_hosts": (lambda v: not v, "udp_hosts are relayed as raw UDP without any check"),
    "stream_large_bodies": (lambda v: v is None, "streamed bodies are forwarded before they are scanned"),
    "connection_strategy": (lambda v: v == "lazy", "must be 'lazy': 'eager' contacts the upstream before the request is checked"),
    "ssl_insecure": (lambda v: not v, "upstream certificates must be verified"),
    "mode": (lambda v: all(m.split("@", 1)[0] == "regular" for m in v), "only the regular proxy mode is supported"),
    "validate_inbound_headers": (lambda v: v, "ambiguous requests (request smuggling) must be rejected"),
}


class Settings:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def load(self, loader) -> None:
        for name, (default, help_text) in OWN.items():
            loader.add_option(name, str, default, help_text)
        loader.add_option(POOL_OPTION, int, 64, "Connections kept open to the scanner.")

    def configure(self, updated: set[str]) -> None:
        for name in updated & GUARDED.keys():
            ok, why = GUARDED[name]
            if not ok(getattr(ctx.options, name)):
                raise exceptions.OptionsError(f"yolo-cage refuses {name}={getattr(ctx.options, name)!r}: {why}")
        if updated & (OWN.keys() | {POOL_OPTION}):
            self._replace(self._build())

    def _build(self) -> Config:
        opts = ctx.options
        try:
            policy = policy_mod.load(opts.yolo_cage_policy)
        except policy_mod.PolicyError as exc:
            raise exceptions.OptionsError(f"yolo_cage_policy: {exc}") from None
        registry = _registry(opts.yolo_cage_agents)
        scanner = ScannerClient(_scanner_url(opts.yolo_cage_scanner), _pool(getattr(opts, POOL_OPTION)))
        try:
            audit_log = AuditLog(opts.yolo_cage_audit_log)
        except OSError as exc:
            raise exceptions.OptionsError(f"yolo_cage_audit_log: cannot open {opts.yolo_cage_audit_log}: {exc.strerror or exc}") from None
        return Config(
            policy=policy,
            policy_path=opts.yolo_cage_policy,
            destinations=DestinationPolicy.from_policy(policy.destinations),
            rules=compile_rules(policy.rules),
            registry=registry,
            scanner=scanner,
            audit=audit_log,
            bindings=compile_bindings(policy.credentials),
            credential_values=ValueDir(opts.yolo_cage_credentials) if opts.yolo_cage_credentials else None,
            git=_git_rules(policy.git),
        )

    def _replace(self, config: Config) -> None:
        old, self.runtime.config = self.runtime.config, config
        if old is not None:
            old.audit.close()
            _close_later(old.scanner)

    def running(self) -> None:
        config = self.runtime.require_config()
        log.info("yolo-cage: policy %s, scanner %s, audit log %s", config.policy_path, config.scanner.url, config.audit.path)
        if config.registry is None:
            log.warning("NO AGENT REGISTRY (yolo_cage_agents is empty): requests are not authenticated, agent recorded as null (unknown)")
        for item in policy_mod.loosening(config.policy):
            log.warning("UNSAFE POLICY SETTING IN USE: %s", item)
        _report_credentials(config)

    async def done(self) -> None:
        config = self.runtime.config
        if config is not None:
            self.runtime.flush_healthchecks()
            config.audit.close()
            await config.scanner.close()


def _git_rules(git: policy_mod.Git) -> GitRules:
    return GitRules(
        fetch_repositories=git.fetch_repositories,
        allow_other_branches=git.unsafe_allow_other_branches,
        allow_tags=git.unsafe_allow_tags,
        allow_delete=git.unsafe_allow_delete,
        allow_force_push=git.unsafe_allow_force_push,
    )


def _report_credentials(config: Config) -> None:
    """Which bindings have a real value here (names only, never a value)."""
    values = config.credential_values
    present = values.names() if values is not None else []
    for binding in config.bindings:
        state = "value present" if binding.name in present else "no value (not bound here; a placeholder for it is refused)"
        log.info("yolo-cage: credential %s (%s): %s", binding.name, binding.mode, state)
    for problem in values.problems if values is not None else []:
        log.error("yolo-cage: credential file %s", problem)


def _registry(path: str) -> RegistryFile | None:
    if not path:
        return None
    registry = RegistryFile(path)
    state = registry.current()
    if isinstance(state, str):
        raise exceptions.OptionsError(f"yolo_cage_agents: {state}")
    return registry


def _scanner_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
        # The scanner shares an internal network with the proxy alone; its client speaks plain HTTP.
        raise exceptions.OptionsError(f"yolo_cage_scanner: not an http:// base URL: {url!r}")
    return url


def _pool(size: int) -> int:
    if not 1 <= size <= 1024:
        raise exceptions.OptionsError(f"{POOL_OPTION}: between 1 and 1024 (got {size})")
    return size


def _close_later(scanner: ScannerClient) -> None:
    try:
        asyncio.get_running_loop().create_task(scanner.close())
    except RuntimeError:
        pass  # no loop running: nothing was opened
