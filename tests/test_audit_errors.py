"""Audit listing/filters, error envelope for every status, trace ids in headers and logs."""
from __future__ import annotations

import json
import logging

from tests.support.api import login


def test_audit_list_and_filters(api, tenant):
    t = tenant("acme")
    owner = api.with_(token=login(api, *t["users"]["owner"])["access_token"], project_id=t["project_id"])
    owner.post("/api/projects", json={"name": "A1"})
    key = owner.post("/api/api-keys", json={"name": "k", "role": "analyst"})
    logs = owner.get("/api/audit-logs").get_json()["items"]
    actions = [x["action"] for x in logs]
    assert actions[:3] == ["api_key.create", "project.create", "auth.login"]
    created = next(x for x in logs if x["action"] == "api_key.create")
    assert key.get_json()["key"] not in json.dumps(created)
    only = owner.get("/api/audit-logs?action=project.create").get_json()["items"]
    assert len(only) == 1 and only[0]["entity_type"] == "project"
    by_trace = owner.get(f"/api/audit-logs?trace_id={key.headers['X-Trace-Id']}").get_json()["items"]
    assert [x["action"] for x in by_trace] == ["api_key.create"]
    assert owner.get("/api/audit-logs?since=yesterday").status_code == 422


def test_secrets_masked_in_audit(api, tenant):
    t = tenant("acme")
    owner = api.with_(token=login(api, *t["users"]["owner"])["access_token"])
    owner.post("/api/users", json={"email": "n@acme.test", "password": "Sup3r-secret-pw",
                                   "roles": [{"role": "analyst"}]})
    text = json.dumps(owner.get("/api/audit-logs").get_json())
    assert "Sup3r-secret-pw" not in text


def test_error_envelopes(api, tenant):
    t = tenant("acme")
    owner = api.with_(token=login(api, *t["users"]["owner"])["access_token"])
    r404 = owner.get("/api/no-such-thing")
    assert r404.status_code == 404 and r404.get_json()["error"]["code"] == "NOT_FOUND"
    r405 = owner.request("PUT", "/api/projects")
    assert r405.status_code == 405 and r405.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    bad_id = owner.get("/api/projects/not-a-uuid")
    assert bad_id.status_code == 404
    missing_project = owner.get("/api/api-keys")
    assert missing_project.status_code == 422
    assert "X-Project-Id" in missing_project.get_json()["error"]["details"]["fields"]


def test_unhandled_exception_is_500_envelope_and_logged_with_trace(app, api, caplog):
    from web.api.registry import public_view

    def boom():
        raise RuntimeError("kaboom")
    app.add_url_rule("/api/boom", "boom", public_view(boom, "test"))
    with caplog.at_level(logging.ERROR, logger="voiceai.web"):
        resp = api.get("/api/boom", headers={"X-Trace-Id": "trace-abc-12345"})
    assert resp.status_code == 500
    err = resp.get_json()["error"]
    assert err["code"] == "INTERNAL_ERROR" and err["details"]["trace_id"] == "trace-abc-12345"
    assert "kaboom" not in resp.get_data(as_text=True)
    logged = [r for r in caplog.records if getattr(r, "trace_id", None) == "trace-abc-12345"]
    assert logged and "kaboom" in str(logged[0].exc_info[1])


def test_json_log_lines_carry_trace_id():
    import io
    from core.logging import configure_logging
    from core.tracing import set_trace_id
    buf = io.StringIO()
    configure_logging("INFO", stream=buf)
    token = set_trace_id("t-123456789")
    try:
        logging.getLogger("voiceai.test").info("hello", extra={"call_id": "c1"})
    finally:
        from core.tracing import _trace_id
        _trace_id.reset(token)
        configure_logging("WARNING")
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert line["msg"] == "hello" and line["trace_id"] == "t-123456789" and line["call_id"] == "c1"


def test_rate_limit_returns_429(app, api, tenant, redis_client):
    t = tenant("acme")
    owner = api.with_(token=login(api, *t["users"]["owner"])["access_token"])
    import dataclasses
    app.config["VOICEAI"] = dataclasses.replace(app.config["VOICEAI"], api_rate_limit_per_min=3)
    codes = [owner.get("/api/projects").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    resp = owner.get("/api/projects")
    assert resp.get_json()["error"]["code"] == "RATE_LIMITED" and int(resp.headers["Retry-After"]) >= 1


def test_catalog_texts_verbatim():
    from core.errors import CATALOG
    assert CATALOG["SIP_CONNECT_FAILED"].human_title == "Не удалось подключить номер"
    assert CATALOG["SIP_CONNECT_FAILED"].human_how_to_fix == (
        "Проверьте адрес/логин/пароль у провайдера.", "Нажмите «Проверить подключение».")
    assert CATALOG["BUDGET_LIMIT_REACHED"].human_how_to_fix == ("Увеличьте лимит или остановите кампании.",)
    for code in ("TEST_CALL_FAILED", "STT_LOW_CONFIDENCE", "INTEGRATION_AUTH_FAILED", "INTEGRATION_TIMEOUT",
                 "MESSAGE_PROVIDER_DOWN", "AUTH_REQUIRED", "VALIDATION_FAILED", "NOT_FOUND",
                 "PERMISSION_DENIED", "RATE_LIMITED"):
        assert code in CATALOG
