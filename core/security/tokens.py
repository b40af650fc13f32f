"""Access tokens (short-lived JWT, HS256) and opaque secrets (refresh tokens, API keys).

Refresh tokens and API keys are random high-entropy strings; only their SHA-256 is stored, so a
database leak yields nothing usable. Access tokens carry a ``jti`` so logout can deny-list them
until they expire.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from core.errors import AppError

ISSUER = "voiceai"
API_KEY_PREFIX = "vai"


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    org_id: str
    jti: str
    exp: int


def issue_access_token(secret_key: str, user_id: str, org_id: str, ttl_s: int,
                       now: float | None = None) -> tuple[str, AccessClaims]:
    now = time.time() if now is None else now
    claims = AccessClaims(user_id=user_id, org_id=org_id, jti=uuid.uuid4().hex, exp=int(now) + ttl_s)
    token = jwt.encode({"sub": user_id, "org": org_id, "jti": claims.jti, "typ": "access",
                        "iss": ISSUER, "iat": int(now), "exp": claims.exp},
                       secret_key, algorithm="HS256")
    return token, claims


def decode_access_token(secret_key: str, token: str) -> AccessClaims:
    """Validate signature, expiry, issuer and type; raise catalog errors otherwise."""
    try:
        data: dict[str, Any] = jwt.decode(token, secret_key, algorithms=["HS256"], issuer=ISSUER,
                                          options={"require": ["exp", "sub", "jti", "iss"]})
    except jwt.ExpiredSignatureError as exc:
        raise AppError("AUTH_TOKEN_EXPIRED") from exc
    except jwt.PyJWTError as exc:
        raise AppError("AUTH_TOKEN_INVALID") from exc
    if data.get("typ") != "access":
        raise AppError("AUTH_TOKEN_INVALID")
    return AccessClaims(user_id=data["sub"], org_id=data.get("org", ""), jti=data["jti"],
                        exp=int(data["exp"]))


def new_refresh_token() -> str:
    return "rt_" + secrets.token_urlsafe(40)


def new_api_key() -> tuple[str, str]:
    """(full key shown once, public prefix). Format: ``vai_<prefix>_<secret>``."""
    prefix = secrets.token_hex(6)
    return f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def parse_api_key(key: str) -> str | None:
    """The prefix of a well-formed API key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


def issue_scoped_token(secret_key: str, typ: str, claims: dict[str, Any], ttl_s: int,
                       now: float | None = None) -> tuple[str, int]:
    """A short-lived signed token for one purpose (``typ``), e.g. a browser voice session.

    Separate types keep a token minted for one door from opening another; returns (token, exp).
    """
    now = time.time() if now is None else now
    exp = int(now) + ttl_s
    payload = {**claims, "typ": typ, "iss": ISSUER, "iat": int(now), "exp": exp, "jti": uuid.uuid4().hex}
    return jwt.encode(payload, secret_key, algorithm="HS256"), exp


def decode_scoped_token(secret_key: str, token: str, typ: str) -> dict[str, Any]:
    """Claims of a valid token of type ``typ``; catalog errors for expired, forged or wrong-type tokens."""
    try:
        data: dict[str, Any] = jwt.decode(token, secret_key, algorithms=["HS256"], issuer=ISSUER,
                                          options={"require": ["exp", "jti", "iss"]})
    except jwt.ExpiredSignatureError as exc:
        raise AppError("AUTH_TOKEN_EXPIRED") from exc
    except jwt.PyJWTError as exc:
        raise AppError("AUTH_TOKEN_INVALID") from exc
    if data.get("typ") != typ:
        raise AppError("AUTH_TOKEN_INVALID")
    return data
