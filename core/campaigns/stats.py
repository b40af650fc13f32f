"""Campaign statistics (``GET /campaigns/{id}/stats``, ``campaign.progress`` events).

Counted from the rows (contacts, runs, results, calls), never from cached counters: contacts by
state and by last outcome, attempts, reached rate (reached contacts / contacts with at least one
finished attempt), conversions (results whose call's extracted outcome is a success), cost, and the
ETA at the pace of the last 10 minutes.
"""
from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

from core.campaigns.limits import REACHED, parse_limits
from models.base import database, utcnow
from models.campaigns import Campaign

PACE_WINDOW_S = 600


def contact_counts(cid: Any) -> dict[str, int]:
    rows = database.execute_sql("SELECT state, count(*) FROM campaign_contacts WHERE campaign_id=%s GROUP BY state",
                                (str(cid),)).fetchall()
    counts = {s: 0 for s in ("pending", "in_progress", "done", "failed", "excluded")}
    counts.update({state: int(n) for state, n in rows})
    counts["total"] = sum(int(n) for _, n in rows)
    return counts


def eta_seconds(remaining_attempts: float, attempts_in_window: int, window_s: float, cpm_limit: float) -> int | None:
    """Seconds to finish at the recent pace (the limit when nothing ran recently); None: nothing left."""
    if remaining_attempts <= 0:
        return None
    pace = attempts_in_window / window_s if attempts_in_window else cpm_limit / 60.0
    if pace <= 0:
        return None
    return int(math.ceil(remaining_attempts / pace))


def campaign_stats(campaign: Campaign, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    cid = str(campaign.id)
    counts = contact_counts(cid)
    outcomes = {o: int(n) for o, n in database.execute_sql(
        "SELECT last_outcome, count(*) FROM campaign_contacts WHERE campaign_id=%s AND last_outcome IS NOT NULL "
        "GROUP BY last_outcome", (cid,)).fetchall()}
    exclusions = {r: int(n) for r, n in database.execute_sql(
        "SELECT exclusion_reason, count(*) FROM campaign_contacts WHERE campaign_id=%s AND state='excluded' "
        "GROUP BY exclusion_reason", (cid,)).fetchall()}
    attempts, recent = database.execute_sql(
        "SELECT count(*), count(*) FILTER (WHERE claimed_at > %s) FROM campaign_runs WHERE campaign_id=%s",
        (now - dt.timedelta(seconds=PACE_WINDOW_S), cid)).fetchone()
    reached, tried, conversions = database.execute_sql(
        "SELECT count(*) FILTER (WHERE last_outcome = ANY(%s)), count(*) FILTER (WHERE last_outcome IS NOT NULL), "
        "(SELECT count(*) FROM campaign_results WHERE campaign_id=%s AND conversion) "
        "FROM campaign_contacts WHERE campaign_id=%s", (sorted(REACHED), cid, cid)).fetchone()
    cost, live = database.execute_sql(
        "SELECT COALESCE(sum(cost_total), 0), count(*) FILTER (WHERE ended_at IS NULL) FROM calls WHERE campaign_id=%s",
        (cid,)).fetchone()
    limits = parse_limits(campaign.limits_json)
    remaining = database.execute_sql(
        "SELECT COALESCE(sum(GREATEST(%s - attempts, 0)), 0) FROM campaign_contacts WHERE campaign_id=%s "
        "AND state IN ('pending', 'in_progress')", (limits.max_attempts, cid)).fetchone()[0]
    # Expected attempts left: every open contact needs at least one more, at most its remaining attempts.
    open_contacts = counts["pending"] + counts["in_progress"]
    expected = min(float(remaining), max(open_contacts, 0))
    eta = eta_seconds(expected, int(recent), PACE_WINDOW_S, limits.calls_per_minute) \
        if campaign.status in ("running", "paused") else None
    return {
        "campaign_id": cid, "status": campaign.status, "pause_reason": campaign.pause_reason,
        "contacts": counts, "outcomes": outcomes, "exclusions": exclusions,
        "attempts": int(attempts), "live_calls": int(live),
        "reached": int(reached), "reached_rate": round(reached / tried, 4) if tried else 0.0,
        "conversions": int(conversions), "conversion_rate": round(conversions / reached, 4) if reached else 0.0,
        "cost_total": str(Decimal(str(cost)).quantize(Decimal("0.01"))), "currency": "RUB",
        "budget": str(limits.budget) if limits.budget is not None else None,
        "pace_per_minute": round(int(recent) / (PACE_WINDOW_S / 60), 2),
        "eta_seconds": eta,
    }
