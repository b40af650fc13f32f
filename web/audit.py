"""Audit rows for mutating requests, written in the request's own transaction.

Views describe what they changed with ``record(...)``; the pipeline writes the row after the view
(web/app.py), so a mutating request that forgets to describe itself is still audited with its
route, masked body and status.
"""
from __future__ import annotations

import json
from typing import Any

from flask import g, request

from core.audit import diff_changes, mask_secrets
from models.saas import AuditLog

_MAX_BODY_CHARS = 4000


def record(action: str, entity_type: str, entity_id: Any = None, *, before: dict | None = None,
           after: dict | None = None, project_id: Any = None, org_id: Any = None) -> None:
    """Describe the change this request makes (called by views)."""
    g.audit = {"action": action, "entity_type": entity_type,
               "entity_id": str(entity_id) if entity_id is not None else None,
               "changes": diff_changes(before, after), "project_id": project_id, "org_id": org_id}


def _request_summary() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None:
        return {}
    text = json.dumps(mask_secrets(body), ensure_ascii=False, default=str)
    if len(text) > _MAX_BODY_CHARS:
        return {"request_truncated": text[:_MAX_BODY_CHARS]}
    return {"request": json.loads(text)}


def write(status_code: int) -> AuditLog:
    principal = g.get("principal")
    project = g.get("project")
    info = g.get("audit") or {}
    rule = request.url_rule.rule if request.url_rule else request.path
    changes = info.get("changes") if status_code < 400 and info else _request_summary()
    org_id = info.get("org_id") or (principal.org_id if principal else None)
    actor = principal.audit_actor() if principal else g.get("audit_actor") or \
        {"actor_type": "anonymous", "actor_id": None, "actor_label": ""}
    if org_id is None and g.get("audit_org_id"):
        org_id = g.audit_org_id
    return AuditLog.create(
        org=org_id,
        project=info.get("project_id") or (project.id if project is not None else None),
        action=info.get("action") or f"{request.method} {rule}",
        entity_type=info.get("entity_type") or (request.blueprint or "api").removeprefix("api_"),
        entity_id=info.get("entity_id"),
        changes_json=changes or {},
        ip=_ip(), user_agent=(request.user_agent.string or "")[:300],
        trace_id=g.get("trace_id", ""), status_code=status_code, **actor)


def _ip() -> str | None:
    from web.app import client_ip
    return client_ip()
