"""Prometheus text exposition, kept tiny: counters and one latency histogram.

Updated only from the event-loop thread (after a scan returns), so no locking.
"""

from __future__ import annotations

from collections import Counter

BUCKETS_MS = (1, 2, 5, 10, 15, 25, 50, 100, 250, 500, 1000, 5000)


class Metrics:
    def __init__(self) -> None:
        self.scans: Counter[tuple[str, str]] = Counter()  # (endpoint, verdict)
        self.findings: Counter[tuple[str, str]] = Counter()  # (rule, source)
        self.errors: Counter[str] = Counter()  # issue code or HTTP error
        self.bytes_scanned = 0
        self.findings_dropped = 0  # past the caps on locations (engine.MAX_LOCATIONS, MAX_FINDINGS)
        self.latency = [0] * (len(BUCKETS_MS) + 1)
        self.latency_sum_ms = 0.0
        self.inflight = 0
        self.gauges: dict[str, float] = {}

    def observe(self, endpoint: str, verdict: str, ms: float, scanned: int, findings, issues, dropped: int = 0) -> None:
        self.scans[(endpoint, verdict)] += 1
        self.findings_dropped += dropped
        self.bytes_scanned += scanned
        self.latency_sum_ms += ms
        i = next((i for i, b in enumerate(BUCKETS_MS) if ms <= b), len(BUCKETS_MS))
        self.latency[i] += 1
        for f in findings:
            self.findings[(f.rule, f.source)] += 1
        for e in issues:
            self.errors[e.code] += 1

    def render(self) -> str:
        out = [
            "# HELP yolo_cage_scanner_scans_total Scans by endpoint and verdict.",
            "# TYPE yolo_cage_scanner_scans_total counter",
        ]
        out += [f'yolo_cage_scanner_scans_total{{endpoint="{e}",verdict="{v}"}} {n}' for (e, v), n in sorted(self.scans.items())]
        out += ["# HELP yolo_cage_scanner_findings_total Findings by rule and source.",
                "# TYPE yolo_cage_scanner_findings_total counter"]
        out += [f'yolo_cage_scanner_findings_total{{rule="{_esc(r)}",source="{s}"}} {n}' for (r, s), n in sorted(self.findings.items())]
        out += ["# HELP yolo_cage_scanner_errors_total Scan issues and rejected requests by code.",
                "# TYPE yolo_cage_scanner_errors_total counter"]
        out += [f'yolo_cage_scanner_errors_total{{code="{_esc(c)}"}} {n}' for c, n in sorted(self.errors.items())]
        out += ["# HELP yolo_cage_scanner_findings_dropped_total Findings not reported: past the caps on locations.",
                "# TYPE yolo_cage_scanner_findings_dropped_total counter",
                f"yolo_cage_scanner_findings_dropped_total {self.findings_dropped}"]
        out += ["# TYPE yolo_cage_scanner_bytes_scanned_total counter", f"yolo_cage_scanner_bytes_scanned_total {self.bytes_scanned}",
                "# HELP yolo_cage_scanner_scan_seconds Time spent in the engine per scan.",
                "# TYPE yolo_cage_scanner_scan_seconds histogram"]
        cum = 0
        for b, n in zip(BUCKETS_MS, self.latency):
            cum += n
            out.append(f'yolo_cage_scanner_scan_seconds_bucket{{le="{b / 1000}"}} {cum}')
        cum += self.latency[-1]
        out += [f'yolo_cage_scanner_scan_seconds_bucket{{le="+Inf"}} {cum}',
                f"yolo_cage_scanner_scan_seconds_sum {self.latency_sum_ms / 1000}",
                f"yolo_cage_scanner_scan_seconds_count {cum}",
                "# TYPE yolo_cage_scanner_inflight gauge", f"yolo_cage_scanner_inflight {self.inflight}"]
        for name, value in sorted(self.gauges.items()):
            out += [f"# TYPE yolo_cage_scanner_{name} gauge", f"yolo_cage_scanner_{name} {value}"]
        return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
