"""Every error leaves the API in the spec 9.1 envelope, with the trace id in its details."""
from __future__ import annotations

import logging

import peewee as pw
import redis

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

from core.errors import AppError, error_envelope

log = logging.getLogger("voiceai.web")

_HTTP_TO_CODE = {400: "BAD_REQUEST", 401: "AUTH_REQUIRED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
                 415: "BAD_REQUEST", 422: "VALIDATION_FAILED", 429: "RATE_LIMITED",
                 503: "SERVICE_UNAVAILABLE"}


def _respond(code: str, status: int, details: dict | None = None, headers: dict | None = None):
    details = dict(details or {})
    details["trace_id"] = g.get("trace_id", "")
    resp = jsonify(error_envelope(code, details))
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def _app_error(exc: AppError):
        headers = {}
        if "retry_after_s" in exc.details:
            headers["Retry-After"] = str(exc.details["retry_after_s"])
        if exc.http_status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="voiceai"'
        return _respond(exc.code, exc.http_status, exc.details, headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = _HTTP_TO_CODE.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
        headers = {}
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return _respond(code, status, {}, headers)

    @app.errorhandler(pw.IntegrityError)
    def _integrity(exc: pw.IntegrityError):
        return _respond("CONFLICT", 409, {"reason": "Нарушено ограничение уникальности или связи"})

    @app.errorhandler(pw.OperationalError)
    def _db_down(exc: pw.OperationalError):
        log.exception("database unavailable")
        return _respond("SERVICE_UNAVAILABLE", 503, {"component": "database"})

    @app.errorhandler(redis.exceptions.ConnectionError)
    def _redis_down(exc: Exception):
        log.exception("redis unavailable")
        return _respond("SERVICE_UNAVAILABLE", 503, {"component": "redis"})

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception):
        log.exception("unhandled error", extra={"trace_id": g.get("trace_id")})
        return _respond("INTERNAL_ERROR", 500)
