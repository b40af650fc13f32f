"""The cabinet's navigation: one entry per page, shown only to those holding its permission.

To add a page (e.g. "Поговорить с агентом"): write the view with ``@page(...)`` in a module of
``web.cabinet``, its template extending ``cabinet/base.html``, and append a ``NavItem`` here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavItem:
    endpoint: str      # Flask endpoint of the page, e.g. "cabinet.monitor"
    title: str         # Russian menu label
    permission: str    # the page's permission; the item is hidden without it


NAV: list[NavItem] = [
    NavItem("cabinet.monitor", "Живой монитор", "realtime.subscribe"),
    NavItem("cabinet.inbox", "Звонки", "calls.read"),
    NavItem("cabinet.agents", "Агенты", "agents.read"),
    NavItem("cabinet.numbers", "Номера", "numbers.read"),
    NavItem("cabinet.talk", "Поговорить с агентом", "agents.edit"),
]


def visible_nav(permissions: set[str]) -> list[NavItem]:
    return [item for item in NAV if item.permission in permissions]
