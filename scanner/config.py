"""Scanner settings: defaults, an optional strict YAML file, then command-line flags.

Environment variables (read at start, never at import):
  YOLO_CAGE_SCANNER_KEY_FILE     fingerprint HMAC key file (created 0600 if absent)
  YOLO_CAGE_SCANNER_SECRETS_DIR  same as --secrets-dir
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scanner.errors import ConfigError

MiB = 1 << 20


class ScannerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    apiVersion: str = "yolo-cage.dev/v1alpha1"
    kind: str = "ScannerConfig"
    max_body_bytes: int = Field(16 * MiB, gt=0, description="largest wire body scanned; larger is `invalid`")
    max_decoded_bytes: int = Field(64 * MiB, gt=0, description="largest body after Content-Encoding")
    max_ratio: int = Field(200, gt=0, description="largest decompression ratio before a body counts as a bomb")
    max_depth: int = Field(5, ge=1, le=16, description="nested encodings decoded around a hit")
    workers: int = Field(2, ge=1, le=64, description="scans running at once (threads)")
    max_queue: int = Field(256, ge=1, description="scans waiting for a worker before the service answers 503")
    secrets_dir: Path | None = None
    secrets_poll_s: float = Field(2.0, gt=0)
    key_file: Path | None = None
    disabled_rules: tuple[str, ...] = ()
    llm_guard_plugins: bool = True

    @property
    def max_request_bytes(self) -> int:
        """Largest scan request (base64 body + JSON envelope) the service reads."""
        return self.max_body_bytes * 4 // 3 + 4 * MiB


def _pydantic_errors(exc: ValidationError, source: str) -> ConfigError:
    lines = [f"{source}: {len(exc.errors())} error(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        lines.append(f"  {where}: {err['msg']} (got {err.get('input')!r})")
    return ConfigError("\n".join(lines))


def load_config(path: Path | None, overrides: dict[str, object]) -> ScannerConfig:
    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data.update(loaded or {})
    env_key = os.environ.get("YOLO_CAGE_SCANNER_KEY_FILE")
    if env_key and "key_file" not in data:
        data["key_file"] = env_key
    env_dir = os.environ.get("YOLO_CAGE_SCANNER_SECRETS_DIR")
    if env_dir and "secrets_dir" not in data:
        data["secrets_dir"] = env_dir
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = ScannerConfig.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_errors(exc, str(path or "scanner settings")) from None
    if cfg.apiVersion != "yolo-cage.dev/v1alpha1" or cfg.kind != "ScannerConfig":
        raise ConfigError(f"{path}: expected apiVersion yolo-cage.dev/v1alpha1, kind ScannerConfig")
    return cfg
