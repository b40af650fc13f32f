"""Health, readiness and the API description (public by design)."""
from __future__ import annotations

import html

from flask import current_app

from models.base import database
from web.api import schemas as S
from web.api.registry import ApiGroup, public_view

group = ApiGroup("system", "System")


@group.route("/healthz", ["GET"], public=True, responses={200: S.ref("Health")},
             summary="Процесс жив (без проверки зависимостей)")
def healthz():
    return {"status": "ok"}


@group.route("/readyz", ["GET"], public=True, responses={200: S.ref("Health"), 503: None},
             summary="Готовность: база данных и Redis доступны")
def readyz():
    from core.errors import AppError
    checks = {}
    try:
        database.execute_sql("SELECT 1").fetchone()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        current_app.extensions["redis"].ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        raise AppError("SERVICE_UNAVAILABLE", {"checks": checks})
    return {"status": "ok", "checks": checks}


@group.route("/openapi.json", ["GET"], public=True, summary="Описание API (OpenAPI 3.1)")
def openapi_json():
    from web.openapi import build_openapi
    return build_openapi(current_app)


@group.route("/docs", ["GET"], public=True, summary="Справочник API (HTML)")
def docs_page():
    from web.openapi import build_openapi
    doc = build_openapi(current_app)
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            perm = op.get("x-permission", "публичный")
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}</td><td><code>{html.escape(str(perm))}</code></td></tr>")
    body = ("<!doctype html><html lang='ru'><head><meta charset='utf-8'><title>VoiceAI API</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:4px 8px;border-bottom:1px solid #ddd}</style>"
            "</head><body><h1>VoiceAI API</h1><p>Машиночитаемое описание: <a href='/api/openapi.json'>"
            "/api/openapi.json</a></p><table><tr><th>Метод</th><th>Путь</th><th>Описание</th><th>Право</th></tr>"
            + "".join(rows) + "</table></body></html>")
    return current_app.response_class(body, mimetype="text/html")


def index():
    body = ("<!doctype html><html lang='ru'><head><meta charset='utf-8'><title>VoiceAI</title></head>"
            "<body><h1>VoiceAI</h1><p>Платформа голосовых агентов работает.</p>"
            "<p><a href='/api/docs'>Справочник API</a></p></body></html>")
    return current_app.response_class(body, mimetype="text/html")


public_view(index, "Главная страница кабинета")
