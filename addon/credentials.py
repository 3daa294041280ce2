"""Credential bindings: placeholders in, real values out, only where the policy says.

Each agent holds, per ``inject`` binding, a placeholder of its own (in the
registry, written by the kit). A request may carry it only as the whole value
of one of the binding's places (a header, with its auth scheme) on one of the
binding's hosts and paths, over HTTPS; there the proxy swaps in the real value
once every other check and the content scan passed. The placeholder anywhere else (another
host, header, path, the URL, the body, a WebSocket message, another agent's
request) is ``credential-misuse``: blocked, with one exception: the agent's own
placeholder in a body (or WebSocket message) to a bound host or a report-mode
destination is harmless (a conversation with the LLM API that holds the output
of ``env``); it is let through untouched and recorded.

On a host that a bound credential covers, the binding's places (and its
``exclusive_headers``) carry that credential and nothing else: any other value
there (an attacker's own key, which would open another account on the
operator's trusted host) is ``credential-foreign``: blocked in every scan mode.
A request with no credential there passes (nothing to inject), but a
``report``-mode host scans it in ``enforce`` mode: report mode trusts the
operator's own account, and that request is not going to it.

``passthrough`` bindings (the weaker mode, e.g. Claude Code's subscription
login) have no placeholder: the agent holds the real value, the scanner blocks
it everywhere as a registered fingerprint, and the proxy lets the scanner's
findings go only where the value sits exactly in its place on its host.

Real values are read from ``<dir>/<binding name>`` (one value per file), never
logged. Pure decisions; file I/O only in :class:`ValueDir`. Nothing from mitmproxy.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from addon.decision import Decision, block
from addon.hostnames import matches
from addon.policy import Binding, Credentials
from addon.rules import normalise_path, segments_match
from addon.scanning import Outcome, ScanResult

PREFIX = "yolo-cage-placeholder-"
_PLACEHOLDER = re.compile(r"^yolo-cage-placeholder-[a-z][a-z0-9-]{0,47}-[0-9a-f]{24}$")
MISUSE = "credential-misuse"
FOREIGN = "credential-foreign"
UNAVAILABLE = "credential-unavailable"
_VALUE = re.compile(rb"^[\x21-\x7e]{1,8192}$")


def new_placeholder(binding: str) -> str:
    """A fresh placeholder: recognisable, the binding's name in it, useless anywhere else."""
    return f"{PREFIX}{binding}-{secrets.token_hex(12)}"


def is_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.match(value))


# --- compiled bindings ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    header: str  # lower case
    scheme: str | None  # lower case; None: the whole value
    username: str | None
    hosts: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]  # split, lower-cased patterns; empty: any path

    @property
    def location(self) -> str:
        """How the scanner names this header in its findings."""
        return f"header:{self.header}"

    def applies(self, host: str, segments: Sequence[str]) -> bool:
        if not any(matches(host, h) for h in self.hosts):
            return False
        return not self.paths or any(segments_match(p, segments) for p in self.paths)

    def value_for(self, secret: str) -> str:
        """The header value carrying ``secret`` in this place."""
        if self.scheme is None:
            return secret
        if self.scheme == "basic":
            return "Basic " + base64.b64encode(f"{self.username}:{secret}".encode()).decode()
        return f"{self._scheme_text} {secret}"

    @property
    def _scheme_text(self) -> str:
        return {"bearer": "Bearer", "token": "token"}.get(self.scheme or "", self.scheme or "")

    def carried(self, value: str) -> str | None:
        """The credential in ``value`` if the value has exactly this place's shape, else None."""
        if self.scheme is None:
            return value
        scheme, sep, rest = value.partition(" ")
        if not sep or scheme.lower() != self.scheme or rest != rest.strip() or not rest or " " in rest:
            return None
        if self.scheme != "basic":
            return rest
        user, _, password = _basic(rest).partition(":")
        return password if user == self.username and password else None


def _basic(encoded: str) -> str:
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


@dataclass(frozen=True, slots=True)
class CompiledBinding:
    name: str
    mode: str  # inject | passthrough
    places: tuple[Place, ...]
    hosts: tuple[str, ...] = ()
    exclusive: frozenset[str] = frozenset()  # lower-case headers that carry this credential only

    def covers(self, host: str) -> bool:
        return any(matches(host, h) for h in self.hosts)


def compile_bindings(credentials: Credentials) -> tuple[CompiledBinding, ...]:
    return tuple(_compile(b) for b in credentials.bindings)


def _compile(binding: Binding) -> CompiledBinding:
    places = tuple(
        Place(
            header=p.header.lower(),
            scheme=p.scheme.lower() if p.scheme else None,
            username=p.username,
            hosts=p.hosts or tuple(binding.hosts or ()),
            paths=tuple(tuple(s.lower() for s in path.split("/") if s) for path in p.paths),
        )
        for p in binding.where or ()
    )
    exclusive = frozenset(p.header for p in places) | {h.lower() for h in binding.exclusive_headers}
    return CompiledBinding(binding.name, binding.mode or "inject", places, tuple(binding.hosts or ()), exclusive)


# --- what a request does with credentials ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Use:
    """A header that carries a credential in one of its binding's places."""

    binding: str
    header: str  # lower case
    place: Place
    inject: bool  # True: holds the placeholder, to be swapped; False: passthrough, already real


@dataclass(frozen=True, slots=True)
class Owner:
    agent: str
    binding: str


@dataclass(frozen=True, slots=True)
class Check:
    uses: tuple[Use, ...] = ()
    refusal: Decision | None = None
    bound_host: bool = False  # a bound credential covers the destination (the operator's account there)

    @property
    def exempt_locations(self) -> frozenset[str]:
        """Scanner findings here are explained by the credential itself (its placeholder or bound value)."""
        return frozenset(u.place.location for u in self.uses)


def misuse(owner: Owner, agent: str | None, where: str) -> Decision:
    whose = "" if owner.agent == agent else f" (it belongs to agent {owner.agent!r})"
    return block(
        MISUSE,
        f"credentials:{owner.binding}",
        f"the placeholder of credential {owner.binding!r} was sent in {where}{whose}; "
        "it may appear only in its own header on its own hosts",
    )


class PlaceholderIndex:
    """Every agent's placeholders, found in any bytes by one scan for the common prefix."""

    def __init__(self, placeholders: Mapping[str, Owner]):
        self._owners = {p.encode(): o for p, o in placeholders.items()}
        self._by_len = sorted({len(p) for p in self._owners}, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._owners)

    def find(self, data: bytes) -> Owner | None:
        return next(self.find_all(data), None)

    def find_all(self, data: bytes) -> Iterator[Owner]:
        if not self._owners:
            return
        marker = PREFIX.encode()
        pos = data.find(marker)
        while pos >= 0:
            for size in self._by_len:
                owner = self._owners.get(data[pos : pos + size])
                if owner is not None:
                    yield owner
                    break
            pos = data.find(marker, pos + 1)


@dataclass(frozen=True)
class RequestView:
    agent: str | None
    host: str
    path: str  # with the query
    headers: Sequence[tuple[str, str]]
    injection_allowed: bool = True  # False: e.g. a git request for a repository not the agent's own
    secure: bool = True  # https upstream: a real value never travels in clear


def check_request(
    bindings: Sequence[CompiledBinding],
    index: PlaceholderIndex,
    own: Mapping[str, str],
    values: Callable[[str], str | None],
    request: RequestView,
) -> Check:
    """Find every credential use and every misuse in the URL and headers (the body is checked apart).

    ``own``: this agent's placeholders (binding -> placeholder). ``values``: the
    real value of a passthrough binding (None when unavailable).
    """
    if index and (owner := _in_url(index, request.path)) is not None:
        return Check(refusal=misuse(owner, request.agent, "the URL"))
    segments = normalise_path(request.path)
    uses: list[Use] = []
    seen: set[str] = set()
    by_name = {b.name: b for b in bindings}
    passthrough = [b for b in bindings if b.mode == "passthrough"] if request.secure else []
    for name, value in request.headers:
        low = name.lower()
        owner = (index.find(value.encode("utf-8", "surrogateescape")) or index.find(_basic_payload(value))) if index else None
        if owner is not None:
            use = _placeholder_use(by_name.get(owner.binding), owner, own, low, value, request, segments)
            if use is None or low in seen:
                return Check(refusal=misuse(owner, request.agent, f"the {name} header"))
            seen.add(low)
            uses.append(use)
            continue
        if passthrough:
            uses += _passthrough_uses(passthrough, values, low, value, request.host, segments)
    names = [n.lower() for n, _ in request.headers]
    for use in uses:
        if names.count(use.header) != 1:
            # Swapping (or exempting from the scan) one of several same-named headers is ambiguous.
            owner = Owner(request.agent or "", use.binding)
            return Check(refusal=misuse(owner, request.agent, f"one of several {use.header} headers"))
    bound = [b for b in bindings if b.covers(request.host) and (b.name in own or values(b.name) is not None)]
    refusal = _foreign(bound, values, request, {u.header for u in uses})
    return Check(tuple(uses), refusal, bound_host=bool(bound))


def _foreign(
    bound: Sequence[CompiledBinding], values: Callable[[str], str | None], request: RequestView, used: set[str]
) -> Decision | None:
    """A value in a bound credential's exclusive header that is not that credential (nor empty)."""
    exclusive = {h: b.name for b in bound for h in b.exclusive}
    # A passthrough value out of its place is not foreign: the scanner's fingerprint blocks it.
    reals = [v for b in bound if b.mode == "passthrough" and (v := values(b.name))]
    for name, value in request.headers:
        binding = exclusive.get(name.lower())
        if binding is None or name.lower() in used or not value.strip() or any(r in value for r in reals):
            continue
        return block(
            FOREIGN,
            f"credentials:{binding}",
            f"the {name} header to {request.host} carries a credential other than the bound {binding!r}; "
            "on this host it may carry only the agent's placeholder (or nothing)",
        )
    return None


def scan_mode(mode: str, check: Check) -> str:
    """``report`` trusts the operator's own account: on a bound host, a request without its credential is enforced."""
    if mode == "report" and check.bound_host and not check.uses:
        return "enforce"
    return mode


def body_harmless(check: Check, mode: str) -> bool:
    """Where the agent's own placeholder in a body is harmless: a bound host, or a report-mode destination."""
    return check.bound_host or scan_mode(mode, check) == "report"


def _in_url(index: PlaceholderIndex, path: str) -> Owner | None:
    raw = path.encode("utf-8", "surrogateescape")
    return index.find(raw) or index.find(unquote_to_bytes(raw))


def _basic_payload(value: str) -> bytes:
    scheme, _, rest = value.strip().partition(" ")
    return _basic(rest.strip()).encode("utf-8", "surrogateescape") if scheme.lower() == "basic" else b""


def _placeholder_use(
    binding: CompiledBinding | None,
    owner: Owner,
    own: Mapping[str, str],
    header: str,
    value: str,
    request: RequestView,
    segments: Sequence[str],
) -> Use | None:
    if binding is None or binding.mode != "inject" or owner.agent != request.agent:
        return None
    if not request.injection_allowed or not request.secure:
        return None
    placeholder = own.get(binding.name)
    for place in binding.places:
        if place.header == header and place.applies(request.host, segments) and place.carried(value) == placeholder:
            return Use(binding.name, header, place, inject=True)
    return None


def _passthrough_uses(
    bindings: Sequence[CompiledBinding],
    values: Callable[[str], str | None],
    header: str,
    value: str,
    host: str,
    segments: Sequence[str],
) -> list[Use]:
    out = []
    for binding in bindings:
        if binding.mode != "passthrough":
            continue
        real = values(binding.name)
        for place in binding.places:
            if real and place.header == header and place.applies(host, segments) and place.carried(value) == real:
                out.append(Use(binding.name, header, place, inject=False))
    return out


@dataclass(frozen=True, slots=True)
class BodyCheck:
    refusal: Decision | None = None
    tolerated: frozenset[str] = frozenset()  # bindings whose own placeholder was there, harmlessly


def check_body(
    index: PlaceholderIndex,
    agent: str | None,
    raw: bytes,
    decoded: bytes | None,
    where: str = "the body",
    harmless: bool = False,
) -> BodyCheck:
    """A placeholder in a body (as sent, and after Content-Encoding) is misuse unless ``harmless``
    (see :func:`body_harmless`) and the agent's own. It is never swapped there."""
    tolerated: set[str] = set()
    for data in (raw, decoded):
        for owner in index.find_all(data) if data else ():
            if not harmless or owner.agent != agent:
                return BodyCheck(misuse(owner, agent, where))
            tolerated.add(owner.binding)
    return BodyCheck(tolerated=frozenset(tolerated))


def substitute(
    headers: Iterable[tuple[str, str]], uses: Sequence[Use], values: Callable[[str], str | None]
) -> list[tuple[str, str]] | Decision:
    """The headers with every injected placeholder replaced by its real value (or why not)."""
    by_header = {u.header: u for u in uses if u.inject}
    out = []
    for name, value in headers:
        use = by_header.get(name.lower())
        if use is None:
            out.append((name, value))
            continue
        real = values(use.binding)
        if real is None:
            return block(
                UNAVAILABLE, f"credentials:{use.binding}", f"the real value of credential {use.binding!r} is not available to the proxy"
            )
        out.append((name, use.place.value_for(real)))
    return out


# --- the real values ------------------------------------------------------------------------------


class ValueDir:
    """Real values, one per file named after its binding; re-read when the directory changes.

    A value must be printable ASCII without spaces (it goes into a header); a
    file that is not is reported by name, never by content.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic, interval: float = 1.0):
        self.path = path
        self._clock, self._interval = clock, interval
        self._checked = float("-inf")
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._values: dict[str, str] = {}
        self.problems: list[str] = []

    def get(self, name: str) -> str | None:
        now = self._clock()
        if now - self._checked >= self._interval:
            self._checked = now
            self._refresh()
        return self._values.get(name)

    def names(self) -> list[str]:
        self.get("")
        return sorted(self._values)

    def _refresh(self) -> None:
        signature = _signature(self.path)
        if signature == self._signature:
            return
        self._signature = signature
        values, problems = {}, []
        for name, _, _ in signature:
            try:
                with open(os.path.join(self.path, name), "rb") as fh:
                    raw = fh.read(16384).rstrip(b"\r\n")
            except OSError as exc:
                problems.append(f"{name}: unreadable ({exc.strerror})")
                continue
            if not _VALUE.match(raw):
                problems.append(f"{name}: not a single printable ASCII token (cannot go into a header)")
                continue
            values[name] = raw.decode("ascii")
        self._values, self.problems = values, problems


def _signature(path: str) -> tuple[tuple[str, int, int], ...]:
    out = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return ()
    for entry in entries:
        if entry.name.startswith("."):
            continue  # Kubernetes' ..data links; followed through the names themselves
        try:
            st = entry.stat()
        except OSError:
            continue
        if entry.is_file():
            out.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def without_locations(outcome: Outcome, locations: frozenset[str]) -> Outcome:
    """The scan outcome minus findings at ``locations`` (headers holding a bound credential)."""
    if not locations or not isinstance(outcome, ScanResult) or outcome.verdict != "findings":
        return outcome
    kept = tuple(f for f in outcome.findings if f.location not in locations)
    if len(kept) == len(outcome.findings):
        return outcome
    return ScanResult("findings" if kept else "clean", kept, outcome.errors, outcome.scan_ms)
