"""Exact sets of integers (ports, IP addresses) as sorted disjoint intervals.

Small on purpose: the NetworkPolicy evaluator needs union, intersection and
difference of port ranges and CIDR lists, exactly, without enumerating
2^128 addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Intervals:
    """A set of integers: sorted, disjoint, non-adjacent closed intervals."""

    spans: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, spans: Iterable[tuple[int, int]]) -> Intervals:
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(s for s in spans if s[0] <= s[1]):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return cls(tuple(merged))

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __or__(self, other: Intervals) -> Intervals:
        return Intervals.of(self.spans + other.spans)

    def __and__(self, other: Intervals) -> Intervals:
        out = []
        for lo, hi in self.spans:
            for olo, ohi in other.spans:
                if max(lo, olo) <= min(hi, ohi):
                    out.append((max(lo, olo), min(hi, ohi)))
        return Intervals.of(out)

    def __sub__(self, other: Intervals) -> Intervals:
        out = list(self.spans)
        for olo, ohi in other.spans:
            nxt = []
            for lo, hi in out:
                if ohi < lo or olo > hi:
                    nxt.append((lo, hi))
                    continue
                if lo < olo:
                    nxt.append((lo, olo - 1))
                if hi > ohi:
                    nxt.append((ohi + 1, hi))
            out = nxt
        return Intervals.of(out)

    def covers(self, other: Intervals) -> bool:
        return not (other - self)


_FAMILIES = (4, 6)


@dataclass(frozen=True)
class Addresses:
    """A set of IPv4 and IPv6 addresses."""

    v4: Intervals = Intervals()
    v6: Intervals = Intervals()

    @classmethod
    def of(cls, cidrs: Iterable[str]) -> Addresses:
        v4, v6 = [], []
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            span = (int(net.network_address), int(net.broadcast_address))
            (v4 if net.version == 4 else v6).append(span)
        return cls(Intervals.of(v4), Intervals.of(v6))

    def __bool__(self) -> bool:
        return bool(self.v4) or bool(self.v6)

    def __or__(self, other: Addresses) -> Addresses:
        return Addresses(self.v4 | other.v4, self.v6 | other.v6)

    def __and__(self, other: Addresses) -> Addresses:
        return Addresses(self.v4 & other.v4, self.v6 & other.v6)

    def __sub__(self, other: Addresses) -> Addresses:
        return Addresses(self.v4 - other.v4, self.v6 - other.v6)

    def covers(self, other: Addresses) -> bool:
        return not (other - self)

    def cidrs(self) -> list[str]:
        """The set as the fewest CIDR blocks (for messages)."""
        out: list[str] = []
        for spans, cls in ((self.v4.spans, ipaddress.IPv4Address), (self.v6.spans, ipaddress.IPv6Address)):
            for lo, hi in spans:
                out += [str(n) for n in ipaddress.summarize_address_range(cls(lo), cls(hi))]
        return out

    def describe(self, limit: int = 4) -> str:
        blocks = self.cidrs()
        more = f" and {len(blocks) - limit} more blocks" if len(blocks) > limit else ""
        return ", ".join(blocks[:limit]) + more
