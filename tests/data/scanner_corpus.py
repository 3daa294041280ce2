"""The scanner's labelled corpus, generated deterministically (nothing large is committed).

- `secret_samples()`: synthetic secrets in every provider format (fixed seeds), each
  placed in a request through each of the eight transforms: plain, base64, hex,
  url-encoded, nested JSON, unicode-escaped, reversed, split.
- `benign_samples()`: ordinary developer traffic that must pass: source code (this
  Python's own standard library), lockfiles with integrity hashes (this repo's uv.lock
  and a generated package-lock.json), git SHAs, UUIDs, base64 images, minified JS,
  and Claude-Code-like Messages API bodies from 10 KB to 2 MB.

Used by tests/unit/scanner/test_scanner_recall.py and by bench/scanner_bench.py.
"""

from __future__ import annotations

import base64
import json
import random
import string
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

TRANSFORMS = ("plain", "base64", "hex", "url-encoded", "nested-json", "unicode-escaped", "reversed", "split")


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
    raise ValueError(transform)


def secret_samples(per_rule: int = 8, seed: int = 20240501) -> Iterator[Sample]:
    for rule, (gen, template) in sorted(FORMATS.items()):
        rng = random.Random(f"{seed}:{rule}")
        for _ in range(per_rule):
            secret = gen(rng)
            context = template.format(s=secret)
            for transform in TRANSFORMS:
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
