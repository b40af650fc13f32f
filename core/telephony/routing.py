"""Inbound routing rules: which agent (or operator, or goodbye) a call to a number gets.

A number's rules (and project-wide ones, without a number) are evaluated by ascending priority; the
first enabled rule whose ``match_json`` matches decides. ``match_json`` keys (all optional, all must
hold): ``caller_prefixes`` (E.164 digits the caller number starts with, e.g. ["7916", "7495"]),
``caller_regex`` (Python regex over the caller digits), ``schedule`` (a schedule_json: the rule
applies only while it is open). No rule matching means the number's own agent.
Pure logic; esl_app applies the decision when it attaches the call.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable

from core.telephony.schedule import is_open, validate_schedule

ACTIONS = ("agent", "operator", "hangup", "message")


@dataclass(frozen=True)
class Rule:
    id: str
    priority: int
    match: dict[str, Any]
    action: str
    agent_id: str | None = None
    operator_route_id: str | None = None
    message_text: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Decision:
    action: str                      # agent | operator | hangup | message
    rule_id: str | None = None
    agent_id: str | None = None
    operator_route_id: str | None = None
    message_text: str | None = None


def _digits(number: str) -> str:
    return re.sub(r"\D", "", number or "")


def matches(match: dict[str, Any], caller: str, at: dt.datetime, default_timezone: str) -> bool:
    digits = _digits(caller)
    prefixes = match.get("caller_prefixes")
    if prefixes and not any(digits.startswith(_digits(p)) for p in prefixes):
        return False
    regex = match.get("caller_regex")
    if regex and not re.search(regex, digits):
        return False
    schedule = match.get("schedule")
    if schedule and not is_open(schedule, at, default_timezone=default_timezone):
        return False
    return True


def decide(rules: Iterable[Rule], caller: str, at: dt.datetime, default_agent_id: str | None,
           default_timezone: str = "Europe/Moscow") -> Decision:
    for rule in sorted((r for r in rules if r.enabled), key=lambda r: r.priority):
        if matches(rule.match, caller, at, default_timezone):
            return Decision(rule.action, rule.id, rule.agent_id if rule.action == "agent" else default_agent_id,
                            rule.operator_route_id, rule.message_text)
    return Decision("agent", None, default_agent_id)


def validate_match(match: Any, prefix: str = "match") -> dict[str, str]:
    """Field errors (Russian) of a ``match_json`` for the API."""
    if not isinstance(match, dict):
        return {prefix: "Ожидается объект условий"}
    errors: dict[str, str] = {}
    unknown = set(match) - {"caller_prefixes", "caller_regex", "schedule"}
    for key in sorted(unknown):
        errors[f"{prefix}.{key}"] = "Неизвестное условие (caller_prefixes, caller_regex, schedule)"
    prefixes = match.get("caller_prefixes")
    if prefixes is not None and (not isinstance(prefixes, list) or not all(_digits(str(p)) for p in prefixes)):
        errors[f"{prefix}.caller_prefixes"] = "Список начал номера, только цифры (пример: [\"7916\"])"
    regex = match.get("caller_regex")
    if regex is not None:
        try:
            re.compile(str(regex))
        except re.error as exc:
            errors[f"{prefix}.caller_regex"] = f"Некорректное регулярное выражение: {exc}"
    if match.get("schedule"):
        errors.update(validate_schedule(match["schedule"], prefix=f"{prefix}.schedule"))
    return errors
