"""Idempotent reference data and first-run objects (roles, an org, users)."""
from __future__ import annotations

import re
import uuid

from core.security.passwords import hash_password, password_problems
from core.security.rbac import ROLES
from models.saas import Org, Project, Role, User, UserRole


def sync_roles() -> None:
    """Make the roles table match the matrix in core.security.rbac."""
    for role in ROLES.values():
        row = Role.get_or_none(Role.name == role.name)
        perms = sorted(role.permissions)
        if row is None:
            Role.create(name=role.name, title=role.title, permissions_json=perms)
        elif row.title != role.title or row.permissions_json != perms:
            row.title, row.permissions_json = role.title, perms
            row.save()


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or uuid.uuid4().hex[:8]


def create_org(name: str, slug: str | None = None) -> Org:
    slug = slug or slugify(name)
    org = Org.get_or_none(Org.slug == slug)
    return org or Org.create(name=name, slug=slug)


def create_project(org: Org, name: str, timezone: str = "Europe/Moscow") -> Project:
    project = Project.get_or_none((Project.org == org.id) & (Project.name == name))
    return project or Project.create(org=org.id, name=name, timezone=timezone)


def create_user(org: Org, email: str, password: str, role: str, project: Project | None = None,
                full_name: str = "", check_strength: bool = True) -> User:
    """Create a user with one role grant (org-wide unless a project is given)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    if check_strength:
        problems = password_problems(password)
        if problems:
            raise ValueError("; ".join(problems))
    email = email.strip().lower()
    if User.select().where(User.email == email).exists():
        raise ValueError(f"user {email} already exists")
    sync_roles()
    user = User.create(org=org.id, email=email, full_name=full_name, password_hash=hash_password(password))
    UserRole.create(user=user.id, role=Role.get(Role.name == role).id, org=org.id,
                    project=project.id if project else None)
    return user
