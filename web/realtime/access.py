"""Who holds a realtime token, checked again when the stream is opened (not only when issued).

A token lives a minute, but a user may be disabled, an API key revoked or a role withdrawn in that
minute: the principal is reloaded from the database and must still hold ``realtime.subscribe`` on
the token's project, else the connection is refused with the usual catalog error.
"""
from __future__ import annotations

import uuid

from core.errors import AppError
from models.base import utcnow
from models.saas import ApiKey, Project, Role
from web.principal import Principal, principal_from_user, require, resolve_project
from web.realtime.tokens import RealtimeClaims
from models.saas import User

PERMISSION = "realtime.subscribe"


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise AppError("AUTH_TOKEN_INVALID") from exc


def load_principal(claims: RealtimeClaims) -> Principal:
    """The token's user or API key as it is now."""
    pid = _uuid(claims.principal_id)
    if claims.principal_kind == "user":
        user = User.get_or_none(User.id == pid)
        if user is None or str(user.org_id) != claims.org_id:
            raise AppError("AUTH_TOKEN_INVALID")
        if not user.is_active:
            raise AppError("AUTH_USER_DISABLED")
        return principal_from_user(user)
    key = ApiKey.select(ApiKey, Role, Project).join(Role).switch(ApiKey).join(Project).where(ApiKey.id == pid).first()
    if key is None or str(key.project.org_id) != claims.org_id:
        raise AppError("AUTH_TOKEN_INVALID")
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= utcnow()):
        raise AppError("AUTH_TOKEN_INVALID", {"reason": "API-ключ отозван или истёк"})
    return Principal(kind="api_key", org_id=key.project.org_id, id=key.id, label=f"api_key:{key.prefix}",
                     api_key=key, grants=[(key.role.name, key.project_id)])


def authorize(claims: RealtimeClaims) -> Project:
    """The project whose stream the token opens, if its holder may still subscribe to it."""
    principal = load_principal(claims)
    project = resolve_project(principal, claims.project_id)
    require(principal, PERMISSION, project)
    return project
