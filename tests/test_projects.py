"""Projects API, validation and pagination."""
from __future__ import annotations

from models.saas import AuditLog
from tests.support.api import login


def _owner(api, tenant, slug="acme"):
    t = tenant(slug)
    return t, api.with_(token=login(api, *t["users"]["owner"])["access_token"])


def test_create_list_get_update_project(api, tenant):
    t, owner = _owner(api, tenant)
    created = owner.post("/api/projects", json={"name": "Клиника", "timezone": "Asia/Yekaterinburg"})
    assert created.status_code == 201
    p = created.get_json()
    assert p["timezone"] == "Asia/Yekaterinburg" and p["default_language"] == "ru-RU"
    listed = owner.get("/api/projects").get_json()
    assert {x["name"] for x in listed["items"]} == {"Проект", "Клиника"}
    assert owner.get(f"/api/projects/{p['id']}").get_json()["name"] == "Клиника"
    upd = owner.patch(f"/api/projects/{p['id']}", json={"name": "Клиника №1", "recording_retention_days": 30})
    assert upd.status_code == 200 and upd.get_json()["recording_retention_days"] == 30
    row = AuditLog.get(AuditLog.action == "project.update")
    assert row.changes_json["before"]["name"] == "Клиника"
    assert row.changes_json["after"]["name"] == "Клиника №1"
    assert row.trace_id and row.actor_label == t["users"]["owner"][0]


def test_project_validation_errors_are_field_level(api, tenant):
    _, owner = _owner(api, tenant)
    resp = owner.post("/api/projects", json={"name": "", "timezone": "Mars/Olympus", "extra": 1})
    assert resp.status_code == 422
    fields = resp.get_json()["error"]["details"]["fields"]
    assert fields["name"] == "Поле не может быть пустым"
    assert fields["timezone"].startswith("Неизвестный часовой пояс")
    assert fields["extra"] == "Неизвестное поле"
    assert owner.post("/api/projects", json={"name": "Проект"}).get_json()["error"]["code"] == "CONFLICT"


def test_non_json_body_is_bad_request(api, tenant):
    _, owner = _owner(api, tenant)
    resp = owner.request("POST", "/api/projects", data="{nope", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "BAD_REQUEST"


def test_cursor_pagination(api, tenant):
    _, owner = _owner(api, tenant)
    for i in range(7):
        assert owner.post("/api/projects", json={"name": f"P{i}"}).status_code == 201
    seen, cursor = [], None
    while True:
        resp = owner.get("/api/projects?limit=3" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [p["name"] for p in resp["items"]]
        cursor = resp["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 8 and len(set(seen)) == 8
    assert owner.get("/api/projects?cursor=garbage!").status_code == 422
    assert owner.get("/api/projects?limit=0").status_code == 422


def test_failed_mutation_rolls_back_but_is_audited(api, tenant):
    t, owner = _owner(api, tenant)
    resp = owner.patch(f"/api/projects/{t['project_id']}", json={"timezone": "Nowhere/Zone"})
    assert resp.status_code == 422
    row = AuditLog.select().where(AuditLog.status_code == 422).get()
    assert row.changes_json["request"] == {"timezone": "Nowhere/Zone"}


def test_project_scoped_role_sees_only_its_project(api, tenant):
    from core.seed import create_project, create_user
    from models.saas import Org, Project
    t, owner = _owner(api, tenant)
    org = Org.get_by_id(t["org_id"])
    other = create_project(org, "Другой")
    create_user(org, "op@acme.test", "Passw0rd-op", "operator", project=Project.get_by_id(t["project_id"]))
    op = api.with_(token=login(api, "op@acme.test", "Passw0rd-op")["access_token"])
    names = [p["name"] for p in op.get("/api/projects").get_json()["items"]]
    assert names == ["Проект"]
    assert op.get(f"/api/projects/{other.id}").status_code == 404
    assert op.post("/api/projects", json={"name": "Мой"}).status_code == 403
