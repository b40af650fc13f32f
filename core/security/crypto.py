"""Authenticated encryption for secrets at rest (every ``*_encrypted`` column).

Format: ``v1:<key id>:<urlsafe base64 of 12-byte nonce + AES-256-GCM ciphertext+tag>``. The key id
lets several keys coexist: the first configured key encrypts, every configured key decrypts, so a
key is rotated by putting a new key first and re-encrypting (``voiceai secrets rotate``). The
optional ``context`` (e.g. ``"sip_connections.password"``) is bound as associated data so a
ciphertext cannot be moved to another column.
"""
from __future__ import annotations

import base64
import os
import secrets as _secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1"


class CryptoError(Exception):
    """Raised for missing keys, unknown key ids and tampered ciphertexts."""


def generate_key() -> str:
    """A fresh 256-bit key in the ``kid:base64`` form VOICEAI_ENCRYPTION_KEYS expects."""
    kid = _secrets.token_hex(4)
    return f"{kid}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


@dataclass(frozen=True)
class Keyring:
    """Ordered keys: ``keys[0]`` is the active (encrypting) key."""

    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, spec: str) -> "Keyring":
        keys: list[tuple[str, bytes]] = []
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            kid, sep, b64 = item.partition(":")
            if not sep or not kid:
                raise CryptoError("VOICEAI_ENCRYPTION_KEYS entries must look like 'kid:base64key'")
            try:
                raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
            except ValueError as exc:
                raise CryptoError(f"key {kid!r} is not valid base64") from exc
            if len(raw) != 32:
                raise CryptoError(f"key {kid!r} must be 32 bytes (AES-256), got {len(raw)}")
            keys.append((kid, raw))
        if not keys:
            raise CryptoError("no encryption key configured: set VOICEAI_ENCRYPTION_KEYS")
        if len({k for k, _ in keys}) != len(keys):
            raise CryptoError("duplicate key id in VOICEAI_ENCRYPTION_KEYS")
        return cls(tuple(keys))

    @property
    def active_kid(self) -> str:
        return self.keys[0][0]

    def _key(self, kid: str) -> bytes:
        for k, raw in self.keys:
            if k == kid:
                return raw
        raise CryptoError(f"unknown encryption key id {kid!r}: it was removed from the keyring")

    def encrypt(self, plaintext: str, context: str = "") -> str:
        kid, key = self.keys[0]
        nonce = os.urandom(12)
        ct = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8") or None)
        return f"{PREFIX}:{kid}:{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str, context: str = "") -> str:
        try:
            prefix, kid, b64 = token.split(":", 2)
        except ValueError as exc:
            raise CryptoError("not a VoiceAI ciphertext") from exc
        if prefix != PREFIX:
            raise CryptoError(f"unsupported ciphertext version {prefix!r}")
        blob = base64.urlsafe_b64decode(b64.encode())
        try:
            return AESGCM(self._key(kid)).decrypt(blob[:12], blob[12:],
                                                  context.encode("utf-8") or None).decode("utf-8")
        except InvalidTag as exc:
            raise CryptoError("ciphertext failed authentication (wrong key, context or tampered)") from exc

    def needs_rotation(self, token: str) -> bool:
        return token.split(":", 2)[1] != self.active_kid

    def rotate(self, token: str, context: str = "") -> str:
        """Re-encrypt under the active key (no-op for tokens already under it)."""
        if not self.needs_rotation(token):
            return token
        return self.encrypt(self.decrypt(token, context), context)


_keyring: Keyring | None = None


def keyring() -> Keyring:
    """The process keyring built from settings (cached)."""
    global _keyring
    if _keyring is None:
        from core.config import get_settings
        _keyring = Keyring.parse(get_settings().encryption_keys)
    return _keyring


def reset_keyring() -> None:
    global _keyring
    _keyring = None


def encrypt_secret(plaintext: str, context: str = "") -> str:
    return keyring().encrypt(plaintext, context)


def decrypt_secret(token: str, context: str = "") -> str:
    return keyring().decrypt(token, context)
