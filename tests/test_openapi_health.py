"""The OpenAPI document is valid, covers every API route, and health endpoints tell the truth."""
from __future__ import annotations

from openapi_spec_validator import validate


def test_openapi_document_is_valid_and_complete(app, api):
    resp = api.get("/api/openapi.json")
    assert resp.status_code == 200
    doc = resp.get_json()
    validate(doc)
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    for expected in [("POST", "/api/auth/login"), ("POST", "/api/auth/refresh"), ("POST", "/api/auth/logout"),
                     ("POST", "/api/projects"), ("GET", "/api/projects"), ("GET", "/api/projects/{project_id}"),
                     ("PATCH", "/api/projects/{project_id}"), ("GET", "/api/audit-logs")]:
        assert expected in ops
    api_rules = {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/")}
    assert len(doc["paths"]) == len(api_rules)
    assert doc["x-error-catalog"]["SIP_CONNECT_FAILED"]["human_title"] == "Не удалось подключить номер"
    login_op = doc["paths"]["/api/auth/login"]["post"]
    assert login_op["security"] == [] and "requestBody" in login_op
    assert doc["paths"]["/api/projects"]["post"]["x-permission"] == "projects.create"


def test_docs_page_lists_endpoints(api):
    html = api.get("/api/docs").get_data(as_text=True)
    assert "/api/projects" in html and "projects.create" in html


def test_health_and_ready(api, db, redis_client):
    assert api.get("/healthz").get_json() == {"status": "ok"}
    ready = api.get("/readyz").get_json()
    assert ready["checks"] == {"database": "ok", "redis": "ok"}
    assert api.get("/api/readyz").status_code == 200


def test_ready_reports_redis_down(app, api, db):
    import redis
    app.extensions["redis"] = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    err = resp.get_json()["error"]
    assert err["code"] == "SERVICE_UNAVAILABLE" and err["details"]["checks"]["redis"].startswith("error")
