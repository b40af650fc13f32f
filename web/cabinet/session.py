"""Cabinet sessions: the API's own tokens kept in HttpOnly, SameSite=Strict cookies.

``vai_access`` holds the access JWT the API issues, ``vai_refresh`` the refresh token,
``vai_project`` the chosen project and ``vai_csrf`` a random token every form post (and the
JavaScript's token renewal) must repeat (double submit). Before the request pipeline runs, the
cookies become the ``Authorization`` and ``X-Project-Id`` headers of cabinet requests only; the API
under /api is never authenticated by cookie, so it needs no CSRF protection.
"""
from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Flask, Response, current_app, request, send_from_directory

from web.api.registry import public_view

ACCESS_COOKIE = "vai_access"
REFRESH_COOKIE = "vai_refresh"
PROJECT_COOKIE = "vai_project"
CSRF_COOKIE = "vai_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/cabinet"


def inject_credentials() -> None:
    """App-level hook registered before the pipeline: cookies -> headers, cabinet pages only."""
    if request.blueprint != "cabinet":
        return
    token = request.cookies.get(ACCESS_COOKIE)
    if token and "HTTP_AUTHORIZATION" not in request.environ:
        request.environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    project = request.cookies.get(PROJECT_COOKIE)
    if project and "HTTP_X_PROJECT_ID" not in request.environ:
        request.environ["HTTP_X_PROJECT_ID"] = project


def csrf_token() -> str:
    """The request's CSRF token (the cookie's, or a fresh one that ``finish`` will set)."""
    from flask import g
    token = request.cookies.get(CSRF_COOKIE) or g.get("new_csrf")
    if not token:
        token = g.new_csrf = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


def _secure() -> bool:
    return request.is_secure


def set_cookie(resp: Response, name: str, value: str, max_age: int | None) -> None:
    resp.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="Strict",
                    secure=_secure())


def set_session(resp: Response, pair: dict[str, Any]) -> None:
    """Store a token pair (``/auth/login`` or ``/auth/refresh`` response) in the cookies."""
    from web.app import settings
    set_cookie(resp, ACCESS_COOKIE, pair["access_token"], int(pair["expires_in"]))
    set_cookie(resp, REFRESH_COOKIE, pair["refresh_token"], settings().refresh_token_ttl_s)


def clear_session(resp: Response) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        resp.delete_cookie(name, path=COOKIE_PATH, samesite="Strict", httponly=True, secure=_secure())


def finish(resp: Response) -> Response:
    """Cabinet after-request: hand out a new CSRF cookie and the security headers."""
    from flask import g
    if g.get("new_csrf") and not request.cookies.get(CSRF_COOKIE):
        set_cookie(resp, CSRF_COOKIE, g.new_csrf, None)
    resp.headers.setdefault("Content-Security-Policy",
                            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                            "media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
                            "form-action 'self'; base-uri 'none'")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    if resp.mimetype == "text/html":
        resp.headers["Cache-Control"] = "no-store"
    return resp


def expose_static(app: Flask) -> None:
    """Serve web/static (the cabinet's CSS/JS, no CDN) as a deliberately public view."""
    def static(filename: str):
        resp = send_from_directory(current_app.static_folder, filename, max_age=300)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    app.view_functions["static"] = public_view(static, "Статические файлы кабинета (CSS, JS)", group="Cabinet")
