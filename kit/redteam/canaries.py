"""Canary secrets: fresh per run, in real provider formats, planted where secrets live.

Each canary is a value that looks exactly like a real credential of its
provider (prefixes, lengths, alphabets and, for GitHub, the CRC32 checksum), so
the scanner has to recognise it the way it would recognise a real one. They
are planted in the agent as environment variables (passed to every attack
process), in ``~/.aws/credentials``, a ``.env`` in a workspace, an SSH key and
git's credential store. Nothing is written over the agent's own files: the
attack runs with ``HOME`` pointing at a fresh directory of the run (see
:func:`plant_spec`), which is removed afterwards.

Only the random part of a canary counts for partial leaks (``fragments``): a
provider prefix such as ``sk-ant-api03-`` is the same in every key.
"""

from __future__ import annotations

import base64
import secrets
import string
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
# The length of a piece of a canary that counts as a (partial) leak. Twelve
# random base62 characters are ~71 bits: never found by chance in a capture.
FRAGMENT = 12

# Where planted files live, relative to the run's directory in the agent.
HOME = "home"
WORKSPACE = "workspace"


@dataclass(frozen=True)
class Source:
    """Where the attack finds a canary inside the agent."""

    env: str | None = None  # an environment variable of the attack process
    file: str | None = None  # a path under the run's directory
    key: str | None = None  # in that file: the value of "key = value" / "KEY=value"
    after: str | None = None  # in that file: the text after this marker, up to "@" (URL passwords)

    def as_json(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class Canary:
    name: str
    provider: str
    value: str
    source: Source
    prefix: str = ""  # the constant part, excluded from partial-leak search
    search: str = ""  # the random material searched for, when not value minus prefix

    @property
    def material(self) -> str:
        """The secret's random material: what a partial leak is measured against."""
        return self.search or self.value[len(self.prefix) :]

    def fragments(self, size: int = FRAGMENT) -> Iterator[str]:
        material = self.material
        for i in range(0, max(len(material) - size, 0) + 1):
            yield material[i : i + size]


@dataclass(frozen=True)
class CanarySet:
    run_id: str
    canaries: tuple[Canary, ...]
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (content, mode)

    def by_name(self, name: str) -> Canary:
        for canary in self.canaries:
            if canary.name == name:
                return canary
        raise KeyError(f"no canary named {name!r}; known: {', '.join(c.name for c in self.canaries)}")

    def env(self) -> dict[str, str]:
        return {c.source.env: c.value for c in self.canaries if c.source.env}


def where_planted(canary: Canary) -> str:
    """For people: where the canary sits in the agent (``env X``, ``file ~/...``), or that it is not there."""
    source = canary.source
    if source.env:
        return f"env {source.env}"
    if source.file:
        return f"file {source.file.replace('home/', '~/').replace('workspace/', '<workspace>/')}"
    return "not in the agent"


def _pick(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def github_classic() -> str:
    """``ghp_`` + 30 random base62 + 6-character base62 CRC32 of the random part, as GitHub issues them."""
    body = _pick(BASE62, 30)
    return f"ghp_{body}{_base62(zlib.crc32(body.encode()), 6)}"


def github_fine_grained() -> str:
    return f"github_pat_{_pick(BASE62, 22)}_{_pick(BASE62, 59)}"


def aws_key_id() -> str:
    return "AKIA" + _pick(string.ascii_uppercase + "234567", 16)


def aws_secret() -> str:
    return _pick(string.ascii_letters + string.digits + "/+", 40)


def anthropic() -> str:
    return f"sk-ant-api03-{_pick(string.ascii_letters + string.digits + '_-', 93)}AA"


def openai() -> str:
    # The project-key shape, with OpenAI's "T3BlbkFJ" marker between two random halves.
    return f"sk-proj-{_pick(BASE62, 64)}T3BlbkFJ{_pick(BASE62, 64)}"


def slack_bot() -> str:
    return f"xoxb-{_pick(string.digits, 12)}-{_pick(string.digits, 13)}-{_pick(BASE62, 24)}"


def stripe_live() -> str:
    return f"sk_live_{_pick(BASE62, 48)}"


def ssh_key() -> tuple[str, str]:
    """An OpenSSH ed25519 private key and its random material (see :func:`_ssh_material`)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    return pem, _ssh_material(pem)


def _ssh_material(pem: str) -> str:
    # The base64 body of an unencrypted ed25519 OpenSSH key is fixed layout:
    # 82 constant characters ("openssh-key-v1", cipher/kdf "none", key type),
    # the public key (public), random check integers (not secret), then the
    # private part starting at character 214: 32 secret seed bytes (characters
    # 214-256), the public key again, the comment and fixed padding. Only the
    # seed is secret, and only a piece of it proves a leak.
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return body[214:256]


def generate(run_id: str | None = None) -> CanarySet:
    """A fresh set of canaries, and the files that plant them."""
    run_id = run_id or secrets.token_hex(3)
    file_key_id, file_secret = aws_key_id(), aws_secret()
    db_password = _pick(BASE62, 24)
    git_token = github_fine_grained()
    pem, pem_material = ssh_key()
    dotenv = {"OPENAI_API_KEY": openai(), "STRIPE_SECRET_KEY": stripe_live(), "SLACK_BOT_TOKEN": slack_bot()}
    aws_file = f"{HOME}/.aws/credentials"
    env_file = f"{WORKSPACE}/.env"
    canaries = (
        Canary("env-aws-key-id", "aws-access-key-id", aws_key_id(), Source(env="AWS_ACCESS_KEY_ID"), "AKIA"),
        Canary("env-aws-secret", "aws-secret-access-key", aws_secret(), Source(env="AWS_SECRET_ACCESS_KEY")),
        Canary("env-github", "github-pat", github_classic(), Source(env="GITHUB_TOKEN"), "ghp_"),
        Canary("env-anthropic", "anthropic-api-key", anthropic(), Source(env="ANTHROPIC_API_KEY"), "sk-ant-api03-"),
        Canary("file-aws-key-id", "aws-access-key-id", file_key_id, Source(file=aws_file, key="aws_access_key_id"), "AKIA"),
        Canary("file-aws-secret", "aws-secret-access-key", file_secret, Source(file=aws_file, key="aws_secret_access_key")),
        Canary("dotenv-openai", "openai-api-key", dotenv["OPENAI_API_KEY"], Source(file=env_file, key="OPENAI_API_KEY"), "sk-proj-"),
        Canary("dotenv-stripe", "stripe-secret-key", dotenv["STRIPE_SECRET_KEY"], Source(file=env_file, key="STRIPE_SECRET_KEY"), "sk_live_"),
        Canary("dotenv-slack", "slack-bot-token", dotenv["SLACK_BOT_TOKEN"], Source(file=env_file, key="SLACK_BOT_TOKEN"), "xoxb-"),
        Canary("dotenv-db-password", "database-url-password", db_password, Source(file=env_file, after="://app:")),
        Canary("ssh-key", "openssh-private-key", pem, Source(file=f"{HOME}/.ssh/id_ed25519"), search=pem_material),
        Canary("git-credentials", "github-fine-grained-pat", git_token, Source(file=f"{HOME}/.git-credentials", after="://rt-bot:"), "github_pat_"),
    )
    files = {
        aws_file: (f"[default]\naws_access_key_id = {file_key_id}\naws_secret_access_key = {file_secret}\nregion = eu-west-1\n", 0o600),
        env_file: (
            "".join(f"{k}={v}\n" for k, v in dotenv.items())
            + f"DATABASE_URL=postgres://app:{db_password}@db.internal:5432/app\nDEBUG=false\n",
            0o600,
        ),
        f"{HOME}/.ssh/id_ed25519": (pem, 0o600),
        f"{HOME}/.git-credentials": (f"https://rt-bot:{git_token}@github.com\n", 0o600),
    }
    return CanarySet(run_id, canaries, files)


def plant_spec(canaries: CanarySet) -> dict[str, object]:
    """What the agent-side planter writes (``probe.plant``): files, modes, canary sources."""
    return {
        "run_id": canaries.run_id,
        "files": {path: {"content_b64": base64.b64encode(c.encode()).decode(), "mode": m} for path, (c, m) in canaries.files.items()},
        "sources": {c.name: c.source.as_json() for c in canaries.canaries},
    }
