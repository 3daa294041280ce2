"""Is a pattern match a real secret? Checks on small candidates only (a few hundred bytes).

detect-secrets supplies the entropy function (its base64-charset Shannon entropy)
and its regex-free heuristics (sequential strings, templated values). Its
regex-based filters are not used: no backtracking regex runs on request data.
"""

from __future__ import annotations

from detect_secrets.filters.heuristic import is_sequential_string, is_templated_secret
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

_ENTROPY = Base64HighEntropyString()

# Documentation and placeholder markers: a real credential never contains them.
_PLACEHOLDERS = (
    "example", "xxxxxx", "XXXXXX", "******", "your_", "your-", "yourkey", "<", ">", "${", "{{", "%(",
    "changeme", "placeholder", "redacted", "dummy", "sample", "foobar", "REPLACE", "replace_me",
)
_WEAK_PASSWORDS = frozenset(
    {"password", "pass", "passwd", "secret", "pwd", "user", "admin", "root", "test", "changeme",
     "postgres", "mysql", "redis", "guest", "pw", "p4ssw0rd", "letmein", "***", "..."}
)


def entropy(value: str) -> float:
    return _ENTROPY.calculate_shannon_entropy(value)


def looks_like_placeholder(value: str) -> bool:
    low = value.lower()
    return any(p.lower() in low for p in _PLACEHOLDERS) or is_sequential_string(value)


def _char_classes(value: str) -> int:
    return sum((any(c.islower() for c in value), any(c.isupper() for c in value),
                any(c.isdigit() for c in value), any(not c.isalnum() for c in value)))


def _looks_like_code(value: str) -> bool:
    """Identifiers, dotted names, calls and paths that keyword rules meet in source code."""
    if value.startswith(("$", "process.env", "os.environ", "env.", "config.", "self.", "this.", "/", "./", "http")):
        return True
    if any(c in value for c in "()[]{}"):
        return True
    core = value.replace("_", "").replace(".", "").replace("-", "")
    return core.isalpha() and (value.islower() or value.isupper() or "_" in value or "." in value)


def is_secret(rule_id: str, value: str, *, keyword: bool, min_entropy: float) -> bool:
    if not value or looks_like_placeholder(value):
        return False
    if rule_id == "database-url-password":
        return value.lower() not in _WEAK_PASSWORDS and not is_templated_secret(value)
    if keyword:
        if is_templated_secret(value) or _looks_like_code(value):
            return False
        if rule_id == "generic-keyword-secret" and _char_classes(value) < 2:
            return False
    return min_entropy <= 0 or entropy(value) >= min_entropy


def keyword_value_ok(value: str) -> bool:
    """A structured value under a secret-ish key (JSON key, header, form field)."""
    if not 10 <= len(value) <= 256 or any(c.isspace() for c in value):
        return False
    return is_secret("generic-keyword-secret", value, keyword=True, min_entropy=3.2)


SECRET_KEY_WORDS = (
    "password", "passwd", "secret", "api_key", "apikey", "api-key", "access_token", "accesstoken",
    "auth_token", "authtoken", "refresh_token", "private_key", "privatekey", "client_secret",
    "credential", "session_token", "bearer_token", "api_token", "apitoken", "x-api-key", "auth_key",
)


def is_secret_key_name(key: str) -> bool:
    low = key.lower()
    return any(w in low for w in SECRET_KEY_WORDS)


_KEY_CACHE: dict[str, bool] = {}


def is_secret_key_name_cached(key: str) -> bool:
    """is_secret_key_name, remembered: requests repeat the same few keys (`type`, `text`, `role`...)."""
    hit = _KEY_CACHE.get(key)
    if hit is None:
        hit = is_secret_key_name(key)
        if len(_KEY_CACHE) < 50_000:
            _KEY_CACHE[key] = hit
    return hit
