"""The web cabinet: server-rendered Russian pages (Flask/Jinja + light vanilla JS) on top of /api.

Pages go through the same request pipeline as the API: a page declares a permission
(``web.cabinet.pages.page``), the cabinet's session hook turns the HttpOnly session cookie into the
``Authorization`` header the pipeline authenticates, and the chosen project into ``X-Project-Id``.
The JavaScript of a page talks to ``/api`` with the access token, so every datum a page shows is
checked by the API's RBAC as well. See docs/cabinet.md.
"""
from __future__ import annotations

from flask import Flask


def register_cabinet(app: Flask) -> None:
    """Register the cabinet blueprint, its session hook (before the pipeline) and static files."""
    from web.cabinet import session, talk, views  # noqa: F401 - importing registers the pages
    app.before_request(session.inject_credentials)
    app.register_blueprint(views.bp, url_prefix="/cabinet")
    session.expose_static(app)
