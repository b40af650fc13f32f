"""Users and role grants of the caller's org (members management)."""
from __future__ import annotations

import uuid

from flask import g

from core.errors import AppError, NotFound, ValidationFailed
from core.security.passwords import hash_password, password_problems
from models.saas import Project, Role, User, UserRole
from web import audit
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup

group = ApiGroup("users", "Users")


def serialize_user(u: User) -> dict:
    grants = (UserRole.select(UserRole, Role).join(Role).where(UserRole.user == u.id)
              .order_by(Role.name))
    return {"id": str(u.id), "org_id": str(u.org_id), "email": u.email, "full_name": u.full_name,
            "is_active": u.is_active,
            "roles": [{"role": r.role.name, "project_id": str(r.project_id) if r.project_id else None}
                      for r in grants],
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
            "created_at": u.created_at.isoformat()}


def _org_user(user_id: str) -> User:
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        raise NotFound("user", user_id)
    user = User.get_or_none((User.id == uid) & (User.org == g.principal.org_id))
    if user is None:
        raise NotFound("user", user_id)
    return user


def _check_password(password: str) -> None:
    problems = password_problems(password)
    if problems:
        raise ValidationFailed({"password": "; ".join(problems)})


def _grant_rows(grants: list[dict]) -> list[tuple[Role, uuid.UUID | None]]:
    """Validate requested grants: roles exist, projects belong to the caller's org."""
    rows = []
    fields = {}
    for i, grant in enumerate(grants):
        role = Role.get_or_none(Role.name == grant["role"])
        if role is None:
            fields[f"roles.{i}.role"] = "Неизвестная роль"
            continue
        project_id = grant.get("project_id")
        if project_id:
            pid = uuid.UUID(project_id)
            if not Project.select().where((Project.id == pid) & (Project.org == g.principal.org_id)).exists():
                fields[f"roles.{i}.project_id"] = "Проект не найден"
                continue
            rows.append((role, pid))
        else:
            rows.append((role, None))
    if fields:
        raise ValidationFailed(fields)
    if g.principal.kind == "user" and "owner" in {r.name for r, _ in rows} and "owner" not in g.principal.org_roles():
        raise AppError("PERMISSION_DENIED", {"reason": "Роль «Владелец» может выдать только владелец"})
    return rows


def _replace_grants(user: User, rows: list[tuple[Role, uuid.UUID | None]]) -> None:
    UserRole.delete().where(UserRole.user == user.id).execute()
    for role, pid in dict.fromkeys(rows):
        UserRole.create(user=user.id, role=role.id, org=user.org_id, project=pid)


@group.route("/users", ["GET"], permission="members.read", responses={200: S.page_of("User")},
             query=PAGE_QUERY, summary="Пользователи организации")
def list_users():
    q = User.select().where(User.org == g.principal.org_id)
    return paginate(q, User.created_at, User.id, serialize_user)


@group.route("/users", ["POST"], permission="members.manage", body=S.USER_CREATE,
             responses={201: S.ref("User"), 409: None, 422: None}, summary="Добавить пользователя с ролями")
def create_user():
    body = g.body
    _check_password(body["password"])
    email = body["email"].strip().lower()
    if User.select().where(User.email == email).exists():
        raise AppError("CONFLICT", {"fields": {"email": "Пользователь с таким e-mail уже есть"}})
    rows = _grant_rows(body["roles"])
    user = User.create(org=g.principal.org_id, email=email, full_name=body.get("full_name", ""),
                       password_hash=hash_password(body["password"]))
    _replace_grants(user, rows)
    data = serialize_user(user)
    audit.record("user.create", "user", user.id, after=data)
    return data, 201


@group.route("/users/<user_id>", ["GET"], permission="members.read",
             responses={200: S.ref("User"), 404: None}, summary="Пользователь")
def get_user(user_id: str):
    return serialize_user(_org_user(user_id))


@group.route("/users/<user_id>", ["PATCH"], permission="members.manage", body=S.USER_UPDATE,
             responses={200: S.ref("User"), 404: None, 422: None},
             summary="Изменить пользователя: имя, блокировка, пароль, роли")
def update_user(user_id: str):
    user = _org_user(user_id)
    before = serialize_user(user)
    body = g.body
    if any(r["role"] == "owner" for r in before["roles"]) and "owner" not in g.principal.org_roles():
        raise AppError("PERMISSION_DENIED", {"reason": "Изменить владельца может только владелец"})
    if user.id == g.principal.id and (body.get("is_active") is False or "roles" in body):
        raise AppError("CONFLICT", {"reason": "Нельзя отключить себя или изменить свои роли"})
    if "full_name" in body:
        user.full_name = body["full_name"]
    if "is_active" in body:
        user.is_active = body["is_active"]
    if "password" in body:
        _check_password(body["password"])
        user.password_hash = hash_password(body["password"])
    user.save()
    if "roles" in body:
        _replace_grants(user, _grant_rows(body["roles"]))
    after = serialize_user(user)
    if "password" in body:
        before["password"], after["password"] = "old", "new"  # masked in the audit row
    audit.record("user.update", "user", user.id, before=before, after=after)
    after.pop("password", None)
    return after


@group.route("/roles", ["GET"], permission="authenticated", responses={200: S.list_of("Role")},
             summary="Роли и их права (матрица RBAC)")
def list_roles():
    from core.security.rbac import ROLES
    return {"items": [{"name": r.name, "title": r.title, "description": r.description,
                       "permissions": sorted(r.permissions)} for r in ROLES.values()]}
