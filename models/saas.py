"""SaaS entities (spec 8.1): orgs, projects, users, roles, user roles, audit log, API keys,
plus the refresh-token families that auth needs.

Tenancy: org -> projects -> everything else. A user belongs to one org; roles are granted per org
(project_id NULL: every project of the org) or per project.
"""
from __future__ import annotations

import peewee as pw

from models.base import BaseModel, JsonField, TimestampField, utcnow


class Org(BaseModel):
    name = pw.CharField(max_length=200)
    slug = pw.CharField(max_length=100, unique=True)
    status = pw.CharField(max_length=20, default="active")
    settings_json = JsonField()

    class Meta:
        table_name = "orgs"


class Project(BaseModel):
    org = pw.ForeignKeyField(Org, backref="projects", on_delete="CASCADE", index=True)
    name = pw.CharField(max_length=200)
    timezone = pw.CharField(max_length=64, default="Europe/Moscow")
    default_language = pw.CharField(max_length=16, default="ru-RU")
    recording_retention_days = pw.IntegerField(default=90)
    settings_json = JsonField()
    archived_at = TimestampField(null=True)

    class Meta:
        table_name = "projects"
        indexes = ((("org", "name"), True),)


class ProjectScoped(BaseModel):
    """Base for every row that belongs to a project; queries go through ``for_project``."""

    project = pw.ForeignKeyField(Project, on_delete="CASCADE", index=True)

    @classmethod
    def for_project(cls, project_id: object) -> pw.ModelSelect:
        return cls.select().where(cls.project == project_id)


class User(BaseModel):
    org = pw.ForeignKeyField(Org, backref="users", on_delete="CASCADE", index=True)
    email = pw.CharField(max_length=254, unique=True)
    full_name = pw.CharField(max_length=200, default="")
    password_hash = pw.CharField(max_length=255)
    is_active = pw.BooleanField(default=True)
    last_login_at = TimestampField(null=True)

    class Meta:
        table_name = "users"


class Role(BaseModel):
    """A named role; its permissions come from core.security.rbac (the documented matrix)."""

    name = pw.CharField(max_length=50, unique=True)
    title = pw.CharField(max_length=100)
    permissions_json = JsonField(default=list)

    class Meta:
        table_name = "roles"


class UserRole(BaseModel):
    user = pw.ForeignKeyField(User, backref="roles", on_delete="CASCADE", index=True)
    role = pw.ForeignKeyField(Role, on_delete="RESTRICT", index=True)
    org = pw.ForeignKeyField(Org, on_delete="CASCADE", index=True)
    project = pw.ForeignKeyField(Project, null=True, on_delete="CASCADE", index=True)

    class Meta:
        table_name = "user_roles"
        indexes = ((("user", "role", "project"), True),)


class AuditLog(BaseModel):
    # NULL org: a request that failed before anyone was identified (bad login, missing token).
    org = pw.ForeignKeyField(Org, null=True, on_delete="CASCADE", index=True)
    project = pw.ForeignKeyField(Project, null=True, on_delete="SET NULL", index=True)
    actor_type = pw.CharField(max_length=20)  # user | api_key | system
    actor_id = pw.UUIDField(null=True, index=True)
    actor_label = pw.CharField(max_length=254, default="")
    action = pw.CharField(max_length=100, index=True)
    entity_type = pw.CharField(max_length=50, index=True)
    entity_id = pw.CharField(max_length=64, null=True, index=True)
    changes_json = JsonField()  # {"before": {...}, "after": {...}} with secrets masked
    ip = pw.CharField(max_length=64, null=True)
    user_agent = pw.CharField(max_length=300, null=True)
    trace_id = pw.CharField(max_length=64, index=True)
    status_code = pw.IntegerField(null=True)

    class Meta:
        table_name = "audit_logs"
        indexes = ((("org", "created_at"), False),)


class ApiKey(ProjectScoped):
    name = pw.CharField(max_length=100)
    prefix = pw.CharField(max_length=16, unique=True)  # shown to users to tell keys apart
    key_hash = pw.CharField(max_length=128)
    role = pw.ForeignKeyField(Role, on_delete="RESTRICT")
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL")
    last_used_at = TimestampField(null=True)
    expires_at = TimestampField(null=True)
    revoked_at = TimestampField(null=True)

    class Meta:
        table_name = "api_keys"


class RefreshToken(BaseModel):
    """One issued refresh token; rotation chains tokens of a login into one family."""

    user = pw.ForeignKeyField(User, on_delete="CASCADE", index=True)
    family_id = pw.UUIDField(index=True)
    token_hash = pw.CharField(max_length=128, unique=True)
    expires_at = TimestampField()
    used_at = TimestampField(null=True)
    revoked_at = TimestampField(null=True)
    ip = pw.CharField(max_length=64, null=True)
    user_agent = pw.CharField(max_length=300, null=True)

    class Meta:
        table_name = "refresh_tokens"


__all__ = ["Org", "Project", "ProjectScoped", "User", "Role", "UserRole", "AuditLog", "ApiKey",
           "RefreshToken", "utcnow"]
