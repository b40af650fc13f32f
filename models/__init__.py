"""peewee models of every entity of spec 8.1, the database handle and migrations.

``all_models()`` is the single list that migrations, tests and the CLI use.
"""
from __future__ import annotations

import importlib

import peewee as pw

# Import order follows the FK direction: saas <- telephony <- agents <- calls <- the rest.
MODEL_MODULES = ("saas", "telephony", "agents", "calls", "campaigns", "messaging", "billing", "crm",
                 "integrations", "kb", "calendar")


def all_models() -> list[type[pw.Model]]:
    """Every concrete model class, in dependency order."""
    found: list[type[pw.Model]] = []
    for name in MODEL_MODULES:
        module = importlib.import_module(f"models.{name}")
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if isinstance(obj, type) and issubclass(obj, pw.Model) and obj._meta.table_name \
                    and not getattr(obj._meta, "abstract", False) and obj not in found \
                    and obj.__name__ != "ProjectScoped":
                found.append(obj)
    return pw.sort_models(found)
