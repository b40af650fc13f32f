"""API registration: every group's blueprint under /api plus health and documentation routes."""
from __future__ import annotations

from flask import Flask, current_app, jsonify

from web.api.registry import public_view

API_PREFIX = "/api"


def _groups():
    from web.api import api_keys, audit_logs, auth, calls, numbers, projects, realtime, system, users
    return [auth.group, projects.group, users.group, api_keys.group, audit_logs.group, numbers.group,
            calls.group, realtime.group, system.group, _talk_group(), _campaigns_group(), _agents_group(), _kb_group(),
            *_tools_groups()]


def _tools_groups():
    from web.api import calendar, crm
    return [crm.group, calendar.group]


def _kb_group():
    from web.api import kb
    return kb.group


def _agents_group():
    from web.api import agents
    return agents.group


def _campaigns_group():
    from web.api import campaigns
    return campaigns.group


def _talk_group():
    from web.api import talk
    return talk.group


def register_api(app: Flask) -> None:
    for group in _groups():
        app.register_blueprint(group.blueprint, url_prefix=API_PREFIX)
    from web.api import system
    for rule, view in (("/healthz", system.healthz), ("/readyz", system.readyz)):
        app.add_url_rule(rule, endpoint=f"root_{view.__name__}", view_func=view)
    app.add_url_rule("/", endpoint="root_index", view_func=system.index)
