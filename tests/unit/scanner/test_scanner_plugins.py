"""detect-secrets' and llm-guard's plugin patterns in our engine: every one left out is listed here.

A plugin upgrade that adds, drops or breaks a pattern changes `plugin_rules()`; these tests fail
until the lists below are updated on purpose, with what covers the pattern instead.
"""

from __future__ import annotations

import re
import secrets
import string

import pytest

from scanner.core import Scanner
from scanner.plugins import NOISY, bound_dots, plugin_rules, unverbose
from scanner.request import ScanRequest

LOOKAROUND = "hyperscan: Zero-width assertions are not supported."

# Left out, why, and what finds the same credentials instead (a rule id, or why nothing must).
SKIPPED = {
    "detect-secrets:CloudantDetector": ("keyword-only", "generic-keyword-secret (`*password*`, `*api_key*` = value)"),
    "detect-secrets:IbmCloudIamDetector": ("keyword-only", "generic-keyword-secret (`*api_key*` = value)"),
    "detect-secrets:SoftlayerDetector": ("keyword-only", "generic-keyword-secret (`*api_key*` = value)"),
    "detect-secrets:GitLabTokenDetector:0": (LOOKAROUND, "gitlab-token"),
    "detect-secrets:GitLabTokenDetector:1": (LOOKAROUND, "gitlab-runner-registration-token"),
    "detect-secrets:GitLabTokenDetector:2": (LOOKAROUND, "gitlab-token"),
    "detect-secrets:GitLabTokenDetector:3": (LOOKAROUND, "gitlab-token"),
    "detect-secrets:GitLabTokenDetector:4": (LOOKAROUND, "gitlab-token"),
    "detect-secrets:GitLabTokenDetector:5": (LOOKAROUND, "gitlab-token"),
    "detect-secrets:GitLabTokenDetector:6": (LOOKAROUND, "gitlab-token"),
    "detect-secrets:IbmCosHmacDetector:0": (LOOKAROUND, "generic-keyword-secret (`*secret*` = 48 hex)"),
    "detect-secrets:IPPublicDetector:0": (LOOKAROUND, "nothing: a public IP address is no secret"),
}
# How many patterns each source contributes (a plugin upgrade changes these on purpose only).
TRANSLATED = {"detect-secrets": 30, "llm-guard": 150}
LLM_GUARD_FILES = 94


def _r(chars: str, n: int) -> str:
    return "".join(secrets.choice(chars) for _ in range(n))


A = string.ascii_letters + string.digits
# A credential of each skipped pattern's shape, as a config file or a log line holds it.
SAMPLES = {
    "detect-secrets:CloudantDetector": lambda: f'cloudant_password = "{_r("0123456789abcdef", 64)}"',
    "detect-secrets:IbmCloudIamDetector": lambda: f"ibm_cloud_iam_api_key: {_r(A + '_-', 44)}",
    "detect-secrets:SoftlayerDetector": lambda: f'softlayer_api_key = "{_r(string.ascii_lowercase + string.digits, 64)}"',
    "detect-secrets:GitLabTokenDetector:0": lambda: f"token glpat-{_r(A, 20)}",
    "detect-secrets:GitLabTokenDetector:1": lambda: f"--registration-token GR1348941{_r(A, 20)}",
    "detect-secrets:GitLabTokenDetector:2": lambda: f"CI_JOB_TOKEN=glcbt-{_r(A, 24)}",
    "detect-secrets:GitLabTokenDetector:3": lambda: f"glimt-{_r(A, 25)}",
    "detect-secrets:GitLabTokenDetector:4": lambda: f"glptt-{_r(A, 40)}",
    "detect-secrets:GitLabTokenDetector:5": lambda: f"glagent-{_r(A, 60)}",
    "detect-secrets:GitLabTokenDetector:6": lambda: f"gloas-{_r(A, 64)}",
    "detect-secrets:IbmCosHmacDetector:0": lambda: f"cos_hmac_secret_access_key = {_r('0123456789abcdef', 48)}",
}


def test_skipped_patterns_are_exactly_the_listed_ones() -> None:
    skipped = dict(plugin_rules().skipped)
    assert sorted(skipped) == sorted(SKIPPED), "plugin_rules().skipped changed: update SKIPPED and say what covers it"
    for rule_id, (reason, _) in SKIPPED.items():
        assert skipped[rule_id].startswith(reason), (rule_id, skipped[rule_id])
    assert set(NOISY) == {r for r, (why, _) in SKIPPED.items() if why == "keyword-only"}


def test_translated_pattern_counts() -> None:
    rules = plugin_rules()
    counts = {src: sum(1 for r in rules.rules if r.id.startswith(src + ":")) for src in TRANSLATED}
    assert counts == TRANSLATED
    assert len(rules.loaded_files) == LLM_GUARD_FILES


@pytest.mark.parametrize("rule_id", sorted(SAMPLES))
def test_what_a_skipped_pattern_would_find_is_found(scanner: Scanner, rule_id: str) -> None:
    text = SAMPLES[rule_id]()
    found = scanner.scan_request(ScanRequest(body=text.encode()))
    assert found.verdict == "findings", (rule_id, text)
    covering = SKIPPED[rule_id][1].split()[0]
    assert covering in {f.rule for f in found.findings}, (rule_id, [f.rule for f in found.findings])
    assert scanner.scan_request(ScanRequest(body=b"token glpat-xxxxxxxxxxxxxxxxxxxxxxxx")).verdict == "clean"


def test_verbose_patterns_and_unbounded_dots_are_translated() -> None:
    assert unverbose("https://a\\.b  # the host\n /T[a z]+ \\ x") == "https://a\\.b/T[a z]+\\ x"
    assert bound_dots(r"a.*b[.*]c.+\.*") == r"a.{0,256}b[.*]c.{1,256}\.*"
    slack = [r.pattern for r in plugin_rules().rules if r.id == "detect-secrets:SlackDetector:1"]
    assert slack and re.fullmatch(slack[0], "https://hooks.slack.com/services/TABC/BDEF/xyz")
