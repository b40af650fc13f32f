"""Declaring cabinet pages with the same route metadata the API uses (permission, public)."""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint

from core.security.rbac import PERMISSIONS
from web.api.registry import AUTHENTICATED, META_ATTR, RouteMeta

bp = Blueprint("cabinet", __name__)


def page(rule: str, methods: list[str] | None = None, *, permission: str | None = None, public: bool = False,
         summary: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a cabinet view; the request pipeline authenticates and checks ``permission``."""
    if public == (permission is not None):
        raise ValueError(f"{rule}: declare exactly one of permission=... or public=True")
    if permission is not None and permission != AUTHENTICATED and permission not in PERMISSIONS:
        raise ValueError(f"{rule}: unknown permission {permission!r}")
    project_scoped = bool(permission and permission != AUTHENTICATED
                          and PERMISSIONS[permission].scope.value == "project")

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        meta = RouteMeta(permission=permission, public=public, summary=summary or (view.__doc__ or "").strip(),
                         group="Cabinet", body=None, responses={200: None}, project_scoped=project_scoped)
        setattr(view, META_ATTR, meta)
        bp.add_url_rule(rule, view_func=view, methods=methods or ["GET"])
        return view

    return decorator
