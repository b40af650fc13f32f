"""OpenAPI 3.1 document built from the route metadata, so it cannot drift from what is served."""
from __future__ import annotations

import re
from typing import Any

from flask import Flask

from core.errors import CATALOG
from core.security.rbac import PERMISSIONS
from web.api.registry import AUTHENTICATED, route_meta
from web.api.schemas import COMPONENTS, ref

_PARAM_RE = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_STATUS_TEXT = {200: "OK", 201: "Создано", 400: "Некорректный запрос", 401: "Требуется вход",
                403: "Недостаточно прав", 404: "Не найдено", 409: "Конфликт", 422: "Ошибка валидации",
                429: "Слишком много запросов", 500: "Внутренняя ошибка", 502: "Ошибка внешней системы",
                503: "Сервис недоступен", 504: "Таймаут внешней системы"}


def build_openapi(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        meta = route_meta(app.view_functions.get(rule.endpoint))
        if meta is None:
            continue
        path = _PARAM_RE.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {"summary": meta.summary, "tags": [meta.group],
                                  "operationId": f"{rule.endpoint}.{method.lower()}"}
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                      for n in _PARAM_RE.findall(rule.rule)]
            params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in meta.query.items()]
            if meta.project_scoped and "project_id" not in _PARAM_RE.findall(rule.rule):
                params.append({"name": "X-Project-Id", "in": "header", "required": False,
                               "description": "Проект запроса (API-ключ задаёт его сам)",
                               "schema": {"type": "string", "format": "uuid"}})
            if params:
                op["parameters"] = params
            if meta.public:
                op["security"] = []
            else:
                op["x-permission"] = meta.permission
                if meta.permission != AUTHENTICATED:
                    op["description"] = f"Право: `{meta.permission}` ({PERMISSIONS[meta.permission].title})"
            if meta.body is not None:
                op["requestBody"] = {"required": True,
                                     "content": {"application/json": {"schema": meta.body}}}
            responses: dict[str, Any] = {}
            for status, schema in meta.responses.items():
                if status < 400:
                    body = {"application/json": {"schema": schema}} if schema is not None else None
                    responses[str(status)] = {"description": _STATUS_TEXT.get(status, "OK"),
                                              **({"content": body} if body else {})}
            errors = {s for s in meta.responses if s >= 400} | {400, 429, 500, 503}
            if not meta.public:
                errors |= {401, 403}
            if meta.project_scoped or _PARAM_RE.search(rule.rule):
                errors.add(404)
            if meta.body is not None or meta.query or meta.project_scoped:
                errors.add(422)
            for status in sorted(errors):
                responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Ошибка"),
                                          "content": {"application/json": {"schema": ref("Error")}}}
            op["responses"] = responses
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "VoiceAI API", "version": "1.0.0",
                 "description": "REST API кабинета VoiceAI. Ошибки — в едином формате (error.code из каталога)."},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "x-error-catalog": {c.code: {"http_status": c.http_status, "human_title": c.human_title,
                                     "human_how_to_fix": list(c.human_how_to_fix)} for c in CATALOG.values()},
    }
