"""Campaigns API (spec 9.2 Campaigns): campaigns, contact upload, start/pause/resume, stats; the
DNC list and consents; single outbound calls under the same rules (DNC, consent, hours, limits).
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from flask import g, request

from core.campaigns import compliance
from core.campaigns.contacts_import import ImportFileError
from core.campaigns.limits import validate_limits
from core.campaigns.service import check_single_call, import_contacts
from core.campaigns.stats import campaign_stats
from core.campaigns.windows import validate_campaign_schedule
from core.errors import AppError, NotFound, ValidationFailed
from core.telephony.e164 import normalize_e164
from core.telephony.outbound import OutboundRequest, place_call
from models.agents import Agent, AgentVersion
from models.base import utcnow
from models.campaigns import Campaign
from models.messaging import Consent, ConsentChannel, ConsentPurpose, ConsentSource, DncEntry, DncSource
from models.telephony import SipConnection
from web import audit
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup
from web.app import commit_now, get_redis, settings

group = ApiGroup("campaigns", "Campaigns")

PURPOSE = {"type": "string", "enum": compliance.PURPOSES}
CAMPAIGN_FIELDS = {
    "name": S.NAME, "description": {"type": "string", "maxLength": 2000}, "purpose": PURPOSE,
    "agent_id": S.UUID, "agent_version_id": {"type": ["string", "null"], "format": "uuid"},
    "sip_connection_id": {"type": ["string", "null"], "format": "uuid"},
    "caller_id": {"type": ["string", "null"], "maxLength": 32},
    "timezone": {"type": ["string", "null"], "maxLength": 64},
    "schedule_json": {"type": "object"}, "limits_json": {"type": "object"},
}
CAMPAIGN_CREATE = S.obj(["name", "purpose", "agent_id"], CAMPAIGN_FIELDS)
S.COMPONENTS["Campaign"] = S.obj(["id", "project_id", "name", "purpose", "status", "created_at"], {
    "id": S.UUID, "project_id": S.UUID, "name": {"type": "string"}, "description": {"type": "string"},
    "purpose": PURPOSE, "agent_id": S.UUID, "agent_version_id": {"type": ["string", "null"]},
    "sip_connection_id": {"type": ["string", "null"]}, "caller_id": {"type": ["string", "null"]},
    "timezone": {"type": ["string", "null"]}, "schedule_json": {"type": "object"}, "limits_json": {"type": "object"},
    "status": {"type": "string", "enum": ["draft", "running", "paused", "finished", "cancelled"]},
    "pause_reason": {"type": ["string", "null"]}, "created_at": S.TS, "started_at": S.TS_NULL,
    "finished_at": S.TS_NULL, "contacts": {"type": "object", "additionalProperties": {"type": "integer"}}})
_ISSUE = S.obj(["row", "code", "message"], {"row": {"type": "integer"}, "code": {"type": "string"},
                                            "message": {"type": "string"}, "value": {"type": "string"}})
S.COMPONENTS["ContactUploadReport"] = S.obj(["total_rows", "accepted", "excluded", "rejected", "duplicates", "issues"], {
    "total_rows": {"type": "integer"}, "accepted": {"type": "integer"}, "excluded": {"type": "integer"},
    "rejected": {"type": "integer"}, "duplicates": {"type": "integer"},
    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
    "issues": {"type": "array", "items": _ISSUE}, "issues_truncated": {"type": "boolean"}})
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
S.COMPONENTS["CampaignStats"] = S.obj(["campaign_id", "status", "contacts", "attempts", "reached_rate", "conversions",
                                       "cost_total", "eta_seconds"], {
    "campaign_id": S.UUID, "status": {"type": "string"}, "pause_reason": {"type": ["string", "null"]},
    "contacts": _COUNTS, "outcomes": _COUNTS, "exclusions": _COUNTS, "attempts": {"type": "integer"},
    "live_calls": {"type": "integer"}, "reached": {"type": "integer"}, "reached_rate": {"type": "number"},
    "conversions": {"type": "integer"}, "conversion_rate": {"type": "number"}, "cost_total": {"type": "string"},
    "currency": {"type": "string"}, "budget": {"type": ["string", "null"]}, "pace_per_minute": {"type": "number"},
    "eta_seconds": {"type": ["integer", "null"]}})
S.COMPONENTS["DncEntry"] = S.obj(["id", "phone_e164", "source", "created_at"], {
    "id": S.UUID, "phone_e164": {"type": "string"}, "reason": {"type": "string"}, "source": {"type": "string"},
    "call_id": {"type": ["string", "null"]}, "expires_at": S.TS_NULL, "created_at": S.TS})
S.COMPONENTS["Consent"] = S.obj(["id", "phone_e164", "purpose", "channel", "granted_at"], {
    "id": S.UUID, "phone_e164": {"type": "string"}, "purpose": {"type": "string"}, "channel": {"type": "string"},
    "source": {"type": "string"}, "granted_at": S.TS, "revoked_at": S.TS_NULL, "evidence_json": {"type": "object"},
    "created_at": S.TS})
S.COMPONENTS["OutboundCall"] = S.obj(["call_id", "status"], {
    "call_id": S.UUID, "status": {"type": "string"}, "to": {"type": "string"}, "trace_id": {"type": "string"}})

PHONE_IN = {"type": "string", "minLength": 5, "maxLength": 32}
DNC_ADD = S.obj(["phone"], {"phone": PHONE_IN, "reason": {"type": "string", "maxLength": 500},
                            "expires_at": {"type": ["string", "null"], "format": "date-time"}})
CONSENT_ADD = S.obj(["phone", "purpose"], {
    "phone": PHONE_IN, "purpose": {"type": "string", "enum": [p.value for p in ConsentPurpose]},
    "channel": {"type": "string", "enum": [c.value for c in ConsentChannel]},
    "source": {"type": "string", "enum": [s.value for s in ConsentSource]},
    "evidence": {"type": "object"}})
OUTBOUND = S.obj(["to", "agent_id"], {
    "to": PHONE_IN, "agent_id": S.UUID, "agent_version_id": {"type": ["string", "null"], "format": "uuid"},
    "variables": {"type": "object", "maxProperties": 50}, "purpose": PURPOSE,
    "sip_connection_id": {"type": ["string", "null"], "format": "uuid"},
    "timezone": {"type": ["string", "null"], "maxLength": 64}, "schedule_json": {"type": "object"},
    "caller_id": {"type": ["string", "null"], "maxLength": 32}, "timeout_s": {"type": "integer", "minimum": 5,
                                                                                "maximum": 120}})
SINGLE_CALLS_PER_MINUTE = 30




def serialize(c: Campaign, with_counts: bool = False) -> dict[str, Any]:
    out = {"id": str(c.id), "project_id": str(c.project_id), "name": c.name, "description": c.description,
           "purpose": c.purpose, "agent_id": str(c.agent_id), "agent_version_id": S.sid(c.agent_version_id),
           "sip_connection_id": S.sid(c.sip_connection_id), "caller_id": c.caller_id, "timezone": c.timezone,
           "schedule_json": c.schedule_json or {}, "limits_json": c.limits_json or {}, "status": c.status,
           "pause_reason": c.pause_reason, "created_at": S.iso(c.created_at), "started_at": S.iso(c.started_at),
           "finished_at": S.iso(c.finished_at)}
    if with_counts:
        from core.campaigns.stats import contact_counts
        out["contacts"] = contact_counts(c.id)
    return out


def _uuid(raw: Any, entity: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise NotFound(entity, raw)


def _campaign(campaign_id: str, lock: bool = False) -> Campaign:
    q = Campaign.for_project(g.project.id).where(Campaign.id == _uuid(campaign_id, "campaign"))
    c = (q.for_update() if lock else q).first()
    if c is None:
        raise NotFound("campaign", campaign_id)
    return c


def _agent_refs(body: dict) -> tuple[Agent, AgentVersion | None]:
    agent = Agent.for_project(g.project.id).where(Agent.id == _uuid(body["agent_id"], "agent")).first()
    if agent is None:
        raise ValidationFailed({"agent_id": "Агент не найден в этом проекте"})
    version = None
    if body.get("agent_version_id"):
        version = AgentVersion.for_project(g.project.id).where(
            (AgentVersion.id == _uuid(body["agent_version_id"], "agent_version")) & (AgentVersion.agent == agent.id)).first()
        if version is None:
            raise ValidationFailed({"agent_version_id": "Версия не принадлежит этому агенту"})
    elif agent.published_version_id is None:
        raise ValidationFailed({"agent_id": "У агента нет опубликованной версии: опубликуйте её или укажите agent_version_id"})
    return agent, version


def _connection(raw: Any) -> SipConnection | None:
    if raw:
        conn = SipConnection.for_project(g.project.id).where(SipConnection.id == _uuid(raw, "sip_connection")).first()
        if conn is None:
            raise ValidationFailed({"sip_connection_id": "SIP-подключение не найдено в этом проекте"})
        return conn
    return SipConnection.for_project(g.project.id).first()


def _phone(raw: str, field: str = "phone") -> str:
    try:
        return normalize_e164(raw, "RU")
    except ValueError as exc:
        raise ValidationFailed({field: str(exc)})


def _validate_settings(body: dict) -> None:
    errors = {**validate_campaign_schedule(body.get("schedule_json")), **validate_limits(body.get("limits_json"))}
    if body.get("timezone"):
        from core.campaigns.timezones import known_zone
        if not known_zone(body["timezone"]):
            errors["timezone"] = "Неизвестный часовой пояс (пример: Europe/Moscow)"
    if errors:
        raise ValidationFailed(errors)


# -- campaigns ------------------------------------------------------------------------------------
@group.route("/campaigns", ["POST"], permission="campaigns.manage", body=CAMPAIGN_CREATE,
             responses={201: S.ref("Campaign"), 422: None}, summary="Создать кампанию обзвона")
def create_campaign():
    body = g.body
    _validate_settings(body)
    agent, version = _agent_refs(body)
    conn = _connection(body.get("sip_connection_id"))
    if conn is None:
        raise ValidationFailed({"sip_connection_id": "В проекте нет SIP-подключения: сначала подключите номер"})
    caller_id = _phone(body["caller_id"], "caller_id") if body.get("caller_id") else None
    c = Campaign.create(project=g.project.id, name=body["name"], description=body.get("description", ""),
                        purpose=body["purpose"], agent=agent.id, agent_version=version.id if version else None,
                        sip_connection=conn.id, caller_id=caller_id, timezone=body.get("timezone"),
                        schedule_json=body.get("schedule_json") or {}, limits_json=body.get("limits_json") or {},
                        created_by=g.principal.id if g.principal.kind == "user" else None)
    out = serialize(c)
    audit.record("campaign.create", "campaign", c.id, after=out, project_id=g.project.id)
    return out, 201


@group.route("/campaigns", ["GET"], permission="campaigns.read", responses={200: S.page_of("Campaign")},
             query=PAGE_QUERY, summary="Кампании проекта")
def list_campaigns():
    return paginate(Campaign.for_project(g.project.id), Campaign.created_at, Campaign.id,
                    lambda c: serialize(c, with_counts=True))


@group.route("/campaigns/<campaign_id>", ["GET"], permission="campaigns.read", responses={200: S.ref("Campaign")},
             summary="Кампания")
def get_campaign(campaign_id: str):
    return serialize(_campaign(campaign_id), with_counts=True)


@group.route("/campaigns/<campaign_id>/upload-contacts", ["POST"], permission="campaigns.manage", raw_body=True,
             responses={200: S.ref("ContactUploadReport"), 409: None, 422: None},
             summary="Загрузить контакты (CSV или XLSX, поле file; mapping — JSON сопоставления колонок)")
def upload_contacts(campaign_id: str):
    c = _campaign(campaign_id, lock=True)
    if c.status in ("finished", "cancelled"):
        raise AppError("CONFLICT", {"reason": "Кампания завершена: создайте новую"})
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed({"file": "Приложите файл CSV или XLSX в поле file (multipart/form-data)"})
    mapping = None
    if request.form.get("mapping"):
        try:
            mapping = json.loads(request.form["mapping"])
            if not isinstance(mapping, dict):
                raise ValueError
        except ValueError:
            raise ValidationFailed({"mapping": "Ожидается JSON-объект: {\"phone\": \"Телефон\", \"name\": \"ФИО\"}"})
    try:
        report = import_contacts(c, upload.read(), upload.filename or "", mapping)
    except ImportFileError as exc:
        raise ValidationFailed({"file": exc.message_ru})
    out = report.to_dict()
    audit.record("campaign.upload_contacts", "campaign", c.id,
                 after={"file": upload.filename, **{k: out[k] for k in ("total_rows", "accepted", "excluded", "rejected",
                                                                          "duplicates")}}, project_id=g.project.id)
    return out


def _set_status(campaign_id: str, allowed_from: tuple[str, ...], status: str, action: str,
                reason: str | None = None) -> dict:
    c = _campaign(campaign_id, lock=True)
    if c.status not in allowed_from:
        raise AppError("CONFLICT", {"reason": f"Действие недоступно: кампания в статусе «{c.status}»",
                                    "status": c.status})
    before = {"status": c.status, "pause_reason": c.pause_reason}
    now = utcnow()
    fields: dict[str, Any] = {"status": status, "pause_reason": reason, "updated_at": now}
    if status == "running" and c.started_at is None:
        fields["started_at"] = now
    Campaign.update(**fields).where(Campaign.id == c.id).execute()
    c = Campaign.get_by_id(c.id)
    audit.record(action, "campaign", c.id, before=before, after={"status": status, "pause_reason": reason},
                 project_id=g.project.id)
    if status == "running":
        commit_now()  # the dialer loops must see the new status
        from jobs.dialer import enqueue_loops
        import redis as redis_lib
        rq_conn = redis_lib.Redis.from_url(settings().redis_url)
        try:
            enqueue_loops(rq_conn, c.id)
        finally:
            rq_conn.close()
    return serialize(c, with_counts=True)


@group.route("/campaigns/<campaign_id>/start", ["POST"], permission="campaigns.run",
             responses={200: S.ref("Campaign"), 409: None}, summary="Запустить кампанию")
def start_campaign(campaign_id: str):
    c = _campaign(campaign_id)
    from core.campaigns.stats import contact_counts
    if c.status == "draft" and contact_counts(c.id)["pending"] == 0:
        raise AppError("CONFLICT", {"reason": "В кампании нет контактов для звонка: загрузите список"})
    return _set_status(campaign_id, ("draft",), "running", "campaign.start")


@group.route("/campaigns/<campaign_id>/pause", ["POST"], permission="campaigns.run",
             responses={200: S.ref("Campaign"), 409: None}, summary="Приостановить кампанию (идущие звонки завершатся)")
def pause_campaign(campaign_id: str):
    return _set_status(campaign_id, ("running",), "paused", "campaign.pause", "manual")


@group.route("/campaigns/<campaign_id>/resume", ["POST"], permission="campaigns.run",
             responses={200: S.ref("Campaign"), 402: None, 409: None}, summary="Продолжить кампанию")
def resume_campaign(campaign_id: str):
    c = _campaign(campaign_id)
    if c.pause_reason == "BUDGET_LIMIT_REACHED":
        from core.billing.budgets import budget_reached
        from core.campaigns.limits import parse_limits
        verdict = budget_reached(c.project_id, c.id, parse_limits(c.limits_json).budget)
        if verdict is not None:
            raise AppError("BUDGET_LIMIT_REACHED", {"scope": verdict.scope, "limit": str(verdict.limit),
                                                    "spent": str(verdict.spent)})
    return _set_status(campaign_id, ("paused",), "running", "campaign.resume")


@group.route("/campaigns/<campaign_id>/stats", ["GET"], permission="campaigns.read",
             responses={200: S.ref("CampaignStats")}, summary="Статистика кампании")
def get_stats(campaign_id: str):
    return campaign_stats(_campaign(campaign_id))


# -- DNC list ---------------------------------------------------------------------------------------
def serialize_dnc(d: DncEntry) -> dict:
    return {"id": str(d.id), "phone_e164": d.phone_e164, "reason": d.reason, "source": d.source,
            "call_id": S.sid(d.call_id), "expires_at": S.iso(d.expires_at), "created_at": S.iso(d.created_at)}


@group.route("/dnc", ["GET"], permission="campaigns.read", responses={200: S.page_of("DncEntry")},
             query={**PAGE_QUERY, "phone": {"type": "string"}}, summary="Список «Не звонить»")
def list_dnc():
    q = DncEntry.for_project(g.project.id)
    if request.args.get("phone"):
        q = q.where(DncEntry.phone_e164 == _phone(request.args["phone"]))
    return paginate(q, DncEntry.created_at, DncEntry.id, serialize_dnc)


@group.route("/dnc", ["POST"], permission="campaigns.manage", body=DNC_ADD,
             responses={201: S.ref("DncEntry"), 200: S.ref("DncEntry"), 422: None},
             summary="Добавить номер в «Не звонить» (действует сразу, в том числе для идущих кампаний)")
def add_dnc():
    phone = _phone(g.body["phone"])
    existing = DncEntry.for_project(g.project.id).where(DncEntry.phone_e164 == phone).first()
    if existing is not None:
        return serialize_dnc(existing), 200
    entry = DncEntry.create(project=g.project.id, phone_e164=phone, reason=g.body.get("reason", ""),
                            source=DncSource.MANUAL.value if g.principal.kind == "user" else DncSource.API.value,
                            added_by=g.principal.id if g.principal.kind == "user" else None,
                            expires_at=g.body.get("expires_at"))
    out = serialize_dnc(entry)
    audit.record("dnc.add", "dnc_entry", entry.id, after=out, project_id=g.project.id)
    return out, 201


@group.route("/dnc/<entry_id>", ["DELETE"], permission="campaigns.manage", responses={200: S.ref("Ok")},
             summary="Убрать номер из «Не звонить»")
def remove_dnc(entry_id: str):
    entry = DncEntry.for_project(g.project.id).where(DncEntry.id == _uuid(entry_id, "dnc_entry")).first()
    if entry is None:
        raise NotFound("dnc_entry", entry_id)
    before = serialize_dnc(entry)
    entry.delete_instance()
    audit.record("dnc.remove", "dnc_entry", entry_id, before=before, project_id=g.project.id)
    return {"ok": True}


# -- consents -----------------------------------------------------------------------------------------
def serialize_consent(c: Consent) -> dict:
    return {"id": str(c.id), "phone_e164": c.phone_e164, "purpose": c.purpose, "channel": c.channel,
            "source": c.source, "granted_at": S.iso(c.granted_at), "revoked_at": S.iso(c.revoked_at),
            "evidence_json": c.evidence_json or {}, "created_at": S.iso(c.created_at)}


@group.route("/consents", ["GET"], permission="campaigns.read", responses={200: S.page_of("Consent")},
             query={**PAGE_QUERY, "phone": {"type": "string"}}, summary="Согласия абонентов")
def list_consents():
    q = Consent.for_project(g.project.id)
    if request.args.get("phone"):
        q = q.where(Consent.phone_e164 == _phone(request.args["phone"]))
    return paginate(q, Consent.created_at, Consent.id, serialize_consent)


@group.route("/consents", ["POST"], permission="campaigns.manage", body=CONSENT_ADD,
             responses={201: S.ref("Consent"), 422: None}, summary="Зафиксировать согласие абонента")
def add_consent():
    phone = _phone(g.body["phone"])
    channel = g.body.get("channel", ConsentChannel.ANY.value)
    existing = Consent.for_project(g.project.id).where((Consent.phone_e164 == phone) & (Consent.purpose == g.body["purpose"])
                                                       & (Consent.channel == channel)).first()
    fields = {"granted_at": utcnow(), "revoked_at": None,
              "source": g.body.get("source", ConsentSource.MANUAL.value if g.principal.kind == "user" else "api"),
              "evidence_json": g.body.get("evidence") or {},
              "recorded_by": g.principal.id if g.principal.kind == "user" else None}
    if existing is not None:
        Consent.update(**fields, updated_at=utcnow()).where(Consent.id == existing.id).execute()
        consent = Consent.get_by_id(existing.id)
    else:
        consent = Consent.create(project=g.project.id, phone_e164=phone, purpose=g.body["purpose"], channel=channel,
                                 **fields)
    out = serialize_consent(consent)
    audit.record("consent.grant", "consent", consent.id, after=out, project_id=g.project.id)
    return out, 201


@group.route("/consents/<consent_id>/revoke", ["POST"], permission="campaigns.manage",
             responses={200: S.ref("Consent")}, summary="Отозвать согласие (действует сразу)")
def revoke_consent(consent_id: str):
    consent = Consent.for_project(g.project.id).where(Consent.id == _uuid(consent_id, "consent")).first()
    if consent is None:
        raise NotFound("consent", consent_id)
    Consent.update(revoked_at=utcnow(), updated_at=utcnow()).where(Consent.id == consent.id).execute()
    out = serialize_consent(Consent.get_by_id(consent.id))
    audit.record("consent.revoke", "consent", consent.id, before=serialize_consent(consent), after=out,
                 project_id=g.project.id)
    return out


# -- single outbound call -------------------------------------------------------------------------------
@group.route("/calls/outbound", ["POST"], permission="calls.originate", body=OUTBOUND,
             responses={202: S.ref("OutboundCall"), 402: None, 409: None, 422: None, 429: None},
             summary="Исходящий звонок агентом (проверки: «Не звонить», согласие, часы, лимиты)")
def outbound_call():
    body = g.body
    to = _phone(body["to"], "to")
    agent, version = _agent_refs(body)
    conn = _connection(body.get("sip_connection_id"))
    if conn is None:
        raise ValidationFailed({"sip_connection_id": "В проекте нет SIP-подключения"})
    errors = validate_campaign_schedule(body.get("schedule_json"))
    if body.get("timezone"):
        from core.campaigns.timezones import known_zone
        if not known_zone(body["timezone"]):
            errors["timezone"] = "Неизвестный часовой пояс (пример: Europe/Moscow)"
    if errors:
        raise ValidationFailed(errors)
    purpose = body.get("purpose", "service")
    now = utcnow()
    refusal = check_single_call(g.project.id, g.project.timezone, to, purpose, body.get("schedule_json"),
                                body.get("timezone"), now)
    if refusal is not None:
        raise AppError("CONFLICT", {"reason": refusal.message, "rule": refusal.code,
                                    "next_allowed_at": S.iso(refusal.next_allowed_at)})
    from core.billing.budgets import budget_reached
    verdict = budget_reached(g.project.id, None, None, now)
    if verdict is not None:
        raise AppError("BUDGET_LIMIT_REACHED", {"scope": verdict.scope, "limit": str(verdict.limit),
                                                "spent": str(verdict.spent)})
    r = get_redis()
    key = f"outbound:rate:{g.project.id}:{int(now.timestamp() // 60)}"
    count = r.incr(key)
    r.expire(key, 120)
    if count > SINGLE_CALLS_PER_MINUTE:
        raise AppError("RATE_LIMITED", {"reason": f"Не больше {SINGLE_CALLS_PER_MINUTE} исходящих звонков в минуту"})
    variables = {str(k)[:40]: str(v)[:500] for k, v in (body.get("variables") or {}).items()}
    call, cmd = place_call(r, OutboundRequest(
        project_id=g.project.id, to_e164=to, sip_connection=conn, caller_id=body.get("caller_id"),
        agent_id=agent.id, agent_version_id=version.id if version else agent.published_version_id,
        variables=variables, timeout_s=int(body.get("timeout_s", 30)), variables_on_channel=False,
        initiated_by=g.principal.id if g.principal.kind == "user" else None),
        node=settings().fs_node, before_submit=commit_now)
    audit.record("call.outbound", "call", call.id, after={"to": to, "agent_id": str(agent.id), "purpose": purpose},
                 project_id=g.project.id)
    return {"call_id": str(call.id), "status": "queued", "to": to, "trace_id": call.trace_id}, 202
