"""API registration: every group's blueprint under /api plus health and documentation routes."""
from __future__ import annotations

from flask import Flask, current_app, jsonify

from web.api.registry import public_view

API_PREFIX = "/api"


def _groups():
    from web.api import api_keys, audit_logs, auth, calls, numbers, projects, system, users
    return [auth.group, projects.group, users.group, api_keys.group, audit_logs.group, numbers.group,
            calls.group, system.group]


def register_api(app: Flask) -> None:
    for group in _groups():
        app.register_blueprint(group.blueprint, url_prefix=API_PREFIX)
    from web.api import system
    for rule, view in (("/healthz", system.healthz), ("/readyz", system.readyz)):
        app.add_url_rule(rule, endpoint=f"root_{view.__name__}", view_func=view)
    app.add_url_rule("/", endpoint="root_index", view_func=system.index)
