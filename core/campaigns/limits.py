"""``limits_json`` of a campaign: pacing, caps, attempts, retry delays per outcome, budget, AMD.

Example::

    {"max_concurrent": 10, "calls_per_minute": 30, "daily_cap": 2000, "project_daily_cap": 5000,
     "max_attempts": 3, "retry_delays_min": {"busy": 15, "no_answer": 60, "failed": 30, "voicemail": 120},
     "budget": "5000.00", "amd": {"enabled": true, "policy": "hangup"}}

Everything is optional; ``parse_limits`` fills the defaults below. ``after_attempt`` decides what a
finished attempt means for the contact (done, retry later, failed for good).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

RETRY_OUTCOMES = ("busy", "no_answer", "failed", "voicemail")
AMD_POLICIES = ("hangup", "leave_message", "retry_later")

# Outcomes that reached a person: the contact is done.
REACHED = frozenset({"answered", "completed", "transferred", "callback"})
# Outcomes that can never succeed on a retry.
FINAL_FAILURES = frozenset({"unallocated"})
# Outcomes retried with the delay of another outcome.
_DELAY_ALIAS = {"rejected": "no_answer", "abandoned": "no_answer", "gateway_down": "failed",
                "cancelled": "failed"}

DEFAULTS: dict[str, Any] = {
    "max_concurrent": 5, "calls_per_minute": 20, "daily_cap": None, "project_daily_cap": None,
    "max_attempts": 3,
    "retry_delays_min": {"busy": 15, "no_answer": 60, "failed": 30, "voicemail": 120},
    "budget": None, "ring_timeout_s": 30,
    "amd": {"enabled": False, "policy": "hangup", "message_file": None},
}


@dataclass(frozen=True)
class Limits:
    max_concurrent: int = 5
    calls_per_minute: float = 20
    daily_cap: int | None = None
    project_daily_cap: int | None = None
    max_attempts: int = 3
    retry_delays_s: dict[str, float] = field(default_factory=dict)
    budget: Decimal | None = None
    ring_timeout_s: int = 30
    amd_enabled: bool = False
    amd_policy: str = "hangup"
    amd_message_file: str | None = None


def _int(body: dict, key: str, lo: int, hi: int, errors: dict[str, str], prefix: str, nullable: bool = False) -> None:
    if key not in body:
        return
    v = body[key]
    if v is None and nullable:
        return
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        errors[f"{prefix}.{key}"] = f"Целое число от {lo} до {hi}"


def validate_limits(obj: Any, prefix: str = "limits_json") -> dict[str, str]:
    """Russian field errors by path; empty when valid."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        return {prefix: "Ожидается объект"}
    errors: dict[str, str] = {}
    unknown = set(obj) - set(DEFAULTS)
    for key in sorted(unknown):
        errors[f"{prefix}.{key}"] = "Неизвестный параметр"
    _int(obj, "max_concurrent", 1, 1000, errors, prefix)
    _int(obj, "daily_cap", 1, 10_000_000, errors, prefix, nullable=True)
    _int(obj, "project_daily_cap", 1, 10_000_000, errors, prefix, nullable=True)
    _int(obj, "max_attempts", 1, 20, errors, prefix)
    _int(obj, "ring_timeout_s", 5, 120, errors, prefix)
    cpm = obj.get("calls_per_minute", 1)
    if not isinstance(cpm, (int, float)) or isinstance(cpm, bool) or not 0.1 <= cpm <= 6000:
        errors[f"{prefix}.calls_per_minute"] = "Число от 0.1 до 6000"
    delays = obj.get("retry_delays_min", {})
    if not isinstance(delays, dict):
        errors[f"{prefix}.retry_delays_min"] = "Ожидается объект: занято, не ответил, ошибка, автоответчик"
    else:
        for key, value in delays.items():
            if key not in RETRY_OUTCOMES:
                errors[f"{prefix}.retry_delays_min.{key}"] = "Допустимо: " + ", ".join(RETRY_OUTCOMES)
            elif not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 10080:
                errors[f"{prefix}.retry_delays_min.{key}"] = "Минуты, от 0 до 10080 (неделя)"
    if obj.get("budget") is not None:
        try:
            if Decimal(str(obj["budget"])) <= 0:
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            errors[f"{prefix}.budget"] = "Сумма больше нуля, например \"5000.00\""
    amd = obj.get("amd", {})
    if not isinstance(amd, dict):
        errors[f"{prefix}.amd"] = "Ожидается объект {enabled, policy}"
    elif amd.get("policy", "hangup") not in AMD_POLICIES:
        errors[f"{prefix}.amd.policy"] = "Допустимо: hangup, leave_message, retry_later"
    return errors


def parse_limits(obj: Any) -> Limits:
    """Limits with defaults filled; the caller validated ``obj`` (API) or trusts the stored row."""
    obj = dict(obj or {})
    delays = {**DEFAULTS["retry_delays_min"], **(obj.get("retry_delays_min") or {})}
    amd = {**DEFAULTS["amd"], **(obj.get("amd") or {})}
    budget = obj.get("budget")
    return Limits(
        max_concurrent=int(obj.get("max_concurrent") or DEFAULTS["max_concurrent"]),
        calls_per_minute=float(obj.get("calls_per_minute") or DEFAULTS["calls_per_minute"]),
        daily_cap=obj.get("daily_cap"), project_daily_cap=obj.get("project_daily_cap"),
        max_attempts=int(obj.get("max_attempts") or DEFAULTS["max_attempts"]),
        retry_delays_s={k: float(v) * 60 for k, v in delays.items()},
        budget=Decimal(str(budget)) if budget is not None else None,
        ring_timeout_s=int(obj.get("ring_timeout_s") or DEFAULTS["ring_timeout_s"]),
        amd_enabled=bool(amd.get("enabled")), amd_policy=str(amd.get("policy") or "hangup"),
        amd_message_file=amd.get("message_file"))


@dataclass(frozen=True)
class AttemptDecision:
    state: str                           # done | pending | failed
    next_attempt_at: dt.datetime | None  # for pending
    final: bool                          # a campaign_results row is due


def after_attempt(outcome: str | None, attempts: int, limits: Limits, now: dt.datetime) -> AttemptDecision:
    """What a finished attempt means for its contact.

    Reached -> done. A number that does not exist -> failed. Otherwise retried after the delay of
    its outcome until ``max_attempts`` attempts were made, then failed.
    """
    outcome = outcome or "failed"
    if outcome in REACHED:
        return AttemptDecision("done", None, True)
    if outcome in FINAL_FAILURES or attempts >= limits.max_attempts:
        return AttemptDecision("failed", None, True)
    key = _DELAY_ALIAS.get(outcome, outcome)
    delay = limits.retry_delays_s.get(key, limits.retry_delays_s.get("failed", 1800.0))
    return AttemptDecision("pending", now + dt.timedelta(seconds=delay), False)
