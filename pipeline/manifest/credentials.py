"""`credentials:` in a manifest: Content Credentials (C2PA) on every delivered file, and whether prompts go in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# YAML 1.1 (PyYAML) reads a bare `off` as false; the quoted word means the same.
OFF_VALUES: tuple[Any, ...] = (False, "off")


@dataclass(frozen=True)
class CredentialsSpec:
    """On unless the manifest says `credentials: off`; prompts go into the credentials unless
    `credentials: {include_prompts: false}`."""

    enabled: bool = True
    include_prompts: bool = True

    def to_json(self) -> dict[str, bool]:
        return {"enabled": self.enabled, "include_prompts": self.include_prompts}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> CredentialsSpec:
        return cls(**{k: bool(v) for k, v in (d or {}).items() if k in ("enabled", "include_prompts")})


def credentials_spec(value: Any) -> CredentialsSpec:
    """The schema has already checked `value` (absent, `off`/false, or a mapping)."""
    if value is None:
        return CredentialsSpec()
    if any(value is v or (isinstance(value, str) and value == v) for v in OFF_VALUES):
        return CredentialsSpec(enabled=False)
    return CredentialsSpec(include_prompts=bool(value.get("include_prompts", True)))


def credentials_schema() -> dict[str, Any]:
    return {
        "description": "Content Credentials (C2PA) signed into every delivered image, video and poster (on unless "
                       "`off`); `include_prompts: false` keeps the prompts out of them",
        "anyOf": [
            {"enum": list(OFF_VALUES)},
            {"type": "object", "additionalProperties": False,
             "properties": {"include_prompts": {"type": "boolean",
                                                "description": "write each model's prompts into the credentials"}}},
        ],
    }
