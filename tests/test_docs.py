"""Docs that must not drift from code: every environment variable is documented."""
from pathlib import Path

from core.config import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_env_var_documented():
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for env, _name, default in Settings.env_table():
        assert f"`{env}`" in text, f"{env} missing from docs/configuration.md"
