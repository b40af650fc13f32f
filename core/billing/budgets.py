"""Budget limits: has a campaign or its project spent its limit?

Sources: the campaign's own cap (``limits_json.budget``, whole campaign) and enabled
``budgets_limits`` rows with action ``pause`` (scope campaign or project; period day or month,
counted in UTC). Spending is the priced cost of calls (``calls.cost_total``, set at call end by
``core.billing.costs``); calls still running are not counted until they end.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import peewee as pw

from models.base import utcnow
from models.billing import BudgetAction, BudgetLimit, BudgetPeriod, BudgetScope
from models.calls import Call


@dataclass(frozen=True)
class BudgetVerdict:
    scope: str            # campaign | project
    limit: Decimal
    spent: Decimal
    budget_limit_id: str | None = None


def _period_start(period: str, now: dt.datetime) -> dt.datetime:
    day = now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == BudgetPeriod.DAY.value else day.replace(day=1)


def _spent(where: Any) -> Decimal:
    value = Call.select(pw.fn.COALESCE(pw.fn.SUM(Call.cost_total), 0)).where(where).scalar()
    return Decimal(str(value or 0))


def campaign_spent(campaign_id: Any) -> Decimal:
    return _spent(Call.campaign == campaign_id)


def budget_reached(project_id: Any, campaign_id: Any, campaign_budget: Decimal | None,
                   now: dt.datetime | None = None) -> BudgetVerdict | None:
    """The first limit reached, or None when the campaign may keep dialling."""
    now = now or utcnow()
    if campaign_budget is not None:
        spent = campaign_spent(campaign_id)
        if spent >= campaign_budget:
            return BudgetVerdict("campaign", campaign_budget, spent)
    limits = BudgetLimit.select().where((BudgetLimit.project == project_id) & BudgetLimit.enabled
                                        & (BudgetLimit.action == BudgetAction.PAUSE.value))
    for limit in limits:
        if limit.scope == BudgetScope.CAMPAIGN.value and limit.campaign_id != campaign_id:
            continue
        start = _period_start(limit.period, now)
        where = (Call.project == project_id) & (Call.ended_at >= start)
        if limit.scope == BudgetScope.CAMPAIGN.value:
            where &= Call.campaign == campaign_id
        spent = _spent(where)
        if spent >= limit.limit_amount:
            return BudgetVerdict(limit.scope, limit.limit_amount, spent, str(limit.id))
    return None
