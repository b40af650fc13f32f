"""Auth API: login, refresh with rotation and re-use detection, logout, who-am-I."""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from flask import g

from core.errors import AppError
from core.security.passwords import hash_password, needs_rehash, verify_password
from core.security.tokens import issue_access_token, new_refresh_token, sha256_hex
from models.base import utcnow
from models.saas import Org, Project, RefreshToken, User
from web import audit
from web.api import schemas as S
from web.api.registry import AUTHENTICATED, ApiGroup
from web.app import client_ip, get_redis, settings
from web.principal import principal_from_user
from web.ratelimit import hit
from flask import request

group = ApiGroup("auth", "Auth")


def _issue_pair(user: User, family_id: uuid.UUID) -> dict:
    s = settings()
    access, _ = issue_access_token(s.secret_key, str(user.id), str(user.org_id), s.access_token_ttl_s)
    refresh = new_refresh_token()
    RefreshToken.create(user=user.id, family_id=family_id, token_hash=sha256_hex(refresh),
                        expires_at=utcnow() + dt.timedelta(seconds=s.refresh_token_ttl_s),
                        ip=client_ip(), user_agent=(request.user_agent.string or "")[:300])
    return {"access_token": access, "refresh_token": refresh, "expires_in": s.access_token_ttl_s,
            "token_type": "Bearer"}


def _throttle_keys(email: str) -> list[tuple[str, int]]:
    s = settings()
    email_key = "login:email:" + hashlib.sha256(email.lower().encode()).hexdigest()[:32]
    return [(email_key, s.login_max_failures), (f"login:ip:{client_ip()}", s.login_max_failures * 4)]


def _check_lockout(email: str) -> None:
    r = get_redis()
    for key, _limit in _throttle_keys(email):
        ttl = r.ttl(f"{key}:locked")
        if ttl and ttl > 0:
            raise AppError("AUTH_TOO_MANY_ATTEMPTS", {"retry_after_s": ttl})


def _register_failure(email: str) -> None:
    r = get_redis()
    s = settings()
    for key, limit in _throttle_keys(email):
        allowed, _ = hit(r, key, limit - 1, s.login_lockout_s)
        if not allowed:
            r.set(f"{key}:locked", "1", ex=s.login_lockout_s)


@group.route("/auth/login", ["POST"], public=True, body=S.LOGIN,
             responses={200: S.ref("TokenPair"), 401: None, 403: None, 422: None, 429: None},
             summary="Вход по e-mail и паролю: выдаёт access- и refresh-токены")
def login():
    body = g.body
    email = body["email"].strip().lower()
    _check_lockout(email)
    user = User.get_or_none(User.email == email)
    if not verify_password(user.password_hash if user else None, body["password"]):
        _register_failure(email)
        if user is not None:
            g.audit_org_id = user.org_id
            g.audit_actor = {"actor_type": "user", "actor_id": user.id, "actor_label": user.email}
        audit.record("auth.login_failed", "user", user.id if user else None,
                     after={"email": email}, org_id=user.org_id if user else None)
        raise AppError("AUTH_INVALID_CREDENTIALS")
    if not user.is_active:
        raise AppError("AUTH_USER_DISABLED")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(body["password"])
    user.last_login_at = utcnow()
    user.save()
    g.principal = principal_from_user(user)
    audit.record("auth.login", "user", user.id)
    return _issue_pair(user, uuid.uuid4())


@group.route("/auth/refresh", ["POST"], public=True, body=S.REFRESH,
             responses={200: S.ref("TokenPair"), 401: None},
             summary="Обмен refresh-токена на новую пару (старый становится недействительным)")
def refresh():
    token_hash = sha256_hex(g.body["refresh_token"])
    row = RefreshToken.select().where(RefreshToken.token_hash == token_hash).for_update().first()
    if row is None:
        raise AppError("AUTH_TOKEN_INVALID")
    user = User.get_by_id(row.user_id)
    g.principal = principal_from_user(user)
    now = utcnow()
    if row.used_at is not None:
        # A rotated token came back: somebody holds a copy. Kill the whole family, commit that.
        RefreshToken.update(revoked_at=now).where(
            (RefreshToken.family_id == row.family_id) & RefreshToken.revoked_at.is_null()).execute()
        audit.record("auth.refresh_reused", "user", user.id, after={"family_id": str(row.family_id)})
        g.commit_despite_error = True
        raise AppError("AUTH_REFRESH_REUSED")
    if row.revoked_at is not None:
        raise AppError("AUTH_TOKEN_INVALID", {"reason": "Сессия завершена"})
    if row.expires_at <= now:
        raise AppError("AUTH_TOKEN_EXPIRED")
    if not user.is_active:
        raise AppError("AUTH_USER_DISABLED")
    row.used_at = now
    row.save()
    audit.record("auth.refresh", "user", user.id)
    return _issue_pair(user, row.family_id)


@group.route("/auth/logout", ["POST"], permission=AUTHENTICATED, body=S.LOGOUT,
             responses={200: S.ref("Ok")}, summary="Выход: отзывает access-токен и сессию refresh-токенов")
def logout():
    principal = g.principal
    if principal.kind != "user":
        raise AppError("BAD_REQUEST", {"reason": "Выход применим только к сессии пользователя"})
    if principal.token_jti and principal.token_exp:
        ttl = max(1, principal.token_exp - int(dt.datetime.now(dt.timezone.utc).timestamp()))
        get_redis().set(f"revoked:jti:{principal.token_jti}", "1", ex=ttl)
    rt = g.body.get("refresh_token")
    if rt:
        row = RefreshToken.get_or_none((RefreshToken.token_hash == sha256_hex(rt)) &
                                       (RefreshToken.user == principal.id))
        if row is not None:
            RefreshToken.update(revoked_at=utcnow()).where(
                (RefreshToken.family_id == row.family_id) & RefreshToken.revoked_at.is_null()).execute()
    audit.record("auth.logout", "user", principal.id)
    return {"ok": True}


@group.route("/auth/me", ["GET"], permission=AUTHENTICATED, responses={200: S.ref("Me")},
             summary="Текущий пользователь, его организация, проекты и права")
def me():
    from web.api.users import serialize_user
    principal = g.principal
    if principal.kind != "user":
        raise AppError("BAD_REQUEST", {"reason": "Доступно только для пользователя"})
    org = Org.get_by_id(principal.org_id)
    visible = principal.visible_project_ids()
    q = Project.select().where(Project.org == org.id)
    if visible is not None:
        q = q.where(Project.id.in_(list(visible) or [uuid.UUID(int=0)]))
    return {"user": serialize_user(principal.user), "org": {"id": str(org.id), "name": org.name, "slug": org.slug},
            "org_permissions": principal.permissions(None),
            "projects": [{"id": str(p.id), "name": p.name, "permissions": principal.permissions(p.id)}
                         for p in q.order_by(Project.name)]}
