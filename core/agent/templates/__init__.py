"""Agent templates shipped with the product: one JSON file per template (title, description, config).

``POST /agents {template}`` starts an agent's draft v1 from a template's ``config``; each template
has a scripted test conversation in ``tests/test_agent_templates.py``.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

_DIR = Path(__file__).parent


@lru_cache(maxsize=1)
def _load() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out[path.stem] = {"key": path.stem, "title": data["title"], "description": data["description"],
                          "config": data["config"]}
    return out


def list_templates() -> list[dict[str, str]]:
    return [{"key": t["key"], "title": t["title"], "description": t["description"]} for t in _load().values()]


def get_template(key: str) -> dict[str, Any] | None:
    """A deep copy of the template (callers may edit the config)."""
    tpl = _load().get(key)
    return copy.deepcopy(tpl) if tpl is not None else None
