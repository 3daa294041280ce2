"""A request's parts -> the scanned view (URL, headers, cookies, body by media type)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes, urlsplit

import orjson

from scanner import bare, bodies, dnsnames, gitpack
from scanner.errors import BodyError
from scanner.findings import ScanIssue
from scanner.rawjson import RawJson, decoded_view
from scanner.segments import Part, View, safe_name
from scanner.verify import is_secret_key_name_cached

MAX_MULTIPART_DEPTH = 3


@dataclass(frozen=True, slots=True)
class ScanRequest:
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    kind: str = "http"  # http | websocket
    method: str = ""
    agent: str | None = None
    destination: str = ""
    request_id: str = ""


@dataclass
class Built:
    view: View = field(default_factory=View)
    # The JSON values again without short enum-like ones ("text", "user", "tool_result"):
    # a token split over two content blocks is adjacent here, not in `view`.
    alt: View = field(default_factory=View)
    keyed: list[tuple[str, str]] = field(default_factory=list)  # (value under a secret-ish key, location or "")
    bare: list[tuple[bytes, str]] = field(default_factory=list)  # (a whole value that is one random token, location)
    raws: list[RawJson] = field(default_factory=list)  # JSON bodies scanned raw (scanner/rawjson.py)
    issues: list[ScanIssue] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    body_bytes: int = 0
    raw_json: bool = True
    limits: bodies.Limits = bodies.Limits(1 << 26, 200)  # decoded-byte bounds (Content-Encoding, git packs)


def build(req: ScanRequest, limits: bodies.Limits, max_body: int, raw_json: bool = True) -> Built:
    """The request's view. `raw_json=False` decodes every JSON body up front (the reference the raw path is tested against)."""
    out = Built(raw_json=raw_json, limits=limits)
    _url(out, req.url)
    _headers(out, req.headers)
    if req.body:
        if len(req.body) > max_body:
            out.issues.append(ScanIssue("body-too-large", f"{len(req.body)} bytes > limit {max_body}"))
        elif req.kind == "websocket":
            _content(out, req.body, "", "websocket:message", 0)
        else:
            _body(out, req, limits)
    if out.keys:
        out.view.add(Part(out.keys, ["keys"] * len(out.keys)))
    return out


def _url(out: Built, url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    values, locs = [], []
    path = unquote_to_bytes(parts.path)
    for value, loc in ((path, "url:path"), (unquote_to_bytes(parts.password or ""), "url:userinfo"),
                       (unquote_to_bytes(parts.username or ""), "url:userinfo")):
        if value:
            values.append(value)
            locs.append(loc)
    hosts = dnsnames.host_values(dnsnames.host_of(parts.netloc))
    values += hosts
    locs += ["url:host"] * len(hosts)
    _fields(out, bodies.form_fields(parts.query.encode("utf-8", "surrogatepass")), "url:query", values, locs, doh=True)
    if parts.fragment:
        values.append(unquote_to_bytes(parts.fragment))
        locs.append("url:fragment")
    out.view.add(Part(values, locs))


def _headers(out: Built, headers: tuple[tuple[str, str], ...]) -> None:
    values, locs = [], []
    for name, value in headers:
        low = name.lower()
        if low == "cookie":
            for pair in value.split(";"):
                cname, _, cvalue = pair.strip().partition("=")
                if cvalue:
                    values.append(unquote_to_bytes(cvalue))
                    locs.append(f"cookie:{safe_name(cname)}")
                    if is_secret_key_name_cached(cname):
                        out.keyed.append((cvalue, locs[-1]))
            continue
        if value:
            values.append(value.encode("utf-8", "surrogateescape"))
            locs.append(f"header:{safe_name(low)}")
            if is_secret_key_name_cached(low):
                out.keyed.append((value, locs[-1]))
            elif _bare(values[-1], low):
                out.bare.append((values[-1], locs[-1]))
            if low in _HOST_HEADERS:
                joined = dnsnames.host_values(dnsnames.host_of(value.strip()))[1:]
                values += joined
                locs += locs[-1:] * len(joined)
    out.view.add(Part(values, locs))


_HOST_HEADERS = ("host", ":authority")


def header(headers: tuple[tuple[str, str], ...], name: str) -> str:
    return ", ".join(v for k, v in headers if k.lower() == name)


def _body(out: Built, req: ScanRequest, limits: bodies.Limits) -> None:
    body = req.body
    try:
        body = bodies.decode_content(body, header(req.headers, "content-encoding"), limits)
    except BodyError as exc:
        out.issues.append(ScanIssue(exc.code, exc.detail))
        out.view.add(Part([body], ["body"]))  # still scan the wire bytes for what is visible
        return
    _content(out, body, header(req.headers, "content-type"), "body", 0)


def _content(out: Built, body: bytes, content_type: str, location: str, depth: int) -> None:
    out.body_bytes += len(body)
    kind, params = bodies.media_type(content_type)
    if bodies.is_json(kind) or (not kind and bodies.looks_like_json(body)):
        if _json(out, body, location, declared=bool(kind)):
            return
    elif kind == "application/x-www-form-urlencoded":
        _form(out, body, location)
        return
    elif kind.startswith("multipart/"):
        _multipart(out, body, params.get("boundary", ""), location, depth)
        return
    elif kind == gitpack.MEDIA_TYPE:
        _git_push(out, body, location)
        return
    elif kind in dnsnames.DNS_MESSAGE_TYPES:  # DNS over HTTPS, POST (RFC 8484)
        names = _names(body)
        out.view.add(Part([body, *names], [location] * (1 + len(names))))
        return
    out.view.add(Part([body], [location]))


def _git_push(out: Built, body: bytes, location: str) -> None:
    """A `git push` over HTTP: its commands, and every pack object inflated (scanner/gitpack.py)."""
    try:
        pushed = gitpack.parse(body, bodies.budget(len(body), out.limits))
    except BodyError as exc:
        out.issues.append(ScanIssue(exc.code, exc.detail))
        out.view.add(Part([body], [location]))  # still scan the wire bytes for what is visible
        return
    out.view.add(Part(pushed.commands, [f"{location}:git-command[{i}]" for i in range(len(pushed.commands))]))
    out.view.add(Part(pushed.objects, [f"{location}:git-pack[{i}]" for i in range(len(pushed.objects))]))


def _json(out: Built, body: bytes, location: str, declared: bool) -> bool:
    try:
        orjson.loads(body)  # validation only: the raw bytes are scanned (scanner/rawjson.py)
    except orjson.JSONDecodeError as exc:
        if declared:
            out.issues.append(ScanIssue("invalid-json", str(exc).split(":")[0][:120]))
        return False
    raw = RawJson(body, "body:" if location == "body" else location + ":")
    if out.raw_json:
        out.raws.append(raw)
        return True
    view, alt, keyed, bare_values = decoded_view(raw, is_secret_key_name_cached)
    out.view.parts += view.parts
    out.alt.parts += alt.parts
    out.keyed.extend(keyed)
    out.bare.extend(bare_values)
    return True


def _form(out: Built, body: bytes, location: str) -> None:
    values: list[bytes] = []
    locs: list[str] = []
    _fields(out, bodies.form_fields(body), f"{location}:form", values, locs)
    out.view.add(Part(values, locs))


def _fields(out: Built, pairs: list[tuple[bytes, bytes]], where: str, values: list[bytes], locs: list[str],
            doh: bool = False) -> None:
    """Query or form fields: values to scan, names as keys, secret-ish names checked by value; a
    name-shaped value also with its labels joined, and (`doh`: the URL query) the question names
    of an RFC 8484 `dns=` message (scanner/dnsnames.py)."""
    for key, value in pairs:
        name = key.decode("utf-8", "replace")
        out.keys.append(name)
        if value:
            values.append(value)
            locs.append(f"{where}:{safe_name(name)}")
            if is_secret_key_name_cached(name):
                out.keyed.append((value.decode("utf-8", "replace"), locs[-1]))
            elif _bare(value, name):
                out.bare.append((value, locs[-1]))
            extra = _dns_values(value, doh and name.lower() == "dns")
            values += extra
            locs += locs[-1:] * len(extra)


def _bare(value: bytes, name: str) -> bool:
    """A candidate for the bare-secret heuristic (the engine judges it: scanner/bare.py)."""
    return bare.MIN_LEN <= len(value) <= bare.MAX_LEN and not bare.exempt_name(name) and bare.shape_ok(value)


def _dns_values(value: bytes, doh: bool) -> list[bytes]:
    if doh:
        message = dnsnames.doh_query(value)
        if message is not None:
            return [message] + _names(message)
    return [dnsnames.joined(value)] if dnsnames.is_name(value) else []


def _names(message: bytes) -> list[bytes]:
    """A DNS message's question names, dotted and with their labels joined."""
    return [v for name in dnsnames.question_names(message) for v in (name, dnsnames.joined(name))]


def _multipart(out: Built, body: bytes, boundary: str, location: str, depth: int) -> None:
    try:
        parts = bodies.multipart_parts(body, boundary)
    except BodyError as exc:
        out.issues.append(ScanIssue(exc.code, exc.detail))
        out.view.add(Part([body], [location]))
        return
    for part in parts:
        loc = f"{location}:multipart:{safe_name(part.name)}"
        if depth + 1 > MAX_MULTIPART_DEPTH and part.content_type.lower().startswith("multipart/"):
            out.issues.append(ScanIssue("malformed-multipart", "multipart nested too deep"))
            out.view.add(Part([part.body], [loc]))
            continue
        _content(out, part.body, part.content_type, loc, depth + 1)
