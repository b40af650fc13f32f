"""Call cost: per-minute prices from the applicable pricing profile (else the configured default
tariff), one ``usage_records`` row per component, the ``cost_breakdowns`` row and ``calls.cost_total``.

Pricing is idempotent (usage rows carry ``call:<id>:<component>`` keys, the breakdown is unique per
call), so esl_app's call-end hook and the campaign dialer may both price the same call safely.

Components of a call (quantities from the call row; the agent runtime may add exact meters in
``calls.metadata_json["usage"]``: ``stt_seconds``, ``llm_tokens``, ``tts_chars``):

- telephony: billed seconds (``billsec``) x ``telephony_per_min`` / 60 (per-second billing);
- stt: ``stt_seconds`` (default: billsec when an agent took the call) x ``stt_per_min`` / 60;
- llm: ``llm_tokens`` / 1000 x ``llm_per_1k_tokens``; tts: ``tts_chars`` / 1000 x ``tts_per_1k_chars``;
- platform fee: the profile's ``platform_fee`` per billed minute.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import peewee as pw

from core.config import get_settings
from models.base import database, utcnow
from models.billing import BillableEntity, CostBreakdown, PricingProfile, UsageComponent, UsageRecord
from models.calls import Call
from models.saas import Project

_Q4 = Decimal("0.0001")


@dataclass(frozen=True)
class Rates:
    telephony_per_min: Decimal = Decimal("0")
    stt_per_min: Decimal = Decimal("0")
    llm_per_1k_tokens: Decimal = Decimal("0")
    tts_per_1k_chars: Decimal = Decimal("0")
    platform_fee_per_min: Decimal = Decimal("0")
    currency: str = "RUB"
    profile_id: uuid.UUID | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], platform_fee: Decimal = Decimal("0"), currency: str = "RUB",
                  profile_id: uuid.UUID | None = None) -> "Rates":
        def d(key: str) -> Decimal:
            return Decimal(str(data.get(key) or "0"))
        return cls(d("telephony_per_min"), d("stt_per_min"), d("llm_per_1k_tokens"), d("tts_per_1k_chars"),
                   Decimal(str(platform_fee or data.get("platform_fee_per_min") or "0")), currency, profile_id)


@dataclass(frozen=True)
class CallCost:
    telephony: Decimal
    stt: Decimal
    llm: Decimal
    tts: Decimal
    platform_fee: Decimal
    quantities: dict[str, Decimal]

    @property
    def total(self) -> Decimal:
        return (self.telephony + self.stt + self.llm + self.tts + self.platform_fee).quantize(_Q4)


def compute_call_cost(billsec: int, has_agent: bool, usage: dict[str, Any], rates: Rates) -> CallCost:
    """Pure pricing of one call."""
    minutes = Decimal(max(0, int(billsec))) / 60
    stt_s = Decimal(str(usage.get("stt_seconds", billsec if has_agent else 0)))
    tokens = Decimal(str(usage.get("llm_tokens", 0)))
    chars = Decimal(str(usage.get("tts_chars", 0)))

    def q(v: Decimal) -> Decimal:
        return v.quantize(_Q4, rounding=ROUND_HALF_UP)
    return CallCost(telephony=q(minutes * rates.telephony_per_min), stt=q(stt_s / 60 * rates.stt_per_min),
                    llm=q(tokens / 1000 * rates.llm_per_1k_tokens), tts=q(chars / 1000 * rates.tts_per_1k_chars),
                    platform_fee=q(minutes * rates.platform_fee_per_min),
                    quantities={"telephony": minutes, "stt": stt_s / 60, "llm": tokens / 1000, "tts": chars / 1000,
                                "platform": minutes})


def _active(q: pw.ModelSelect, at: dt.datetime) -> pw.ModelSelect:
    return q.where(PricingProfile.archived_at.is_null()
                   & (PricingProfile.valid_from.is_null() | (PricingProfile.valid_from <= at))
                   & (PricingProfile.valid_to.is_null() | (PricingProfile.valid_to > at)))


def rates_for(project_id: Any, at: dt.datetime | None = None) -> Rates:
    """Project profile, else the org's default, else the platform default, else VOICEAI_DEFAULT_RATES."""
    at = at or utcnow()
    project = Project.get_by_id(project_id)
    for cond in ((PricingProfile.project == project.id),
                 (PricingProfile.org == project.org_id) & PricingProfile.project.is_null() & PricingProfile.is_default,
                 PricingProfile.org.is_null() & PricingProfile.project.is_null() & PricingProfile.is_default):
        profile = _active(PricingProfile.select().where(cond), at).order_by(PricingProfile.created_at.desc()).first()
        if profile is not None:
            return Rates.from_json(profile.rates_json or {}, profile.platform_fee, profile.currency, profile.id)
    return Rates.from_json(json.loads(get_settings().default_rates))


_COMPONENTS = (("telephony", UsageComponent.TELEPHONY, "minute"), ("stt", UsageComponent.STT, "minute"),
               ("llm", UsageComponent.LLM, "1k_tokens"), ("tts", UsageComponent.TTS, "1k_chars"),
               ("platform_fee", UsageComponent.PLATFORM, "minute"))


def price_call(call_id: Any) -> Decimal:
    """Price an ended call (idempotent); returns its total. Unended calls are left alone (0)."""
    call = Call.get_or_none(Call.id == call_id)
    if call is None or call.ended_at is None:
        return Decimal("0")
    existing = CostBreakdown.get_or_none((CostBreakdown.entity_type == BillableEntity.CALL.value)
                                         & (CostBreakdown.entity_id == call.id))
    if existing is not None:
        return existing.total_cost
    rates = rates_for(call.project_id, call.ended_at)
    usage = (call.metadata_json or {}).get("usage") or {}
    cost = compute_call_cost(call.billsec, call.agent_id is not None, usage, rates)
    with database.atomic():
        for attr, component, unit in _COMPONENTS:
            amount: Decimal = getattr(cost, attr)
            qty = cost.quantities["platform" if attr == "platform_fee" else attr]
            if amount == 0 and qty == 0:
                continue
            unit_cost = {"telephony": rates.telephony_per_min, "stt": rates.stt_per_min, "llm": rates.llm_per_1k_tokens,
                         "tts": rates.tts_per_1k_chars, "platform_fee": rates.platform_fee_per_min}[attr]
            (UsageRecord.insert(project=call.project_id, entity_type=BillableEntity.CALL.value, entity_id=call.id,
                                campaign=call.campaign_id, component=component.value, quantity=qty, unit=unit,
                                unit_cost=unit_cost, cost=amount, currency=rates.currency,
                                pricing_profile=rates.profile_id, idempotency_key=f"call:{call.id}:{component.value}",
                                occurred_at=call.ended_at, details_json={"billsec": call.billsec, **usage})
             .on_conflict_ignore().execute())
        (CostBreakdown.insert(project=call.project_id, entity_type=BillableEntity.CALL.value, entity_id=call.id,
                              telephony_cost=cost.telephony, stt_cost=cost.stt, llm_cost=cost.llm, tts_cost=cost.tts,
                              platform_fee=cost.platform_fee, total_cost=cost.total, currency=rates.currency)
         .on_conflict_ignore().execute())
        Call.update(cost_total=cost.total, currency=rates.currency).where(Call.id == call.id).execute()
    return cost.total
