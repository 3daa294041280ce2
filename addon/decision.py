"""What every check returns: a verdict and the reason for it (smokescreen's acl shape).

Pure: imports nothing from mitmproxy. The mitmproxy layer only turns a
:class:`Decision` into a response and an audit record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    # Blocked because something failed (scanner down, bad answer, addon bug):
    # recorded apart from policy blocks so operators can tell them apart.
    ERROR = "error"
    # Allowed, but findings were logged (scan mode "report").
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str  # machine-readable, also the X-Yolo-Cage-Block header value
    rule: str = ""  # which rule or finding decided, e.g. "destinations.blocklist:pastebin.com"
    detail: str = ""  # one sentence for a person
    status: int = 403  # HTTP status of the refusal (407 asks for proxy credentials)

    @property
    def allowed(self) -> bool:
        return self.verdict in (Verdict.ALLOW, Verdict.REPORT)


def allow(reason: str = "allowed", rule: str = "", detail: str = "") -> Decision:
    return Decision(Verdict.ALLOW, reason, rule, detail)


def block(reason: str, rule: str = "", detail: str = "", status: int = 403) -> Decision:
    return Decision(Verdict.BLOCK, reason, rule, detail, status)


def error(reason: str, rule: str = "", detail: str = "") -> Decision:
    return Decision(Verdict.ERROR, reason, rule, detail)
