"""Audit log listing for admins, filtered and cursor-paginated."""
from __future__ import annotations

import datetime as dt
import uuid

from flask import g, request

from core.errors import ValidationFailed
from models.saas import AuditLog
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup

group = ApiGroup("audit", "Audit")

FILTERS = {
    "actor_id": {"type": "string", "format": "uuid"},
    "action": {"type": "string"},
    "entity_type": {"type": "string"},
    "entity_id": {"type": "string"},
    "project_id": {"type": "string", "format": "uuid"},
    "trace_id": {"type": "string"},
    "since": {"type": "string", "format": "date-time"},
    "until": {"type": "string", "format": "date-time"},
}


def serialize_audit(a: AuditLog) -> dict:
    return {"id": str(a.id), "org_id": str(a.org_id) if a.org_id else None,
            "project_id": str(a.project_id) if a.project_id else None, "actor_type": a.actor_type,
            "actor_id": str(a.actor_id) if a.actor_id else None, "actor_label": a.actor_label,
            "action": a.action, "entity_type": a.entity_type, "entity_id": a.entity_id,
            "changes": a.changes_json or {}, "ip": a.ip, "trace_id": a.trace_id,
            "status_code": a.status_code, "created_at": a.created_at.isoformat()}


def _uuid(name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.args[name])
    except ValueError:
        raise ValidationFailed({name: "Ожидается UUID"})


def _ts(name: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(request.args[name].replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed({name: "Ожидается дата и время в формате ISO 8601"})
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


@group.route("/audit-logs", ["GET"], permission="audit.read", responses={200: S.page_of("AuditLog")},
             query={**PAGE_QUERY, **FILTERS}, summary="Журнал действий организации с фильтрами")
def list_audit():
    q = AuditLog.select().where(AuditLog.org == g.principal.org_id)
    args = request.args
    if "actor_id" in args:
        q = q.where(AuditLog.actor_id == _uuid("actor_id"))
    if "project_id" in args:
        q = q.where(AuditLog.project == _uuid("project_id"))
    for name in ("action", "entity_type", "entity_id", "trace_id"):
        if name in args:
            q = q.where(getattr(AuditLog, name) == args[name])
    if "since" in args:
        q = q.where(AuditLog.created_at >= _ts("since"))
    if "until" in args:
        q = q.where(AuditLog.created_at < _ts("until"))
    return paginate(q, AuditLog.created_at, AuditLog.id, serialize_audit)
