"""Projects API: the tenant unit everything else hangs off."""
from __future__ import annotations

import uuid

from flask import g

from core.errors import AppError
from models.saas import Project
from web import audit
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup

group = ApiGroup("projects", "Projects")

_EDITABLE = ("name", "timezone", "default_language", "recording_retention_days")


def serialize_project(p: Project) -> dict:
    return {"id": str(p.id), "org_id": str(p.org_id), "name": p.name, "timezone": p.timezone,
            "default_language": p.default_language, "recording_retention_days": p.recording_retention_days,
            "settings": p.settings_json or {}, "created_at": p.created_at.isoformat(),
            "updated_at": p.updated_at.isoformat()}


def _name_taken(org_id: uuid.UUID, name: str, exclude: uuid.UUID | None = None) -> bool:
    q = Project.select().where((Project.org == org_id) & (Project.name == name))
    if exclude is not None:
        q = q.where(Project.id != exclude)
    return q.exists()


@group.route("/projects", ["POST"], permission="projects.create", body=S.PROJECT_CREATE,
             responses={201: S.ref("Project"), 409: None, 422: None}, summary="Создать проект")
def create_project():
    body = g.body
    if _name_taken(g.principal.org_id, body["name"]):
        raise AppError("CONFLICT", {"fields": {"name": "Проект с таким названием уже есть"}})
    project = Project.create(org=g.principal.org_id, name=body["name"],
                             timezone=body.get("timezone", "Europe/Moscow"),
                             default_language=body.get("default_language", "ru-RU"),
                             recording_retention_days=body.get("recording_retention_days", 90),
                             settings_json=body.get("settings", {}))
    data = serialize_project(project)
    audit.record("project.create", "project", project.id, after=data, project_id=project.id)
    return data, 201


@group.route("/projects", ["GET"], permission="authenticated", responses={200: S.page_of("Project")},
             query=PAGE_QUERY, summary="Проекты, доступные текущему пользователю или ключу")
def list_projects():
    principal = g.principal
    q = Project.select().where(Project.org == principal.org_id)
    visible = principal.visible_project_ids()
    if visible is not None:
        q = q.where(Project.id.in_(list(visible) or [uuid.UUID(int=0)]))
    return paginate(q, Project.created_at, Project.id, serialize_project)


@group.route("/projects/<project_id>", ["GET"], permission="projects.read",
             responses={200: S.ref("Project"), 404: None}, summary="Проект")
def get_project(project_id: str):
    return serialize_project(g.project)


@group.route("/projects/<project_id>", ["PATCH"], permission="projects.update", body=S.PROJECT_UPDATE,
             responses={200: S.ref("Project"), 404: None, 409: None, 422: None}, summary="Изменить проект")
def update_project(project_id: str):
    project: Project = g.project
    before = serialize_project(project)
    body = g.body
    if "name" in body and _name_taken(project.org_id, body["name"], exclude=project.id):
        raise AppError("CONFLICT", {"fields": {"name": "Проект с таким названием уже есть"}})
    for key in _EDITABLE:
        if key in body:
            setattr(project, key, body[key])
    if "settings" in body:
        project.settings_json = body["settings"]
    project.save()
    after = serialize_project(project)
    audit.record("project.update", "project", project.id, before=before, after=after, project_id=project.id)
    return after
