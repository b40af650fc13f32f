"""A readable difference between two agent configs: structured changes plus a unified text diff."""
from __future__ import annotations

import difflib
import json
from typing import Any


def _walk(before: Any, after: Any, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in before:
                out.append({"path": sub, "kind": "added", "before": None, "after": after[key]})
            elif key not in after:
                out.append({"path": sub, "kind": "removed", "before": before[key], "after": None})
            else:
                _walk(before[key], after[key], sub, out)
        return
    if isinstance(before, list) and isinstance(after, list) and before != after:
        for i in range(max(len(before), len(after))):
            sub = f"{path}.{i}"
            if i >= len(before):
                out.append({"path": sub, "kind": "added", "before": None, "after": after[i]})
            elif i >= len(after):
                out.append({"path": sub, "kind": "removed", "before": before[i], "after": None})
            else:
                _walk(before[i], after[i], sub, out)
        return
    if before != after:
        out.append({"path": path or "_root", "kind": "changed", "before": before, "after": after})


def config_diff(before: dict[str, Any], after: dict[str, Any], from_label: str = "a",
                to_label: str = "b") -> dict[str, Any]:
    """``{"changes": [{path, kind, before, after}], "text": unified diff of pretty JSON}``."""
    changes: list[dict[str, Any]] = []
    _walk(before or {}, after or {}, "", changes)
    a = json.dumps(before or {}, ensure_ascii=False, indent=2, sort_keys=True).splitlines()
    b = json.dumps(after or {}, ensure_ascii=False, indent=2, sort_keys=True).splitlines()
    text = "\n".join(difflib.unified_diff(a, b, fromfile=from_label, tofile=to_label, lineterm=""))
    return {"changes": changes, "text": text}
