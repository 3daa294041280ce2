"""The README's proxy section: its policy snippet is a valid policy, its commands name real options."""

from __future__ import annotations

import re
from pathlib import Path

from addon import policy
from addon.mitm.settings import GUARDED, OWN

README = Path(__file__).resolve().parents[3] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Egress proxy (`addon/`)")
    return text[start : text.index("\n## ", start + 1)]


def test_the_policy_snippet_is_valid() -> None:
    [snippet] = re.findall(r"```yaml\n(.*?)```", section(), re.S)
    parsed = policy.parse(snippet, "README.md")
    assert "webhook.site" in parsed.destinations.blocked_hosts
    assert parsed.scan.mode_for("api.anthropic.com") == "report"
    assert policy.loosening(parsed) == []


def test_the_documented_options_exist_with_their_defaults() -> None:
    text = section()
    for name, (default, _) in OWN.items():
        assert f"`{name}={default}`" in text
    assert "connection_strategy=lazy" in text and "connection_strategy" in GUARDED
    for refused in ("ignore_hosts", "allow_hosts", "tcp_hosts", "udp_hosts", "stream_large_bodies", "ssl_insecure"):
        assert refused in text and refused in GUARDED
