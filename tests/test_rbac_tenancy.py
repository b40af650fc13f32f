"""RBAC: every route declares a permission; roles get what the matrix says; tenants never mix."""
from __future__ import annotations

import re

import pytest

from core.security.rbac import PERMISSIONS, ROLES, is_allowed
from web.api.registry import AUTHENTICATED, route_meta
from tests.support.api import login

PUBLIC_ENDPOINTS = {"api_auth.login", "api_auth.refresh", "api_system.healthz", "api_system.readyz",
                    "api_system.openapi_json", "api_system.docs_page", "root_healthz", "root_readyz",
                    "root_index", "static"}
# The cabinet's login form and session renewal (they read the session cookies, not a bearer token).
PUBLIC_ENDPOINTS |= {"cabinet.login", "cabinet.session_refresh"}
# The realtime stream: WebSocket/EventSource cannot send Authorization; they check the short-lived
# token from GET /api/realtime/token themselves (web/api/realtime.py).
PUBLIC_ENDPOINTS |= {"api_realtime.realtime_stream", "api_realtime.realtime_sse"}


def test_every_route_declares_a_permission(app):
    missing, public = [], set()
    for rule in app.url_map.iter_rules():
        meta = route_meta(app.view_functions.get(rule.endpoint))
        if rule.endpoint == "static":
            continue
        if meta is None:
            missing.append(rule.rule)
        elif meta.public:
            public.add(rule.endpoint)
        else:
            assert meta.permission == AUTHENTICATED or meta.permission in PERMISSIONS, rule.rule
    assert not missing, f"routes without a declared permission: {missing}"
    assert public <= PUBLIC_ENDPOINTS, f"unexpected public routes: {public - PUBLIC_ENDPOINTS}"


def test_undeclared_route_is_refused(app, api):
    app.add_url_rule("/api/sneaky", "sneaky", lambda: {"secret": 1})
    resp = api.get("/api/sneaky")
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "PERMISSION_DENIED"


def test_matrix_highlights():
    assert is_allowed(["owner"], "billing.manage")
    assert not is_allowed(["admin"], "billing.manage")
    assert is_allowed(["billing_manager"], "billing.manage")
    assert not is_allowed(["supervisor"], "agents.publish")
    assert not is_allowed(["operator"], "billing.read")
    assert not is_allowed(["operator"], "integrations.read")
    assert not is_allowed(["operator"], "integrations.manage")
    assert is_allowed(["operator"], "realtime.subscribe") and is_allowed(["operator"], "calls.read")
    assert not is_allowed(["analyst"], "calls.control")
    assert not is_allowed(["owner"], "no.such.permission")
    # every permission is granted to someone, every role has something
    for name in PERMISSIONS:
        assert any(name in r.permissions for r in ROLES.values()), name


def test_docs_rbac_matches_matrix():
    from pathlib import Path
    from core.security.rbac import matrix_markdown
    doc = (Path(__file__).resolve().parent.parent / "docs" / "rbac.md").read_text(encoding="utf-8")
    assert matrix_markdown() in doc, "docs/rbac.md is stale: paste `voiceai rbac matrix` into it"


@pytest.mark.parametrize("role,expected", [
    ("owner", {"create": 201, "update": 200, "users": 200, "audit": 200, "keys": 200}),
    ("admin", {"create": 201, "update": 200, "users": 200, "audit": 200, "keys": 200}),
    ("supervisor", {"create": 403, "update": 403, "users": 200, "audit": 403, "keys": 403}),
    ("operator", {"create": 403, "update": 403, "users": 403, "audit": 403, "keys": 403}),
    ("analyst", {"create": 403, "update": 403, "users": 403, "audit": 403, "keys": 403}),
    ("billing_manager", {"create": 403, "update": 403, "users": 403, "audit": 403, "keys": 403}),
])
def test_roles_enforced_over_http(api, tenant, role, expected):
    t = tenant("acme", roles=(role,))
    c = api.with_(token=login(api, *t["users"][role])["access_token"], project_id=t["project_id"])
    got = {
        "create": c.post("/api/projects", json={"name": "Новый"}).status_code,
        "update": c.patch(f"/api/projects/{t['project_id']}", json={"name": "Изм"}).status_code,
        "users": c.get("/api/users").status_code,
        "audit": c.get("/api/audit-logs").status_code,
        "keys": c.get("/api/api-keys").status_code,
    }
    assert got == expected
    assert c.get(f"/api/projects/{t['project_id']}").status_code == 200  # every role reads its project


def _uuid_in(text: str) -> set[str]:
    return set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text))


def test_cross_tenant_access_is_always_404(api, tenant):
    a = tenant("alpha")
    b = tenant("bravo")
    ca = api.with_(token=login(api, *a["users"]["owner"])["access_token"], project_id=a["project_id"])
    cb = api.with_(token=login(api, *b["users"]["owner"])["access_token"], project_id=b["project_id"])
    # resources in tenant B
    b_key = cb.post("/api/api-keys", json={"name": "b-key", "role": "analyst"}).get_json()
    b_user = cb.post("/api/users", json={"email": "new@bravo.test", "password": "Passw0rd-new",
                                         "roles": [{"role": "operator"}]}).get_json()
    cb.patch(f"/api/projects/{b['project_id']}", json={"name": "Секрет Б"})
    bp = b["project_id"]

    probes = [
        ("GET", f"/api/projects/{bp}", None),
        ("PATCH", f"/api/projects/{bp}", {"name": "hacked"}),
        ("GET", f"/api/users/{b_user['id']}", None),
        ("PATCH", f"/api/users/{b_user['id']}", {"is_active": False}),
        ("DELETE", f"/api/api-keys/{b_key['id']}", None),
        ("GET", "/api/api-keys", None, {"X-Project-Id": bp}),
        ("DELETE", f"/api/api-keys/{b_key['id']}", None, {"X-Project-Id": bp}),
    ]
    for probe in probes:
        method, path, body = probe[:3]
        headers = probe[3] if len(probe) > 3 else None
        resp = ca.request(method, path, json=body, headers=headers)
        assert resp.status_code == 404, (method, path, resp.status_code)
        assert resp.get_json()["error"]["code"] == "NOT_FOUND"

    # lists of tenant A never show B's ids
    b_ids = {bp, b_user["id"], b_key["id"], b["org_id"]}
    for path in ("/api/projects", "/api/users", "/api/api-keys", "/api/audit-logs", "/api/auth/me"):
        text = ca.get(path).get_data(as_text=True)
        assert not (_uuid_in(text) & b_ids), path
    # B's data is unchanged
    assert cb.get(f"/api/projects/{bp}").get_json()["name"] == "Секрет Б"
    assert cb.get(f"/api/users/{b_user['id']}").get_json()["is_active"] is True
    assert cb.get("/api/api-keys").get_json()["items"][0]["revoked_at"] is None
    # an API key of B cannot reach A's project either
    resp = api.get(f"/api/projects/{a['project_id']}", headers={"X-Api-Key": b_key["key"]})
    assert resp.status_code == 404
    resp = api.get("/api/api-keys", headers={"X-Api-Key": b_key["key"], "X-Project-Id": a["project_id"]})
    assert resp.status_code == 404


def test_granting_owner_needs_owner(api, tenant):
    t = tenant("acme", roles=("owner", "admin"))
    admin = api.with_(token=login(api, *t["users"]["admin"])["access_token"])
    resp = admin.post("/api/users", json={"email": "x@acme.test", "password": "Passw0rd-xx",
                                          "roles": [{"role": "owner"}]})
    assert resp.status_code == 403
    ok = admin.post("/api/users", json={"email": "y@acme.test", "password": "Passw0rd-yy",
                                        "roles": [{"role": "operator", "project_id": t["project_id"]}]})
    assert ok.status_code == 201
    weak = admin.post("/api/users", json={"email": "z@acme.test", "password": "short",
                                          "roles": [{"role": "operator"}]})
    assert weak.status_code == 422 and "password" in weak.get_json()["error"]["details"]["fields"]


def test_admin_cannot_touch_owner(api, tenant):
    from models.saas import User
    t = tenant("acme", roles=("owner", "admin"))
    admin = api.with_(token=login(api, *t["users"]["admin"])["access_token"])
    owner_id = str(User.get(User.email == t["users"]["owner"][0]).id)
    resp = admin.patch(f"/api/users/{owner_id}", json={"is_active": False})
    assert resp.status_code == 403
    assert User.get_by_id(owner_id).is_active
