"""Project API keys: a second way to authenticate (CRM triggers, scripts), shown once, stored hashed."""
from __future__ import annotations

import datetime as dt
import uuid

from flask import g

from core.errors import AppError, NotFound
from core.security.tokens import new_api_key, sha256_hex
from models.base import utcnow
from models.saas import ApiKey, Role
from web import audit
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup

group = ApiGroup("api_keys", "Users")


def serialize_key(k: ApiKey) -> dict:
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat() if v else None
    return {"id": str(k.id), "project_id": str(k.project_id), "name": k.name, "prefix": k.prefix,
            "role": Role.get_by_id(k.role_id).name, "created_at": k.created_at.isoformat(),
            "last_used_at": iso(k.last_used_at), "expires_at": iso(k.expires_at), "revoked_at": iso(k.revoked_at)}


@group.route("/api-keys", ["GET"], permission="api_keys.manage", responses={200: S.page_of("ApiKey")},
             query=PAGE_QUERY, summary="API-ключи проекта")
def list_keys():
    return paginate(ApiKey.for_project(g.project.id), ApiKey.created_at, ApiKey.id, serialize_key)


@group.route("/api-keys", ["POST"], permission="api_keys.manage", body=S.API_KEY_CREATE,
             responses={201: S.ref("ApiKeyCreated"), 422: None},
             summary="Создать API-ключ (значение показывается один раз)")
def create_key():
    body = g.body
    if body["role"] == "owner":
        raise AppError("VALIDATION_FAILED", {"fields": {"role": "Ключу нельзя выдать роль «Владелец»"}})
    if g.principal.kind == "api_key":
        raise AppError("PERMISSION_DENIED", {"reason": "API-ключ не может создавать ключи"})
    expires_at = dt.datetime.fromisoformat(body["expires_at"]) if body.get("expires_at") else None
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.timezone.utc)
    full, prefix = new_api_key()
    key = ApiKey.create(project=g.project.id, name=body["name"], prefix=prefix, key_hash=sha256_hex(full),
                        role=Role.get(Role.name == body["role"]).id, created_by=g.principal.id,
                        expires_at=expires_at)
    data = serialize_key(key)
    audit.record("api_key.create", "api_key", key.id, after=data, project_id=g.project.id)
    return {**data, "key": full}, 201


@group.route("/api-keys/<key_id>", ["DELETE"], permission="api_keys.manage",
             responses={200: S.ref("ApiKey"), 404: None}, summary="Отозвать API-ключ")
def revoke_key(key_id: str):
    try:
        kid = uuid.UUID(key_id)
    except ValueError:
        raise NotFound("api_key", key_id)
    key = ApiKey.for_project(g.project.id).where(ApiKey.id == kid).first()
    if key is None:
        raise NotFound("api_key", key_id)
    before = serialize_key(key)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.save()
    after = serialize_key(key)
    audit.record("api_key.revoke", "api_key", key.id, before=before, after=after, project_id=g.project.id)
    return after
