"""Audit-log helpers free of Flask: masking secrets and diffing before/after snapshots."""
from __future__ import annotations

from typing import Any

MASK = "***"
_SECRET_MARKERS = ("password", "secret", "token", "api_key", "apikey", "credential", "_encrypted",
                   "_hash", "private_key", "authorization")


def is_secret_key(key: str) -> bool:
    k = key.lower()
    return any(m in k for m in _SECRET_MARKERS)


def mask_secrets(value: Any) -> Any:
    """Deep copy with every secret-looking key's value replaced by ``***``."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(str(k)) and v not in (None, "") else mask_secrets(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value


def diff_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """``{"before": {...}, "after": {...}}`` limited to keys that changed, secrets masked."""
    before = before or {}
    after = after or {}
    keys = set(before) | set(after)
    changed = sorted(k for k in keys if before.get(k) != after.get(k) or k not in before or k not in after)
    return {
        "before": mask_secrets({k: before[k] for k in changed if k in before}),
        "after": mask_secrets({k: after[k] for k in changed if k in after}),
    }
