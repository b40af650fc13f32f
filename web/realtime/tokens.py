"""Short-lived realtime tokens: who may open the event stream of which project.

Browsers cannot put an Authorization header on a WebSocket, so the cabinet first asks
``GET /api/realtime/token`` (authenticated, RBAC-checked) and passes the result in the stream URL.
The token is an HS256 JWT with its own type (it is never accepted as an access token and an access
token is never accepted here), bound to the principal (user or API key) and the project.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from core.errors import AppError
from core.security.tokens import ISSUER

TOKEN_TYPE = "realtime"


@dataclass(frozen=True)
class RealtimeClaims:
    principal_kind: str   # "user" | "api_key"
    principal_id: str
    org_id: str
    project_id: str
    exp: int


def issue(secret_key: str, claims_kind: str, principal_id: str, org_id: str, project_id: str,
          ttl_s: int, now: float | None = None) -> tuple[str, int]:
    """(token, expiry unix time)."""
    now = time.time() if now is None else now
    exp = int(now) + ttl_s
    token = jwt.encode({"typ": TOKEN_TYPE, "iss": ISSUER, "sub": principal_id, "knd": claims_kind,
                        "org": org_id, "prj": project_id, "iat": int(now), "exp": exp,
                        "jti": uuid.uuid4().hex}, secret_key, algorithm="HS256")
    return token, exp


def verify(secret_key: str, token: str | None) -> RealtimeClaims:
    """Signature, expiry, issuer and type; AUTH_* catalog errors otherwise."""
    if not token:
        raise AppError("AUTH_REQUIRED", {"reason": "Нужен параметр token из GET /api/realtime/token"})
    try:
        data = jwt.decode(token, secret_key, algorithms=["HS256"], issuer=ISSUER,
                          options={"require": ["exp", "sub", "iss"]})
    except jwt.ExpiredSignatureError as exc:
        raise AppError("AUTH_TOKEN_EXPIRED") from exc
    except jwt.PyJWTError as exc:
        raise AppError("AUTH_TOKEN_INVALID") from exc
    if data.get("typ") != TOKEN_TYPE or data.get("knd") not in ("user", "api_key") or not data.get("prj"):
        raise AppError("AUTH_TOKEN_INVALID", {"reason": "Это не токен потока событий"})
    return RealtimeClaims(principal_kind=data["knd"], principal_id=str(data["sub"]), org_id=str(data.get("org", "")),
                          project_id=str(data["prj"]), exp=int(data["exp"]))
