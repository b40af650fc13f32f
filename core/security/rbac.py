"""Roles and the permission matrix (docs/rbac.md is generated from this module).

Every API endpoint declares exactly one permission (see web/api/registry.py); a role grants a set
of permissions. Grants are made per org (all of its projects) or per project. The matrix is the
single source of truth: ``voiceai rbac matrix`` prints it and a test keeps docs/rbac.md in sync.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Scope(str, Enum):
    ORG = "org"          # checked against the user's org-level grants
    PROJECT = "project"  # checked against grants covering the request's project


@dataclass(frozen=True)
class Permission:
    name: str
    group: str           # API group of spec 9.2
    scope: Scope
    title: str           # Russian, shown in the cabinet


_P = Permission
PERMISSIONS: dict[str, Permission] = {p.name: p for p in [
    _P("projects.read", "Projects", Scope.PROJECT, "Просмотр проекта"),
    _P("projects.create", "Projects", Scope.ORG, "Создание проектов"),
    _P("projects.update", "Projects", Scope.PROJECT, "Изменение настроек проекта"),
    _P("members.read", "Users", Scope.ORG, "Просмотр пользователей"),
    _P("members.manage", "Users", Scope.ORG, "Управление пользователями и ролями"),
    _P("api_keys.manage", "Users", Scope.PROJECT, "Управление API-ключами"),
    _P("audit.read", "Audit", Scope.ORG, "Просмотр журнала действий"),
    _P("numbers.read", "Numbers", Scope.PROJECT, "Просмотр номеров и SIP-подключений"),
    _P("numbers.manage", "Numbers", Scope.PROJECT, "Подключение номеров и SIP-транков"),
    _P("numbers.test_call", "Numbers", Scope.PROJECT, "Проверка подключения и тест-звонок"),
    _P("agents.read", "Agents", Scope.PROJECT, "Просмотр агентов"),
    _P("agents.edit", "Agents", Scope.PROJECT, "Редактирование черновиков агента"),
    _P("agents.publish", "Agents", Scope.PROJECT, "Публикация и откат версий агента"),
    _P("calls.read", "Calls", Scope.PROJECT, "Просмотр звонков и транскриптов"),
    _P("calls.listen", "Calls", Scope.PROJECT, "Прослушивание записей и звонков"),
    _P("calls.control", "Calls", Scope.PROJECT, "Завершение и перевод звонков"),
    _P("calls.originate", "Calls", Scope.PROJECT, "Исходящие звонки"),
    _P("calls.report_issue", "Calls", Scope.PROJECT, "Сообщение о проблеме в звонке"),
    _P("kb.read", "Knowledge", Scope.PROJECT, "Просмотр базы знаний"),
    _P("kb.edit", "Knowledge", Scope.PROJECT, "Редактирование базы знаний"),
    _P("campaigns.read", "Campaigns", Scope.PROJECT, "Просмотр кампаний"),
    _P("campaigns.manage", "Campaigns", Scope.PROJECT, "Создание кампаний и загрузка контактов"),
    _P("campaigns.run", "Campaigns", Scope.PROJECT, "Запуск и пауза кампаний"),
    _P("integrations.read", "Integrations", Scope.PROJECT, "Просмотр интеграций и их журналов"),
    _P("integrations.manage", "Integrations", Scope.PROJECT, "Подключение интеграций (секреты)"),
    _P("messages.read", "Messages", Scope.PROJECT, "Просмотр сообщений"),
    _P("messages.send", "Messages", Scope.PROJECT, "Отправка сообщений"),
    _P("channels.manage", "Messages", Scope.PROJECT, "Подключение каналов сообщений (секреты)"),
    _P("templates.manage", "Messages", Scope.PROJECT, "Шаблоны сообщений"),
    _P("billing.read", "Billing", Scope.PROJECT, "Просмотр расходов"),
    _P("billing.manage", "Billing", Scope.PROJECT, "Лимиты расходов и тарифы"),
    _P("crm.read", "CRM", Scope.PROJECT, "Просмотр встроенной CRM"),
    _P("crm.edit", "CRM", Scope.PROJECT, "Изменение встроенной CRM"),
    _P("realtime.subscribe", "Realtime", Scope.PROJECT, "Живой монитор (поток событий)"),
]}

ALL = frozenset(PERMISSIONS)


def _without(*names: str) -> frozenset[str]:
    return ALL - set(names)


_READ_ALL = frozenset({"projects.read", "numbers.read", "agents.read", "calls.read", "kb.read",
                       "campaigns.read", "integrations.read", "messages.read", "crm.read",
                       "realtime.subscribe"})


@dataclass(frozen=True)
class RoleDef:
    name: str
    title: str
    description: str
    permissions: frozenset[str]


ROLES: dict[str, RoleDef] = {r.name: r for r in [
    RoleDef("owner", "Владелец", "Всё, включая биллинг и управление пользователями.", ALL),
    RoleDef("admin", "Администратор",
            "Всё, кроме изменения лимитов расходов и тарифов.", _without("billing.manage")),
    RoleDef("supervisor", "Супервизор",
            "Ведёт звонки и кампании, правит черновики агентов и базу знаний; не публикует агентов, "
            "не подключает номера, интеграции и каналы.",
            _READ_ALL | {"calls.listen", "calls.control", "calls.originate", "calls.report_issue",
                         "agents.edit", "kb.edit", "campaigns.manage", "campaigns.run",
                         "messages.send", "crm.edit", "billing.read", "numbers.test_call",
                         "members.read"}),
    RoleDef("operator", "Оператор",
            "Принимает переводы: видит Живой монитор, звонки, CRM; не видит биллинг и секреты.",
            frozenset({"projects.read", "calls.read", "calls.listen", "calls.report_issue",
                       "crm.read", "crm.edit", "kb.read", "messages.read", "messages.send",
                       "agents.read", "realtime.subscribe"})),
    RoleDef("analyst", "Аналитик", "Только чтение: звонки, кампании, агенты, сообщения, расходы.",
            _READ_ALL | {"billing.read", "calls.listen"}),
    RoleDef("billing_manager", "Менеджер по биллингу",
            "Расходы, лимиты и тарифы; без доступа к звонкам и секретам.",
            frozenset({"projects.read", "billing.read", "billing.manage", "campaigns.read",
                       "realtime.subscribe"})),
]}


def role_permissions(role: str) -> frozenset[str]:
    try:
        return ROLES[role].permissions
    except KeyError:
        return frozenset()


def is_allowed(roles: list[str] | tuple[str, ...] | set[str], permission: str) -> bool:
    """True when any of the roles grants the permission (unknown permissions are never granted)."""
    if permission not in PERMISSIONS:
        return False
    return any(permission in role_permissions(r) for r in roles)


def matrix_markdown() -> str:
    """The permission matrix as a Markdown table (docs/rbac.md embeds it verbatim)."""
    roles = list(ROLES)
    lines = ["| Группа | Право | Область | " + " | ".join(roles) + " |",
             "|---|---|---|" + "---|" * len(roles)]
    for p in PERMISSIONS.values():
        marks = " | ".join("✔" if p.name in ROLES[r].permissions else "" for r in roles)
        lines.append(f"| {p.group} | `{p.name}` ({p.title}) | {p.scope.value} | {marks} |")
    return "\n".join(lines)
