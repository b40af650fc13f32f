"""Secrets at rest: AES-GCM with key ids, context binding, rotation."""
from __future__ import annotations

import pytest

from core.security.crypto import CryptoError, Keyring, generate_key


def test_roundtrip_and_randomised():
    ring = Keyring.parse(generate_key())
    a = ring.encrypt("s3cret-пароль", "sip_connections.password")
    b = ring.encrypt("s3cret-пароль", "sip_connections.password")
    assert a != b and "s3cret" not in a
    assert ring.decrypt(a, "sip_connections.password") == "s3cret-пароль"


def test_context_and_tamper_detected():
    ring = Keyring.parse(generate_key())
    token = ring.encrypt("x", "a.b")
    with pytest.raises(CryptoError):
        ring.decrypt(token, "c.d")
    import base64
    prefix, kid, body = token.split(":", 2)
    blob = bytearray(base64.urlsafe_b64decode(body))
    for i in (0, 12, len(blob) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(CryptoError):
            ring.decrypt(f"{prefix}:{kid}:{base64.urlsafe_b64encode(bytes(tampered)).decode()}", "a.b")


def test_rotation_keeps_old_readable_and_moves_to_new_key():
    old = generate_key()
    new = generate_key()
    token = Keyring.parse(old).encrypt("pw", "ctx")
    ring = Keyring.parse(f"{new},{old}")
    assert ring.needs_rotation(token)
    rotated = ring.rotate(token, "ctx")
    assert not ring.needs_rotation(rotated) and ring.decrypt(rotated, "ctx") == "pw"
    with pytest.raises(CryptoError, match="unknown encryption key"):
        Keyring.parse(old).decrypt(rotated, "ctx")


def test_bad_keyring_config():
    for spec in ("", "nokid", "k1:c2hvcnQ=", "k:" + "A" * 43 + ",k:" + "A" * 43):
        with pytest.raises(CryptoError):
            Keyring.parse(spec)


def test_secrets_rotate_cli_reencrypts_stored_columns(db, test_settings, monkeypatch):
    import dataclasses
    from core.config import set_settings
    from core.security import crypto
    from models.integrations import Integration
    from models.saas import Org, Project
    from scripts.cli import main
    org = Org.create(name="o", slug="o")
    project = Project.create(org=org.id, name="p")
    old_token = crypto.encrypt_secret("api-token", "integrations.credentials_encrypted")
    row = Integration.create(project=project.id, provider="amocrm", name="amo", credentials_encrypted=old_token)
    new_key = generate_key()
    rotated_settings = dataclasses.replace(test_settings, encryption_keys=f"{new_key},{test_settings.encryption_keys}")
    set_settings(rotated_settings)
    crypto.reset_keyring()
    monkeypatch.setattr("scripts.cli.get_settings", lambda: rotated_settings)
    try:
        assert main(["secrets", "rotate"]) == 0
        value = Integration.get_by_id(row.id).credentials_encrypted
        assert value.split(":")[1] == new_key.split(":")[0]
        assert crypto.decrypt_secret(value, "integrations.credentials_encrypted") == "api-token"
    finally:
        set_settings(test_settings)
        crypto.reset_keyring()
