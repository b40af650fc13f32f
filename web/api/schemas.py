"""JSON Schemas of request and response bodies, shared by validation and the OpenAPI document.

Response schemas are referenced by name (``ref("Project")``) and collected under
``components.schemas``; tests validate every API response against them.
"""
from __future__ import annotations

from typing import Any

from core.security.rbac import PERMISSIONS, ROLES

UUID = {"type": "string", "format": "uuid"}
TS = {"type": "string", "format": "date-time"}
TS_NULL = {"type": ["string", "null"], "format": "date-time"}
ROLE_NAME = {"type": "string", "enum": sorted(ROLES)}


def iso(value: Any) -> str | None:
    """A timestamp (or date) as ISO 8601 for responses; None stays None."""
    return value.isoformat() if value else None


def sid(value: Any) -> str | None:
    """An id (UUID or foreign key value) as a string for responses; None stays None."""
    return str(value) if value else None


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(name: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "next_cursor"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": ref(name)},
                           "next_cursor": {"type": ["string", "null"]}}}


def list_of(name: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": ref(name)}}}


def obj(required: list[str], props: dict[str, Any], additional: bool = False) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props, "additionalProperties": additional}


NAME = {"type": "string", "minLength": 1, "maxLength": 200}
PASSWORD = {"type": "string", "minLength": 1, "maxLength": 200}

_API_KEY_PROPS = {
    "id": UUID, "project_id": UUID, "name": {"type": "string"}, "prefix": {"type": "string"},
    "role": ROLE_NAME, "created_at": TS, "last_used_at": TS_NULL, "expires_at": TS_NULL, "revoked_at": TS_NULL}

COMPONENTS: dict[str, dict[str, Any]] = {
    "Error": obj(["error"], {"error": obj(["code", "human_title", "human_how_to_fix", "details"], {
        "code": {"type": "string"},
        "human_title": {"type": "string"},
        "human_how_to_fix": {"type": "array", "items": {"type": "string"}},
        "details": {"type": "object", "required": ["trace_id"],
                    "properties": {"trace_id": {"type": "string"}}},
    })}),
    "TokenPair": obj(["access_token", "refresh_token", "expires_in", "token_type"], {
        "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
        "expires_in": {"type": "integer"}, "token_type": {"const": "Bearer"}}),
    "Ok": obj(["ok"], {"ok": {"type": "boolean"}}),
    "Project": obj(["id", "org_id", "name", "timezone", "default_language", "recording_retention_days",
                    "created_at"], {
        "id": UUID, "org_id": UUID, "name": {"type": "string"}, "timezone": {"type": "string"},
        "default_language": {"type": "string"}, "recording_retention_days": {"type": "integer"},
        "settings": {"type": "object"}, "created_at": TS, "updated_at": TS}),
    "RoleGrant": obj(["role", "project_id"], {"role": ROLE_NAME, "project_id": {"type": ["string", "null"]}}),
    "User": obj(["id", "org_id", "email", "full_name", "is_active", "roles", "created_at"], {
        "id": UUID, "org_id": UUID, "email": {"type": "string"}, "full_name": {"type": "string"},
        "is_active": {"type": "boolean"}, "roles": {"type": "array", "items": ref("RoleGrant")},
        "last_login_at": TS_NULL, "created_at": TS}),
    "Me": obj(["user", "org", "projects"], {
        "user": ref("User"),
        "org": obj(["id", "name"], {"id": UUID, "name": {"type": "string"}, "slug": {"type": "string"}}),
        "org_permissions": {"type": "array", "items": {"type": "string"}},
        "projects": {"type": "array", "items": obj(["id", "name", "permissions"], {
            "id": UUID, "name": {"type": "string"},
            "permissions": {"type": "array", "items": {"type": "string"}}})}}),
    "ApiKey": obj(["id", "project_id", "name", "prefix", "role", "created_at"], _API_KEY_PROPS),
    "ApiKeyCreated": obj(["id", "project_id", "name", "prefix", "role", "created_at", "key"],
                         {**_API_KEY_PROPS, "key": {"type": "string",
                                                    "description": "Значение ключа; показывается один раз"}}),
    "AuditLog": obj(["id", "action", "entity_type", "actor_type", "trace_id", "created_at"], {
        "id": UUID, "org_id": {"type": ["string", "null"]}, "project_id": {"type": ["string", "null"]},
        "actor_type": {"type": "string"}, "actor_id": {"type": ["string", "null"]},
        "actor_label": {"type": "string"}, "action": {"type": "string"},
        "entity_type": {"type": "string"}, "entity_id": {"type": ["string", "null"]},
        "changes": {"type": "object"}, "ip": {"type": ["string", "null"]},
        "trace_id": {"type": "string"}, "status_code": {"type": ["integer", "null"]}, "created_at": TS}),
    "Role": obj(["name", "title", "description", "permissions"], {
        "name": ROLE_NAME, "title": {"type": "string"}, "description": {"type": "string"},
        "permissions": {"type": "array", "items": {"type": "string", "enum": sorted(PERMISSIONS)}}}),
    "Health": obj(["status"], {"status": {"type": "string"},
                               "checks": {"type": "object", "additionalProperties": {"type": "string"}}}),
}

# Request bodies.
LOGIN = obj(["email", "password"], {"email": {"type": "string", "format": "email", "maxLength": 254},
                                    "password": PASSWORD})
REFRESH = obj(["refresh_token"], {"refresh_token": {"type": "string", "minLength": 1, "maxLength": 200}})
LOGOUT = obj([], {"refresh_token": {"type": "string", "maxLength": 200}})
PROJECT_CREATE = obj(["name"], {
    "name": NAME,
    "timezone": {"type": "string", "format": "timezone"},
    "default_language": {"type": "string", "enum": ["ru-RU", "en-US", "kk-KZ", "uz-UZ"]},
    "recording_retention_days": {"type": "integer", "minimum": 1, "maximum": 3650},
    "settings": {"type": "object"},
})
PROJECT_UPDATE = {**PROJECT_CREATE, "required": [], "minProperties": 1}
GRANT_IN = obj(["role"], {"role": ROLE_NAME, "project_id": {"type": ["string", "null"], "format": "uuid"}})
USER_CREATE = obj(["email", "password", "roles"], {
    "email": {"type": "string", "format": "email", "maxLength": 254},
    "password": PASSWORD, "full_name": {"type": "string", "maxLength": 200},
    "roles": {"type": "array", "minItems": 1, "items": GRANT_IN}})
USER_UPDATE = {**obj([], {"full_name": {"type": "string", "maxLength": 200}, "is_active": {"type": "boolean"},
                          "password": PASSWORD,
                          "roles": {"type": "array", "minItems": 1, "items": GRANT_IN}}), "minProperties": 1}
API_KEY_CREATE = obj(["name", "role"], {"name": {"type": "string", "minLength": 1, "maxLength": 100},
                                        "role": ROLE_NAME, "expires_at": TS})
