"""Password hashing with Argon2id (argon2-cffi defaults follow RFC 9106 low-memory profile)."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# A valid hash of a random password: verifying against it when the user does not exist keeps the
# login timing the same whether or not the e-mail is registered.
_DUMMY_HASH = _hasher.hash("voiceai-timing-equaliser")

MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; also burns the same time when there is no user."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problems(password: str) -> list[str]:
    """Russian reasons a password is too weak (empty list: acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"Пароль должен быть не короче {MIN_PASSWORD_LENGTH} символов")
    if password.isdigit() or password.isalpha():
        problems.append("Пароль должен содержать и буквы, и цифры или другие символы")
    return problems
