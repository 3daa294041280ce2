"""Provider rules: what a secret looks like, and the anchors that find it encoded.

Every pattern must compile in both hyperscan (the one pass over the whole input)
and RE2 (exact extraction on a bounded window ending where hyperscan reported a
match): both are linear-time automata, so no rule can backtrack on hostile input.
A pattern may hold one capturing group: the secret; otherwise the whole match is.

`anchors` are literals present in every match (usually the token's fixed prefix).
Their base64 / base32 / hex / percent / \\u-escaped / reversed forms go into the
same hyperscan database, so an encoded secret costs one literal hit and a small
window decode, while a clean body costs nothing beyond the single pass.
`expand` lengthens short anchors by one following character class, so their
encoded forms are long enough not to fire on random base64 data.
"""

from __future__ import annotations

from dataclasses import dataclass

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
HEX_LOWER = "0123456789abcdef"
UPPER_DIGIT = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# Glue a keyword rule accepts between the keyword and its value: quotes (also
# JSON-escaped ones, as in nested JSON), spaces and an assignment operator.
_Q = r"""[\\"'`]{0,4}"""
ASSIGN = _Q + r"[ \t]{0,4}(?::=|=>|=|:)[ \t]{0,4}" + _Q


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    pattern: str
    anchors: tuple[str, ...] = ()
    expand: str = ""
    prefix: bool = True  # the anchor starts the secret (split-prefix joining applies)
    max_len: int = 256  # longest possible match: bounds the RE2 extraction window
    min_entropy: float = 3.0  # of the secret, bits/char, detect-secrets' base64 charset
    keyword: bool = False  # keyword-context rule: value also passes placeholder checks
    context: str = ""  # keyword rules: the regex of the keyword (raw JSON trigger, scanner/jsontriggers.py)
    public: str = ""  # regex of the part every token of the provider shares, when longer than the anchor
    checksum: str = ""  # the token format's checksum, verified on joined tokens (scanner/splits.py)
    source: str = "pattern"
    description: str = ""


def _kw(*words: str) -> tuple[str, ...]:
    """Case variants of keyword anchors (lower, UPPER), as they appear in config files."""
    out: list[str] = []
    for w in words:
        out += [w.lower(), w.upper()]
    return tuple(dict.fromkeys(out))


# Keywords of the keyword rules: part of each pattern, and a raw JSON trigger on their own.
_AWS = r"aws_?secret_?(?:access_?)?key"
_AZURE = r"azure[a-z_]{0,30}key"
_DB_SCHEMES = r"(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|cockroachdb)://"
_DATADOG = r"(?:dd|datadog)_?(?:api|app)_?key"
_HEROKU = r"heroku[a-z_]{0,20}"
_CLOUDFLARE = r"(?:cloudflare|cf)_?api_?(?:token|key)"

PROVIDER_RULES: tuple[Rule, ...] = (
    Rule("anthropic-api-key", r"sk-ant-[a-z]{3,8}[0-9]{2}-[A-Za-z0-9_-]{32,120}", ("sk-ant-",), max_len=140,
         public=r"sk-ant-[a-z]{3,8}[0-9]{2}-"),
    Rule("openai-api-key", r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}", ("sk-proj-", "sk-svcacct-", "sk-admin-"), max_len=220),
    Rule("openai-legacy-key", r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}", ("T3BlbkFJ",), prefix=False, max_len=60),
    Rule("aws-access-key-id", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}", ("AKIA", "ASIA", "ABIA", "ACCA"), expand="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", max_len=20, min_entropy=2.5),
    Rule("aws-secret-access-key", r"(?i)" + _AWS + ASSIGN + r"([A-Za-z0-9/+]{40})", _kw("aws_secret_access_key", "aws_secret_key"), keyword=True, prefix=False, max_len=120, min_entropy=3.5, context=_AWS),
    Rule("github-token", r"gh[pousr]_[A-Za-z0-9]{36}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), expand=ALNUM, max_len=40,
         checksum="github-crc32"),
    Rule("github-fine-grained-pat", r"github_pat_[A-Za-z0-9_]{82}", ("github_pat_",), max_len=93),
    Rule("gitlab-token", r"gl(?:pat|dt|rt|cbt|ptt|soat|oas|ft|imt|agent)-[A-Za-z0-9_-]{20,64}", ("glpat-", "gldt-", "glrt-", "glcbt-", "glptt-", "glsoat-", "gloas-", "glft-", "glimt-", "glagent-"), max_len=75),
    Rule("gitlab-runner-registration-token", r"GR1348941[A-Za-z0-9_-]{20,40}", ("GR1348941",), max_len=50),
    Rule("slack-token", r"xox[abposer]-[0-9A-Za-z-]{10,250}", ("xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxe-", "xoxr-"), max_len=260),
    Rule("slack-app-token", r"xapp-[0-9]-[A-Z0-9]{6,16}-[0-9]{6,16}-[a-f0-9]{32,80}", ("xapp-",), max_len=130),
    Rule("slack-webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{40,60}", ("hooks.slack.com/",), prefix=False, max_len=90),
    Rule("stripe-secret-key", r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24,99}", ("sk_live_", "sk_test_", "rk_live_", "rk_test_"), max_len=110),
    Rule("stripe-webhook-secret", r"whsec_[A-Za-z0-9]{32,64}", ("whsec_",), max_len=70),
    Rule("google-api-key", r"AIza[0-9A-Za-z_-]{35}", ("AIza",), expand=ALNUM + "_-", max_len=39),
    Rule("google-oauth-client-secret", r"GOCSPX-[A-Za-z0-9_-]{28}", ("GOCSPX-",), max_len=35),
    Rule("google-oauth-access-token", r"ya29\.[0-9A-Za-z_-]{30,1000}", ("ya29.",), expand=ALNUM + "_-", max_len=1010),
    Rule("gcp-service-account-key-id", r"private_key_id" + ASSIGN + r"([0-9a-f]{40})", ("private_key_id",), keyword=True, prefix=False, max_len=80, context="private_key_id"),
    Rule("private-key", r"-----BEGIN[ A-Z0-9]{0,25}PRIVATE KEY(?: BLOCK)?-----(?:\s|\\{1,8}[rnt]){0,8}[A-Za-z0-9+/=]{32}", ("-----BEGIN RSA PRIVATE", "-----BEGIN PRIVATE KEY", "-----BEGIN EC PRIVATE", "-----BEGIN OPENSSH PRIVATE", "-----BEGIN DSA PRIVATE", "-----BEGIN PGP PRIVATE", "-----BEGIN ENCRYPTED PRIVATE"), max_len=120, min_entropy=0.0),
    Rule("azure-storage-account-key", r"AccountKey=([A-Za-z0-9+/]{86}==)", ("AccountKey=",), prefix=False, max_len=100),
    Rule("azure-ad-client-secret", r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}", tuple(f"{d}Q~" for d in "0123456789"), expand=ALNUM + "_~.-", prefix=False, max_len=40),
    Rule("azure-key", r"(?i)" + _AZURE + ASSIGN + r"([A-Za-z0-9+/]{32,88}={0,2})", _kw("azure_api_key", "azure_openai_key", "azure_subscription_key", "azure_storage_key", "azure_key"), keyword=True, prefix=False, max_len=160, context=_AZURE),
    Rule("npm-token", r"npm_[A-Za-z0-9]{36}", ("npm_",), expand=ALNUM, max_len=40),
    Rule("pypi-token", r"pypi-AgE[IN][A-Za-z0-9_-]{50,250}", ("pypi-AgEIcHlwaS5vcmc", "pypi-AgENdGVzdC5weXBpLm9yZw"), max_len=260),
    Rule("huggingface-token", r"hf_[A-Za-z]{34}", ("hf_",), expand="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", max_len=37),
    Rule("twilio-account-sid", r"AC[0-9a-f]{32}", ("AC",), expand=HEX_LOWER, prefix=False, max_len=34),
    Rule("twilio-api-key", r"SK[0-9a-fA-F]{32}", ("SK",), expand=HEX_LOWER, prefix=False, max_len=34),
    Rule("sendgrid-api-key", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", ("SG.",), expand=ALNUM + "_-", max_len=69),
    Rule("mailgun-api-key", r"key-[0-9a-f]{32}", ("key-",), expand=HEX_LOWER, prefix=False, max_len=36),
    Rule("mailchimp-api-key", r"[0-9a-f]{32}-us[0-9]{1,2}", tuple(f"-us{d}" for d in "123456789"), prefix=False, max_len=37),
    Rule("shopify-token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", ("shpat_", "shpca_", "shppa_", "shpss_"), max_len=38),
    Rule("digitalocean-token", r"do[opr]_v1_[a-f0-9]{64}", ("dop_v1_", "doo_v1_", "dor_v1_"), max_len=71),
    Rule("discord-webhook", r"discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}", ("/api/webhooks/",), prefix=False, max_len=120),
    Rule("telegram-bot-token", r"[0-9]{8,10}:AA[0-9A-Za-z_-]{33}", (":AA",), expand=ALNUM + "_-", prefix=False, max_len=46),
    Rule("jwt", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}", (".eyJ",), expand=ALNUM + "_-", prefix=False, max_len=4096),
    Rule("database-url-password", _DB_SCHEMES + r"[^\s:/@\"'\\]{1,64}:([^\s/@\"'\\]{3,128})@[A-Za-z0-9.-]{1,253}", ("postgres://", "postgresql://", "mysql://", "mariadb://", "mongodb://", "mongodb+srv://", "redis://", "rediss://", "amqp://", "amqps://", "mssql://", "sqlserver://", "cockroachdb://"), keyword=True, prefix=False, max_len=480, min_entropy=0.0, context=_DB_SCHEMES),
    Rule("atlassian-api-token", r"ATATT3[A-Za-z0-9_=-]{150,200}", ("ATATT3",), max_len=210),
    Rule("datadog-api-key", r"(?i)" + _DATADOG + ASSIGN + r"([a-f0-9]{32,40})", _kw("dd_api_key", "datadog_api_key", "dd_app_key"), keyword=True, prefix=False, max_len=100, context=_DATADOG),
    Rule("heroku-api-key", r"(?i)" + _HEROKU + ASSIGN + r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", _kw("heroku_api_key", "heroku_token"), keyword=True, prefix=False, max_len=100, context=_HEROKU),
    Rule("heroku-api-key-v2", r"HRKU-[A-Za-z0-9_-]{60}", ("HRKU-",), max_len=65),
    Rule("newrelic-key", r"NR(?:AK|II|JS)-[A-Za-z0-9]{27}", ("NRAK-", "NRII-", "NRJS-"), max_len=32),
    Rule("sentry-token", r"sntry[su]_[A-Za-z0-9+/=_]{50,200}", ("sntrys_", "sntryu_"), max_len=210),
    Rule("linear-api-key", r"lin_api_[A-Za-z0-9]{40}", ("lin_api_",), max_len=48),
    Rule("notion-token", r"(?:ntn_[0-9]{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43})", ("ntn_", "secret_"), expand=ALNUM, max_len=50),
    Rule("doppler-token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}", ("dp.pt.", "dp.st.", "dp.sa.", "dp.ct."), max_len=60),
    Rule("vault-token", r"hv[sb]\.[A-Za-z0-9_-]{24,120}", ("hvs.", "hvb."), expand=ALNUM + "_-", max_len=124),
    Rule("terraform-cloud-token", r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}", (".atlasv1.",), prefix=False, max_len=95),
    Rule("pulumi-token", r"pul-[a-f0-9]{40}", ("pul-",), expand=HEX_LOWER, max_len=44),
    Rule("postman-api-key", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}", ("PMAK-",), max_len=64),
    Rule("grafana-token", r"(?:glsa_[A-Za-z0-9]{32}_[a-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,2})", ("glsa_", "glc_"), expand=ALNUM, max_len=410),
    Rule("dynatrace-token", r"dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}", ("dt0c01.",), max_len=96),
    Rule("square-token", r"(?:EAAA|sq0atp-|sq0csp-)[A-Za-z0-9_-]{22,60}", ("sq0atp-", "sq0csp-", "EAAA"), expand=ALNUM + "_-", max_len=68),
    Rule("age-secret-key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", ("AGE-SECRET-KEY-1",), max_len=74),
    Rule("planetscale-token", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=._-]{32,64}", ("pscale_tkn_", "pscale_pw_", "pscale_oauth_"), max_len=80),
    Rule("replicate-token", r"r8_[A-Za-z0-9]{37}", ("r8_",), expand=ALNUM, max_len=40),
    Rule("groq-api-key", r"gsk_[A-Za-z0-9]{52}", ("gsk_",), expand=ALNUM, max_len=56),
    Rule("xai-api-key", r"xai-[A-Za-z0-9]{80}", ("xai-",), expand=ALNUM, max_len=84),
    Rule("perplexity-api-key", r"pplx-[A-Za-z0-9]{48}", ("pplx-",), max_len=53),
    Rule("databricks-token", r"dapi[a-f0-9]{32}(?:-[0-9])?", ("dapi",), expand=HEX_LOWER, max_len=38),
    Rule("cloudflare-api-token", r"(?i)" + _CLOUDFLARE + ASSIGN + r"([A-Za-z0-9_-]{37,40})", _kw("cloudflare_api_token", "cf_api_token", "cloudflare_api_key"), keyword=True, prefix=False, max_len=100, context=_CLOUDFLARE),
    Rule("flyio-token", r"fo1_[A-Za-z0-9_-]{43}", ("fo1_",), expand=ALNUM + "_-", max_len=47),
    Rule("openrouter-api-key", r"sk-or-v1-[a-f0-9]{64}", ("sk-or-v1-",), max_len=73),
    Rule("rubygems-api-key", r"rubygems_[a-f0-9]{48}", ("rubygems_",), max_len=57),
    Rule("docker-hub-pat", r"dckr_pat_[A-Za-z0-9_-]{27}", ("dckr_pat_",), max_len=36),
)

# Keyword + high-entropy value in free text (`password = "..."`, `"api_key": "..."`).
# Candidates are verified with detect-secrets' entropy function and heuristics
# (scanner/verify.py); the keyword list follows detect-secrets' KeywordDetector.
KEYWORD_WORDS = (
    "password", "passwd", "pwd", "secret", "api_key", "apikey", "api-key", "auth_key",
    "access_token", "auth_token", "client_secret", "private_key", "secret_key",
    "db_pass", "database_password", "service_key", "account_key", "credentials",
)
_KEYWORDS = "(?:" + "|".join(w.replace("-", r"\-") for w in KEYWORD_WORDS) + ")"
GENERIC_KEYWORD_RULE = Rule(
    "generic-keyword-secret",
    r"(?i)[a-z0-9_.-]{0,24}" + _KEYWORDS + r"[a-z0-9_.-]{0,24}" + ASSIGN + r"([^\s\"'`\\,;)\]}<>]{10,128})",
    _kw("password", "secret", "api_key", "apikey", "access_token", "auth_token", "client_secret", "secret_key"),
    keyword=True,
    prefix=False,
    max_len=220,
    min_entropy=3.2,
    source="heuristic",
    description="keyword assignment with a high-entropy value",
    context=_KEYWORDS,
)

RULES: tuple[Rule, ...] = PROVIDER_RULES + (GENERIC_KEYWORD_RULE,)
