"""Which CRM and calendar a project's tools talk to.

The built-in CRM and calendar are the default. An integration issue (Bitrix24, amoCRM, Google
Calendar) registers a factory for its provider name; from then on a project with an active
``integrations`` row of that provider gets that implementation behind the very same tools::

    register_crm_provider("bitrix24", lambda project_id, integration: Bitrix24Crm(project_id, integration))

Resolution order: the oldest enabled (not ``disabled``) integration of a registered external
provider, else the built-in one.
"""
from __future__ import annotations

import uuid
from typing import Callable

from core.tools.calendar.base import CalendarProvider
from core.tools.crm.base import CrmProvider
from models.integrations import Integration, IntegrationProvider, IntegrationStatus

CrmFactory = Callable[[uuid.UUID, "Integration | None"], CrmProvider]
CalendarFactory = Callable[[uuid.UUID, "Integration | None"], CalendarProvider]

BUILTIN = IntegrationProvider.BUILTIN.value


def _builtin_crm(project_id: uuid.UUID, integration: Integration | None) -> CrmProvider:
    from core.tools.crm.builtin import BuiltinCrm
    return BuiltinCrm(project_id)


def _builtin_calendar(project_id: uuid.UUID, integration: Integration | None) -> CalendarProvider:
    from core.tools.calendar.builtin import BuiltinCalendar
    return BuiltinCalendar(project_id)


_CRM: dict[str, CrmFactory] = {BUILTIN: _builtin_crm}
_CALENDAR: dict[str, CalendarFactory] = {BUILTIN: _builtin_calendar}


def register_crm_provider(name: str, factory: CrmFactory) -> None:
    """Make an external CRM available to the CRM tools (called at import by its integration module)."""
    _CRM[name] = factory


def register_calendar_provider(name: str, factory: CalendarFactory) -> None:
    _CALENDAR[name] = factory


def _active_integration(project_id: uuid.UUID, names: list[str]) -> Integration | None:
    if not names:
        return None
    return (Integration.for_project(project_id)
            .where(Integration.provider.in_(names) & (Integration.status != IntegrationStatus.DISABLED.value))
            .order_by(Integration.created_at, Integration.id).first())


def resolve_crm(project_id: uuid.UUID) -> CrmProvider:
    integration = _active_integration(project_id, [n for n in _CRM if n != BUILTIN])
    if integration is not None:
        return _CRM[integration.provider](project_id, integration)
    return _CRM[BUILTIN](project_id, None)


def resolve_calendar(project_id: uuid.UUID) -> CalendarProvider:
    integration = _active_integration(project_id, [n for n in _CALENDAR if n != BUILTIN])
    if integration is not None:
        return _CALENDAR[integration.provider](project_id, integration)
    return _CALENDAR[BUILTIN](project_id, None)
