"""Declaring API endpoints: one permission, request schema and response schemas per route.

Every API view is registered through ``ApiGroup.route``; the metadata it attaches is what the
request pipeline enforces (authentication, RBAC, body validation) and what the OpenAPI document
publishes. A route registered any other way has no metadata and is refused (fail closed), and a
test walks the URL map to prove that no such route exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from flask import Blueprint

from core.security.rbac import PERMISSIONS

META_ATTR = "_voiceai_route"
# Pseudo-permission: any authenticated principal (own session endpoints such as /auth/me).
AUTHENTICATED = "authenticated"


@dataclass(frozen=True)
class RouteMeta:
    permission: str | None          # None only for public routes
    public: bool
    summary: str
    group: str
    body: dict[str, Any] | None
    responses: dict[int, dict[str, Any] | None]
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    project_scoped: bool = False     # the request must name a project (header, query or path)
    mutating_audit: bool = True      # mutating requests write audit_logs (always true for the API)
    raw_body: bool = False           # multipart / file uploads: body schema not applied


class ApiGroup:
    """A blueprint for one API group of spec 9.2 plus the metadata of its routes."""

    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.title = title
        self.blueprint = Blueprint(f"api_{name}", __name__)

    def route(self, rule: str, methods: list[str], *, permission: str | None = None,
              public: bool = False, summary: str = "", body: dict[str, Any] | None = None,
              responses: dict[int, dict[str, Any] | None] | None = None,
              query: dict[str, dict[str, Any]] | None = None, raw_body: bool = False
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if public == (permission is not None):
            raise ValueError(f"{rule}: declare exactly one of permission=... or public=True")
        if permission is not None and permission != AUTHENTICATED and permission not in PERMISSIONS:
            raise ValueError(f"{rule}: unknown permission {permission!r}")
        project_scoped = bool(permission and permission != AUTHENTICATED
                              and PERMISSIONS[permission].scope.value == "project")

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            meta = RouteMeta(permission=permission, public=public, summary=summary or (view.__doc__ or "").strip().split("\n")[0],
                             group=self.title, body=body, responses=dict(responses or {200: None}),
                             query=dict(query or {}), project_scoped=project_scoped, raw_body=raw_body)
            setattr(view, META_ATTR, meta)
            self.blueprint.add_url_rule(rule, view_func=view, methods=methods)
            return view

        return decorator


def route_meta(view: Callable[..., Any] | None) -> RouteMeta | None:
    return getattr(view, META_ATTR, None) if view is not None else None


def public_view(view: Callable[..., Any], summary: str, group: str = "System") -> Callable[..., Any]:
    """Mark a non-API view (health, docs, cabinet pages) as deliberately public."""
    setattr(view, META_ATTR, RouteMeta(permission=None, public=True, summary=summary, group=group,
                                       body=None, responses={200: None}))
    return view
