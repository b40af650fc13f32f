"""Who is calling: a user (Bearer access token) or a project API key, with their role grants.

Tenancy rule: a principal only ever sees projects of its own org, and within the org only the
projects its grants cover. Anything else is reported as NOT_FOUND, never as "forbidden", so ids of
other tenants cannot be probed.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from core.errors import AppError, NotFound, PermissionDenied
from core.security import rbac
from core.security.tokens import decode_access_token, parse_api_key, sha256_hex, constant_time_equal
from models.base import utcnow
from models.saas import ApiKey, Project, Role, User, UserRole


@dataclass
class Principal:
    kind: str                                  # "user" | "api_key"
    org_id: uuid.UUID
    id: uuid.UUID
    label: str
    user: User | None = None
    api_key: ApiKey | None = None
    # (role name, project id or None for org-wide)
    grants: list[tuple[str, uuid.UUID | None]] = field(default_factory=list)
    token_jti: str | None = None
    token_exp: int | None = None

    def org_roles(self) -> set[str]:
        return {r for r, p in self.grants if p is None}

    def project_roles(self, project_id: uuid.UUID) -> set[str]:
        return {r for r, p in self.grants if p is None or p == project_id}

    def visible_project_ids(self) -> set[uuid.UUID] | None:
        """None: every project of the org; else the explicit set of granted projects."""
        if self.org_roles():
            return None
        return {p for _, p in self.grants if p is not None}

    def can(self, permission: str, project_id: uuid.UUID | None = None) -> bool:
        roles = self.org_roles() if project_id is None else self.project_roles(project_id)
        return rbac.is_allowed(roles, permission)

    def permissions(self, project_id: uuid.UUID | None = None) -> list[str]:
        roles = self.org_roles() if project_id is None else self.project_roles(project_id)
        return sorted({p for r in roles for p in rbac.role_permissions(r)})

    def audit_actor(self) -> dict[str, Any]:
        return {"actor_type": self.kind, "actor_id": self.id, "actor_label": self.label}


def _grants_for_user(user: User) -> list[tuple[str, uuid.UUID | None]]:
    rows = (UserRole.select(UserRole, Role).join(Role)
            .where(UserRole.user == user.id, UserRole.org == user.org_id))
    return [(r.role.name, r.project_id) for r in rows]


def principal_from_user(user: User, jti: str | None = None, exp: int | None = None) -> Principal:
    return Principal(kind="user", org_id=user.org_id, id=user.id, label=user.email, user=user,
                     grants=_grants_for_user(user), token_jti=jti, token_exp=exp)


def authenticate(authorization: str | None, api_key_header: str | None, secret_key: str,
                 is_revoked) -> Principal:
    """Resolve the Authorization / X-Api-Key headers; raise AUTH_* catalog errors when absent or bad.

    ``is_revoked(jti)`` tells whether an access token was logged out.
    """
    token = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AppError("AUTH_TOKEN_INVALID", {"reason": "Ожидается заголовок Authorization: Bearer <токен>"})
        token = value.strip()
    elif api_key_header:
        token = api_key_header.strip()
    if not token:
        raise AppError("AUTH_REQUIRED")
    prefix = parse_api_key(token)
    if prefix is not None:
        return _principal_from_api_key(token, prefix)
    claims = decode_access_token(secret_key, token)
    if is_revoked(claims.jti):
        raise AppError("AUTH_TOKEN_INVALID", {"reason": "Токен отозван (выполнен выход)"})
    try:
        user_id = uuid.UUID(claims.user_id)
    except ValueError as exc:
        raise AppError("AUTH_TOKEN_INVALID") from exc
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise AppError("AUTH_TOKEN_INVALID")
    if not user.is_active:
        raise AppError("AUTH_USER_DISABLED")
    return principal_from_user(user, claims.jti, claims.exp)


def _principal_from_api_key(token: str, prefix: str) -> Principal:
    key = (ApiKey.select(ApiKey, Role, Project).join(Role).switch(ApiKey).join(Project)
           .where(ApiKey.prefix == prefix).first())
    now = utcnow()
    if key is None or not constant_time_equal(key.key_hash, sha256_hex(token)):
        raise AppError("AUTH_TOKEN_INVALID", {"reason": "Неизвестный API-ключ"})
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise AppError("AUTH_TOKEN_INVALID", {"reason": "API-ключ отозван или истёк"})
    # Touch at most once a minute: a hot key must not turn every request into a write.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.update(last_used_at=now).where(ApiKey.id == key.id).execute()
    return Principal(kind="api_key", org_id=key.project.org_id, id=key.id, label=f"api_key:{key.prefix}",
                     api_key=key, grants=[(key.role.name, key.project_id)])


def resolve_project(principal: Principal, raw_project_id: str | None) -> Project:
    """The project a request targets, if the principal may see it at all (else NOT_FOUND)."""
    if principal.kind == "api_key" and not raw_project_id:
        raw_project_id = str(principal.api_key.project_id)  # type: ignore[union-attr]
    if not raw_project_id:
        raise AppError("VALIDATION_FAILED", {"fields": {
            "X-Project-Id": "Укажите проект: заголовок X-Project-Id или параметр project_id"}})
    try:
        project_id = uuid.UUID(str(raw_project_id))
    except ValueError:
        raise NotFound("project", raw_project_id)
    project = Project.get_or_none((Project.id == project_id) & (Project.org == principal.org_id))
    if project is None or not principal.project_roles(project.id):
        raise NotFound("project", raw_project_id)
    return project


def require(principal: Principal, permission: str, project: Project | None) -> None:
    """Raise PERMISSION_DENIED unless the principal holds the permission where it applies."""
    if not principal.can(permission, project.id if project is not None else None):
        raise PermissionDenied(permission)
