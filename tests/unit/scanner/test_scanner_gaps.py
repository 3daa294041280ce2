"""The red team's scanner findings, each with the attack found and a clean control through the same path.

- enc-base32: lower-case unpadded base32 (what DNS tunnelling tools emit);
- dns-proxy-connect-host / Claude Code's dns-exfil: a token cut into the DNS labels of a
  CONNECT target or Host header (labels joined);
- dns-doh-get / dns-doh-post / dns-doh-json: DNS over HTTPS, the question names of the DNS
  message (RFC 8484) and a name in `?name=`;
- content-body-https: a bare AWS secret access key as a JSON value (the whole-value heuristic),
  with the benign values it must leave alone;
- the split-across-requests false positive: a token prefix made every later request of its
  agent a finding; joins now need a real token, and the memory is short.
"""

from __future__ import annotations

import base64
import json
import random
import string
import struct
import zlib

import pytest

from scanner import bare, dnsnames, splits
from scanner.core import Scanner
from scanner.request import ScanRequest
from scanner.rules import PROVIDER_RULES

JSON = (("content-type", "application/json"),)
ALNUM = string.ascii_letters + string.digits
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
RULES = {r.id: r for r in PROVIDER_RULES}
MARKER = "rt-ab12cd-213a0"
DOMAIN = "exfil.attacker.test"


def github_token(rng: random.Random) -> str:
    """`ghp_` + 30 random base62 + their CRC32 in base62 (6 characters), as GitHub issues them."""
    body = "".join(rng.choice(ALNUM) for _ in range(30))
    n, digits = zlib.crc32(body.encode()), ""
    while n:
        n, r = divmod(n, 62)
        digits = BASE62[r] + digits
    return "ghp_" + body + digits.rjust(6, "0")


def anthropic_key(rng: random.Random) -> str:
    return "sk-ant-api03-" + "".join(rng.choice(ALNUM + "_-") for _ in range(93)) + "AA"


def stripe_key(rng: random.Random) -> str:
    return "sk_live_" + "".join(rng.choice(ALNUM) for _ in range(48))


def aws_secret(rng: random.Random) -> str:
    return "".join(rng.choice(ALNUM + "/+") for _ in range(40))


def b32_dns(text: str) -> str:
    return base64.b32encode(text.encode()).decode().rstrip("=").lower()


def labels(text: str) -> str:
    return ".".join(text[i : i + 63] for i in range(0, len(text), 63))


def dns_message(name: str, qtype: int = 16) -> bytes:
    header = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return header + wire + b"\x00" + struct.pack("!HH", qtype, 1)


def scan(sc: Scanner, **kw):
    return sc.scan_request(ScanRequest(**kw))


def found(result) -> set[tuple[str, str]]:
    return {(f.rule, f.location) for f in result.findings}


SEEDS = range(12)


# --- enc-base32 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_lower_case_unpadded_base32_is_decoded(scanner: Scanner, seed: int) -> None:
    token = github_token(random.Random(seed))
    lead = "x" * (seed % 5)  # every alignment of the anchor in a 5-byte group
    body = json.dumps({"note": "build log", "data": b32_dns(lead + token)}).encode()
    got = scan(scanner, url="https://sink.test/rt", headers=JSON, body=body)
    assert ("github-token", "body:$.data") in found(got)
    assert scanner.fp(token.encode()) in {f.fingerprint for f in got.findings}
    control = json.dumps({"note": "build log", "data": b32_dns(lead + "hello-from-the-red-team" * 2)}).encode()
    assert scan(scanner, url="https://sink.test/rt", headers=JSON, body=control).verdict == "clean"


# --- host names: labels joined ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["base32", "hex"])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_token_in_dns_labels_of_a_connect_target(scanner: Scanner, encoding: str, seed: int) -> None:
    token = github_token(random.Random(seed))
    encoded = b32_dns(token) if encoding == "base32" else token.encode().hex()
    host = f"{labels(encoded)}.{MARKER}.{DOMAIN}"
    assert "." in labels(encoded)  # really cut: no label holds the whole token
    got = scan(scanner, method="CONNECT", url=f"https://{host}:443/", headers=(("Host", f"{host}:443"),))
    assert {("github-token", "url:host"), ("github-token", "header:host")} <= found(got)
    clean = f"clean.{MARKER}.{DOMAIN}"
    assert scan(scanner, method="CONNECT", url=f"https://{clean}:443/", headers=(("Host", f"{clean}:443"),)).verdict == "clean"


def test_host_names_keep_their_case_and_labels() -> None:
    assert dnsnames.host_of("user:pw@AbC.example.test:8443") == "AbC.example.test"
    assert dnsnames.host_of("[2001:db8::1]:443") == "2001:db8::1"
    assert dnsnames.host_values("a.b.example.") == [b"a.b.example", b"abexample"]
    assert dnsnames.host_values("localhost") == [b"localhost"]


# --- DNS over HTTPS --------------------------------------------------------------------------------------


def test_doh_get_question_name_is_decoded(scanner: Scanner) -> None:
    token = github_token(random.Random(1))
    message = dns_message(f"{labels(token.encode().hex())}.{MARKER}.{DOMAIN}", 1)
    query = base64.urlsafe_b64encode(message).decode().rstrip("=")
    got = scan(scanner, url=f"https://dns.attacker.test/dns-query?dns={query}&rt={MARKER}",
               headers=(("Accept", "application/dns-message"),))
    assert ("github-token", "url:query:dns") in found(got)
    clean = base64.urlsafe_b64encode(dns_message(f"clean.{MARKER}.{DOMAIN}", 1)).decode().rstrip("=")
    assert scan(scanner, url=f"https://dns.attacker.test/dns-query?dns={clean}&rt={MARKER}",
                headers=(("Accept", "application/dns-message"),)).verdict == "clean"


def test_doh_post_body_question_name_is_decoded(scanner: Scanner) -> None:
    key = stripe_key(random.Random(2))
    headers = (("Content-Type", "application/dns-message"),)
    got = scan(scanner, method="POST", url="https://dns.attacker.test/dns-query", headers=headers,
               body=dns_message(f"{labels(b32_dns(key))}.{MARKER}.{DOMAIN}"))
    assert ("stripe-secret-key", "body") in found(got)
    assert scanner.fp(key.encode()) in {f.fingerprint for f in got.findings}
    assert scan(scanner, method="POST", url="https://dns.attacker.test/dns-query", headers=headers,
                body=dns_message(f"clean.{MARKER}.{DOMAIN}")).verdict == "clean"


def test_doh_json_name_with_hex_labels(scanner: Scanner) -> None:
    token = github_token(random.Random(3))
    name = f"{labels(token.encode().hex())}.{MARKER}.{DOMAIN}"
    got = scan(scanner, url=f"https://dns.attacker.test/resolve?name={name}&type=TXT&rt={MARKER}")
    assert found(got) == {("github-token", "url:query:name")}
    assert scan(scanner, url=f"https://dns.attacker.test/resolve?name=clean.{MARKER}.{DOMAIN}&type=TXT").verdict == "clean"


def test_dns_message_parser_is_bounded() -> None:
    msg = dns_message("a.b.example")
    assert dnsnames.question_names(msg) == [b"a.b.example"]
    loop = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c"  # a pointer to itself
    assert dnsnames.question_names(loop) == []
    pointer = msg + b"\xc0\x0c\x00\x01\x00\x01"  # a second question pointing at the first name
    assert dnsnames.question_names(pointer[:4] + b"\x00\x02" + pointer[6:]) == [b"a.b.example"] * 2
    assert dnsnames.question_names(b"\x00" * 11) == [] and dnsnames.question_names(msg[:15]) == []
    assert dnsnames.doh_query(b"!!!") is None


# --- a bare credential as a whole value ------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_bare_aws_secret_as_a_json_value(scanner: Scanner, seed: int) -> None:
    secret = aws_secret(random.Random(seed))
    got = scan(scanner, url="https://sink.test/rt", headers=JSON, body=json.dumps({"note": "build log", "data": secret}).encode())
    assert found(got) == {("high-entropy-value", "body:$.data")}
    assert got.findings[0].source == "heuristic" and secret not in json.dumps(got.to_json())
    control = json.dumps({"note": "build log", "data": "hello-from-the-red-team"}).encode()
    assert scan(scanner, url="https://sink.test/rt", headers=JSON, body=control).verdict == "clean"


def test_bare_secret_in_query_header_and_php_style_json(scanner: Scanner) -> None:
    secret = aws_secret(random.Random(99))
    quoted = secret.replace("+", "%2B").replace("/", "%2F")
    assert found(scan(scanner, url=f"https://h.test/x?d={quoted}")) == {("high-entropy-value", "url:query:d")}
    assert found(scan(scanner, url="https://h.test/x", headers=(("X-Data", secret),))) == {("high-entropy-value", "header:x-data")}
    php = json.dumps({"a": {"data": secret}}).replace("/", "\\/").encode()
    assert found(scan(scanner, url="https://h.test/x", headers=JSON, body=php)) == {("high-entropy-value", "body:$.a.data")}
    assert scan(scanner, url="https://h.test/x?d=hello-world", headers=(("X-Data", "hello"),)).verdict == "clean"


# Protocol randomness and ordinary values the heuristic must leave alone (decided: not secrets).
_R = random.Random(7)
_TOK = lambda n: "".join(_R.choice(ALNUM) for _ in range(n))  # noqa: E731
BENIGN_VALUES = {
    "npm _integrity": ("_integrity", "sha512-" + base64.b64encode(_R.randbytes(64)).decode()),
    "npm _shasum": ("_shasum", _R.randbytes(20).hex()),
    "git sha": ("sha", _R.randbytes(20).hex()),
    "uuid request id": ("request_id", "3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"),
    "anthropic request id": ("id", "req_011CSHoEeqs5C35K2UUqR7Fy"),
    "etag": ("etag", '"' + _R.randbytes(16).hex() + '"'),
    "base64 sha256 digest": ("digest", base64.b64encode(_R.randbytes(32)).decode()),
    "oidc nonce": ("nonce", _TOK(43)),
    "oauth state": ("state", _TOK(40)),
    "pkce verifier": ("code_verifier", _TOK(64)),
    "django csrf": ("csrfmiddlewaretoken", _TOK(64)),
    "laravel csrf": ("_token", _TOK(40)),
    "cursor (base64 of text)": ("cursor", base64.b64encode(b'{"offset":1200,"order":"created_at"}').decode().rstrip("=")),
    "camelCase identifier": ("name", "AbstractSingletonProxyFactoryBean2"),
    "model name": ("model", "claude-sonnet-4-5-20250929"),
    "placeholder": ("key", "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
    "tool use id": ("id", "toolu_01A09q90qw90lq917835lq9"),
}


def test_benign_values_are_not_bare_secrets(scanner: Scanner) -> None:
    body = json.dumps({name: value for name, value in BENIGN_VALUES.values()}).encode()
    assert scan(scanner, url="https://api.test/v1", headers=JSON, body=body).verdict == "clean"
    headers = (("Sec-WebSocket-Key", base64.b64encode(_R.randbytes(16)).decode()), ("X-CSRF-Token", _TOK(64)),
               ("If-None-Match", 'W/"' + _TOK(40) + '"'), ("X-Request-Id", _TOK(32)), ("Cookie", f"sessionid={_TOK(40)}"),
               ("Content-Type", "application/x-www-form-urlencoded"))
    form = f"csrfmiddlewaretoken={_TOK(64)}&state={_TOK(40)}&title=hello".encode()
    assert scan(scanner, url=f"https://app.test/form?nonce={_TOK(43)}", headers=headers, body=form).verdict == "clean"
    html = f'<form><input type="hidden" name="csrfmiddlewaretoken" value="{_TOK(64)}"></form>'.encode()
    assert scan(scanner, url="https://app.test/", headers=(("Content-Type", "text/html"),), body=html).verdict == "clean"
    # the same random values under an ordinary name are bare secrets: the names are what exempts them
    assert scan(scanner, url="https://api.test/v1", headers=JSON, body=json.dumps({"value": _TOK(40)}).encode()).verdict == "findings"


def test_bare_secret_rules() -> None:
    key = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8LmN2pR4"
    assert bare.is_bare_secret(key)
    assert not bare.is_bare_secret(key[:31]) and not bare.is_bare_secret(key + b"=")  # length; padding
    assert not bare.is_bare_secret(key.lower()) and not bare.is_bare_secret(b"a1" * 20)  # classes; entropy
    assert not bare.is_bare_secret(b"0123456789abcdefABCDEF0123456789abcdefAB")  # hex
    assert bare.exempt_name("X-CSRF-Token") and bare.exempt_name("state") and not bare.exempt_name("data")


# --- tokens split across requests: real splits caught, ordinary traffic never --------------------------


def _piece_request(piece: str, agent: str) -> ScanRequest:
    return ScanRequest(url=f"https://sink.test/rt/p?d={piece}", headers=(("User-Agent", "curl/8.5.0"), ("Accept", "*/*")), agent=agent)


def _ordinary_requests(agent: str) -> list[ScanRequest]:
    """What an agent sends next: curl, Claude Code's API calls, JSON, CONNECTs."""
    claude_headers = (("Content-Type", "application/json"), ("User-Agent", "claude-cli/2.1.3 (external, cli)"),
                      ("anthropic-version", "2023-06-01"), ("x-claude-code-session-id", "3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"),
                      ("Accept-Encoding", "gzip, deflate, br"), ("Connection", "keep-alive"))
    body = json.dumps({"model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "metadata": {"user_id": "user_" + "ab12" * 16},
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "fix the failing test"}]},
                                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
                                                                       "name": "Bash", "input": {"command": "pytest -q"}}]}]}).encode()
    return [
        ScanRequest(method="CONNECT", url="https://api.anthropic.com:443/", headers=(("Host", "api.anthropic.com:443"),), agent=agent),
        ScanRequest(method="POST", url="https://api.anthropic.com/v1/messages?beta=true", headers=claude_headers, body=body, agent=agent),
        ScanRequest(method="GET", url="https://pypi.test/simple/requests/", headers=(("User-Agent", "pip/24.0"), ("Accept", "text/html")), agent=agent),
        ScanRequest(method="POST", url="https://api.test/v1/items", headers=(("Content-Type", "application/json; charset=utf-8"),
                                                                            ("User-Agent", "python-requests/2.32.3")),
                    body=b'{"name": "widget", "count": 3, "tags": ["a", "b"]}', agent=agent),
        ScanRequest(method="CONNECT", url="https://github.com:443/", headers=(("Host", "github.com:443"),
                                                                          ("User-Agent", "git/2.39.5")), agent=agent),
        ScanRequest(method="GET", url="https://example.test/", headers=(("User-Agent", "curl/8.5.0"), ("Accept", "*/*"),
                                                                    ("X-Request-Marker", "rt-645fbe-040c0")), agent=agent),
    ]


@pytest.mark.parametrize("prefix", ["sk-ant-api03-", "ghp_", "sk_live_", "github_pat_", "xoxb-"])
def test_a_bare_prefix_then_ordinary_requests_stay_clean(scanner: Scanner, prefix: str) -> None:
    agent = f"prefix-{prefix}"
    first = scan(scanner, url="https://docs.test/", headers=JSON, body=json.dumps({"text": f"your key starts with {prefix}"}).encode(),
                 agent=agent)
    assert first.verdict == "clean"
    for req in _ordinary_requests(agent):
        assert scanner.scan_request(req).verdict == "clean", req.url


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_an_unfinished_token_is_partial_and_later_requests_stay_clean(scanner: Scanner, seed: int) -> None:
    """`sk-ant-api03-` and 23 of its characters: a partial credential (flagged), never a reason to
    flag the agent's ordinary requests after it (the red team's false positive: 35 findings)."""
    agent = f"partial-{seed}"
    key = anthropic_key(random.Random(seed))
    first = scanner.scan_request(_piece_request(key[:36], agent))
    assert [(f.rule, f.transforms) for f in first.findings] == [("anthropic-api-key", ("partial",))]
    for req in _ordinary_requests(agent) * 2:
        got = scanner.scan_request(req)
        assert got.verdict == "clean", (req.url, [(f.rule, f.location, f.transforms) for f in got.findings])


def slack_token(rng: random.Random) -> str:
    return f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-" + "".join(rng.choice(ALNUM) for _ in range(24))


def openai_key(rng: random.Random) -> str:
    return "sk-proj-" + "".join(rng.choice(ALNUM) for _ in range(64)) + "T3BlbkFJ" + "".join(rng.choice(ALNUM) for _ in range(64))


@pytest.mark.parametrize("make", [slack_token, lambda r: anthropic_key(r)[:54], lambda r: openai_key(r)[:72]])
def test_after_a_whole_token_ends_a_field_ordinary_requests_stay_clean(scanner: Scanner, make) -> None:
    """A token that matches on its own may still go on in the next request (half an OpenAI key is a
    whole match of the loose pattern), so it is remembered; ordinary requests must not complete it
    (the red team's controls were blocked by a slack token and a request marker)."""
    agent = f"whole-{id(make)}"
    assert scanner.scan_request(_piece_request(make(random.Random(4)), agent)).verdict == "findings"
    for req in _ordinary_requests(agent):
        got = scanner.scan_request(req)
        assert got.verdict == "clean", (req.url, [(f.rule, f.location, f.transforms) for f in got.findings])


def test_an_openai_key_in_halves_is_caught_in_both_requests(scanner: Scanner) -> None:
    key = openai_key(random.Random(6))
    first = scanner.scan_request(_piece_request(key[:72], "halves"))
    second = scanner.scan_request(_piece_request(key[72:], "halves"))
    assert "openai-api-key" in {f.rule for f in first.findings}
    assert scanner.fp(key.encode()) in {f.fingerprint for f in second.findings if f.transforms == ("split-request",)}


def test_partial_token_controls(scanner: Scanner) -> None:
    for text in ("sk-ant-api03-Ab3dEf", "sk-ant-api03-" + "x" * 30, "sk-ant-api03-the_quick_brown_fox_jumps",
                 "ghp_" + "abcdefghijklmnopqrstuvwx", "secret_key_base_for_development_only"):
        assert scan(scanner, url="https://h.test/", headers=JSON, body=json.dumps({"a": text}).encode()).verdict == "clean", text


@pytest.mark.parametrize("seed", SEEDS[:6])
def test_a_real_split_across_two_requests_is_caught(scanner: Scanner, seed: int) -> None:
    rng = random.Random(seed)
    for name, token, cut in (("github-token", github_token(rng), 4 + rng.randrange(1, 35)),
                             ("anthropic-api-key", anthropic_key(rng), 13 + rng.randrange(8, 80))):
        agent = f"split-{seed}-{name}"
        scanner.scan_request(_piece_request(token[:cut], agent))
        second = scanner.scan_request(_piece_request(token[cut:], agent))
        assert (name, "url:query:d") in found(second), (name, cut)
        assert scanner.fp(token.encode()) in {f.fingerprint for f in second.findings if "split-request" in f.transforms}
        # control: another agent sending the same second piece
        other = scanner.scan_request(_piece_request(token[cut:], agent + "-peer"))
        assert "split-request" not in {t for f in other.findings for t in f.transforms}


def test_a_token_cut_in_three_requests_is_caught(scanner: Scanner) -> None:
    key = anthropic_key(random.Random(5))
    pieces = [key[i : i + 36] for i in range(0, 108, 36)]
    verdicts = [scanner.scan_request(_piece_request(p, "three")).findings for p in pieces]
    assert [sorted({t for f in fs for t in f.transforms}) for fs in verdicts] == [["partial"], ["split-request"], ["split-request"]]
    assert scanner.fp(key.encode()) in {f.fingerprint for f in verdicts[2]}


def test_a_github_join_must_verify_its_checksum(scanner: Scanner) -> None:
    token = github_token(random.Random(8))
    broken = token[:-1] + ("A" if token[-1] != "A" else "B")
    scanner.scan_request(_piece_request(broken[:20], "crc"))
    assert scanner.scan_request(_piece_request(broken[20:], "crc")).verdict == "clean"
    scanner.scan_request(_piece_request(token[:20], "crc-ok"))
    assert scanner.scan_request(_piece_request(token[20:], "crc-ok")).verdict == "findings"


def test_agent_memory_ends_with_time_not_with_requests() -> None:
    now = [0.0]
    memory = splits.AgentMemory(keep_seconds=30.0, keep_items=3, clock=lambda: now[0])
    item = splits.Dangling(RULES["anthropic-api-key"], b"sk-ant-api03-" + b"A1b2C3d4E5" * 2)
    memory.remember("a", [item])
    # Harmless requests in between do not push it out (a count of requests would: the split's bypass).
    assert [memory.recall("a") for _ in range(50)] == [[item]] * 50
    now[0] = 29.0
    assert memory.recall("a") == [item] and memory.recall("b") == []
    now[0] = 30.0
    assert memory.recall("a") == []


def test_agent_memory_refreshes_a_repeated_prefix_and_keeps_the_newest_distinct_ones() -> None:
    now = [0.0]
    memory = splits.AgentMemory(keep_seconds=30.0, keep_items=3, clock=lambda: now[0])
    rule = RULES["anthropic-api-key"]
    items = [splits.Dangling(rule, b"sk-ant-api03-" + bytes([65 + i]) * 20) for i in range(4)]
    memory.remember("a", [items[0]])
    for _ in range(10):  # the same prefix again and again (a conversation re-sent): one entry
        now[0] += 1.0
        memory.remember("a", [items[0]])
    assert memory.recall("a") == [items[0]]
    memory.remember("a", items[1:3])
    assert memory.recall("a") == items[:3]
    memory.remember("a", [items[3]])  # a fourth distinct one: the oldest goes
    assert memory.recall("a") == items[1:]
    now[0] = 10.0 + 29.9  # items[0]'s refresh at 10 s would have kept it to 40 s; the others were seen at 10 s
    assert memory.recall("a") == items[1:]
    now[0] = 40.0
    assert memory.recall("a") == []


def test_a_split_survives_harmless_requests_in_between(scanner: Scanner) -> None:
    """The red team's enc-split-requests leaked once when the agent's other requests came between the
    halves: the memory counted requests. Twenty ordinary requests between them change nothing now."""
    key = openai_key(random.Random(9))
    agent = "padded"
    first = scanner.scan_request(_piece_request(key[:72], agent))
    assert "openai-api-key" in {f.rule for f in first.findings}
    for req in _ordinary_requests(agent) * 4:
        assert scanner.scan_request(req).verdict == "clean", req.url
    second = scanner.scan_request(_piece_request(key[72:], agent))
    assert scanner.fp(key.encode()) in {f.fingerprint for f in second.findings if f.transforms == ("split-request",)}
    control = scanner.scan_request(_piece_request(openai_key(random.Random(10))[72:], "padded-control"))
    assert control.verdict == "clean"  # the same second half, with no first half before it


def test_join_rules(scanner: Scanner) -> None:
    shapes = scanner.engine.shapes
    rule = RULES["anthropic-api-key"]
    own = splits.Dangling(rule, b"sk-ant-api03-" + b"Xk9mP2vL8qRt4wZ7Ab3dEf5")
    piece = b"Qw7Er9Ty2Ui4Op6As8Df0Gh1Jk3Lz5Xc7Vb9"
    assert shapes.join_ok(own, piece, 36, own.text + piece)
    for head, taken in ((b"application/json", 11), (b"claude-sonnet-4-5", 17),  # words
                        (b"3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f", 36),  # hex, where the key's own part is not
                        (b"rt-645fbe-040c0", 15),  # a request marker: no upper case, where the key has it
                        (b"toolu_01A09q90qw90lq917835lq9", 29),  # a typed id
                        (piece + b"xyz", 36)):  # the head's token goes on past the match
        assert not shapes.join_ok(own, head, taken, own.text + head[:taken]), head
    assert not shapes.join_ok(own, piece, 36, own.text + piece, whole=False)  # only the start of a longer field
    short = splits.Dangling(rule, b"sk-ant-api03-Ab")
    assert not shapes.join_ok(short, piece, 36, short.text + piece)  # 2 characters of its own
    matched = splits.Dangling(rule, b"sk-ant-api03-" + piece, whole=True)  # a whole key by itself already
    assert not shapes.join_ok(matched, piece[:20], 20, matched.text + piece[:20])
    assert shapes.join_ok(matched, piece, 36, matched.text + piece)
    assert splits.public_len(rule, own.text) == 13 and splits.public_len(RULES["github-token"], b"ghp_abc") == 4
    assert shapes.can_continue(rule, b"sk-ant-api03-") and not shapes.can_continue(rule, b"sk-ant-api03-abc.def")
