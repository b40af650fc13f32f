"""Auth: login, refresh rotation with re-use detection, logout, throttling, API keys."""
from __future__ import annotations

from models.saas import AuditLog, RefreshToken, User
from tests.support.api import login


def test_login_returns_tokens_and_me_works(api, tenant):
    t = tenant("acme")
    email, password = t["users"]["owner"]
    tokens = login(api, email, password)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    me = api.with_(token=tokens["access_token"]).get("/api/auth/me")
    assert me.status_code == 200
    body = me.get_json()
    assert body["user"]["email"] == email
    assert body["projects"][0]["id"] == t["project_id"]
    assert "billing.manage" in body["projects"][0]["permissions"]
    # refresh tokens are stored hashed only
    stored = [r.token_hash for r in RefreshToken.select()]
    assert tokens["refresh_token"] not in stored and len(stored) == 1


def test_login_email_is_case_insensitive(api, tenant):
    t = tenant("acme")
    email, password = t["users"]["owner"]
    assert api.post("/api/auth/login", json={"email": email.upper(), "password": password}).status_code == 200


def test_wrong_password_is_catalog_error_and_audited(api, tenant):
    t = tenant("acme")
    email, _ = t["users"]["owner"]
    resp = api.post("/api/auth/login", json={"email": email, "password": "nope-nope-1"})
    assert resp.status_code == 401
    err = resp.get_json()["error"]
    assert err["code"] == "AUTH_INVALID_CREDENTIALS"
    assert err["human_title"] == "Неверный e-mail или пароль"
    row = AuditLog.get(AuditLog.action == "auth.login_failed")
    assert row.status_code == 401 and str(row.org_id) == t["org_id"]
    assert "nope-nope-1" not in str(row.changes_json)  # password masked


def test_unknown_email_same_error(api, db, redis_client):
    resp = api.post("/api/auth/login", json={"email": "ghost@nowhere.test", "password": "whatever-123"})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "AUTH_INVALID_CREDENTIALS"


def test_login_validation_has_field_messages(api, db, redis_client):
    resp = api.post("/api/auth/login", json={"email": "not-an-email"})
    assert resp.status_code == 422
    fields = resp.get_json()["error"]["details"]["fields"]
    assert fields == {"email": "Некорректный e-mail", "password": "Обязательное поле"}


def test_bruteforce_is_throttled(api, tenant):
    t = tenant("acme")
    email, password = t["users"]["owner"]
    codes = [api.post("/api/auth/login", json={"email": email, "password": f"bad-pass-{i}"}).status_code
             for i in range(5)]
    assert codes == [401] * 5
    locked = api.post("/api/auth/login", json={"email": email, "password": password})
    assert locked.status_code == 429
    assert locked.get_json()["error"]["code"] == "AUTH_TOO_MANY_ATTEMPTS"
    assert int(locked.headers["Retry-After"]) > 0


def test_refresh_rotates_and_reuse_revokes_family(api, tenant):
    t = tenant("acme")
    tokens = login(api, *t["users"]["owner"])
    first = tokens["refresh_token"]
    r1 = api.post("/api/auth/refresh", json={"refresh_token": first})
    assert r1.status_code == 200
    second = r1.get_json()["refresh_token"]
    assert second != first
    # re-use of the rotated token: theft signal, the whole family dies
    reuse = api.post("/api/auth/refresh", json={"refresh_token": first})
    assert reuse.status_code == 401
    assert reuse.get_json()["error"]["code"] == "AUTH_REFRESH_REUSED"
    after = api.post("/api/auth/refresh", json={"refresh_token": second})
    assert after.status_code == 401
    assert after.get_json()["error"]["code"] == "AUTH_TOKEN_INVALID"
    assert RefreshToken.select().where(RefreshToken.revoked_at.is_null()).count() == 0
    assert AuditLog.select().where(AuditLog.action == "auth.refresh_reused").count() == 1


def test_logout_revokes_access_and_refresh(api, tenant):
    t = tenant("acme")
    tokens = login(api, *t["users"]["owner"])
    authed = api.with_(token=tokens["access_token"])
    assert authed.post("/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code == 200
    resp = authed.get("/api/auth/me")
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "AUTH_TOKEN_INVALID"
    assert api.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_missing_and_garbage_tokens(api, db, redis_client):
    resp = api.get("/api/projects")
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "AUTH_REQUIRED"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    bad = api.with_(token="abc.def.ghi").get("/api/projects")
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "AUTH_TOKEN_INVALID"


def test_expired_access_token(api, tenant, test_settings):
    from core.security.tokens import issue_access_token
    t = tenant("acme")
    user = User.get(User.email == t["users"]["owner"][0])
    token, _ = issue_access_token(test_settings.secret_key, str(user.id), str(user.org_id), 60, now=0)
    resp = api.with_(token=token).get("/api/projects")
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "AUTH_TOKEN_EXPIRED"


def test_disabled_user_cannot_login_or_use_token(api, tenant):
    t = tenant("acme")
    tokens = login(api, *t["users"]["owner"])
    User.update(is_active=False).execute()
    assert api.with_(token=tokens["access_token"]).get("/api/auth/me").get_json()["error"]["code"] == "AUTH_USER_DISABLED"
    resp = api.post("/api/auth/login", json=dict(zip(("email", "password"), t["users"]["owner"])))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "AUTH_USER_DISABLED"


def test_api_key_authenticates_with_its_role_and_project(api, tenant):
    t = tenant("acme")
    owner = api.with_(token=login(api, *t["users"]["owner"])["access_token"], project_id=t["project_id"])
    created = owner.post("/api/api-keys", json={"name": "CRM webhook", "role": "analyst"})
    assert created.status_code == 201
    key = created.get_json()["key"]
    assert key.startswith("vai_")
    listed = owner.get("/api/api-keys").get_json()["items"]
    assert "key" not in listed[0] and listed[0]["prefix"] == created.get_json()["prefix"]
    keyed = api.with_()
    # the key implies its project; it reads but cannot write (analyst)
    assert keyed.get(f"/api/projects/{t['project_id']}", headers={"X-Api-Key": key}).status_code == 200
    denied = keyed.patch(f"/api/projects/{t['project_id']}", json={"name": "x"}, headers={"X-Api-Key": key})
    assert denied.status_code == 403 and denied.get_json()["error"]["code"] == "PERMISSION_DENIED"
    # also as a Bearer token
    assert keyed.get(f"/api/projects/{t['project_id']}", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # revoke
    kid = created.get_json()["id"]
    assert owner.delete(f"/api/api-keys/{kid}").status_code == 200
    gone = keyed.get(f"/api/projects/{t['project_id']}", headers={"X-Api-Key": key})
    assert gone.status_code == 401


def test_api_key_cannot_be_owner(api, tenant):
    t = tenant("acme")
    owner = api.with_(token=login(api, *t["users"]["owner"])["access_token"], project_id=t["project_id"])
    resp = owner.post("/api/api-keys", json={"name": "k", "role": "owner"})
    assert resp.status_code == 422 and "role" in resp.get_json()["error"]["details"]["fields"]
