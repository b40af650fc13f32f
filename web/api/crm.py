"""Built-in CRM API: what the agent created and linked (contacts with their deals, tasks, notes, calls).

Read-only for now: the agent writes through the tools (core.tools), people look here. Every query
is scoped to the request's project, so another tenant's contact is a 404.
"""
from __future__ import annotations

import uuid

import peewee as pw
from flask import g, request

from core.errors import NotFound, ValidationFailed
from core.telephony.e164 import normalize_e164
from models.calls import Call
from models.crm import CrmCallLink, CrmContact, CrmDeal, CrmNote, CrmTask
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup

group = ApiGroup("crm", "CRM")

_STR_NULL = {"type": ["string", "null"]}
_CONTACT_REQUIRED = ["id", "project_id", "full_name", "phone_e164", "source", "created_at"]
_CONTACT_PROPS = {
    "id": S.UUID, "project_id": S.UUID, "full_name": {"type": "string"}, "phone_e164": _STR_NULL,
    "email": _STR_NULL, "company_id": _STR_NULL, "source": {"type": "string"}, "fields": {"type": "object"},
    "last_contacted_at": S.TS_NULL, "created_at": S.TS, "updated_at": S.TS}
S.COMPONENTS.update({
    "CrmContact": S.obj(_CONTACT_REQUIRED, _CONTACT_PROPS),
    "CrmDeal": S.obj(["id", "title", "amount", "currency", "stage", "status", "created_at"], {
        "id": S.UUID, "contact_id": _STR_NULL, "title": {"type": "string"}, "amount": {"type": "string"},
        "currency": {"type": "string"}, "pipeline": {"type": "string"}, "stage": {"type": "string"},
        "status": {"type": "string"}, "source": {"type": "string"}, "fields": {"type": "object"},
        "created_at": S.TS}),
    "CrmTask": S.obj(["id", "title", "kind", "status", "created_at"], {
        "id": S.UUID, "contact_id": _STR_NULL, "deal_id": _STR_NULL, "call_id": _STR_NULL,
        "title": {"type": "string"}, "description": {"type": "string"}, "kind": {"type": "string"},
        "status": {"type": "string"}, "due_at": S.TS_NULL, "created_at": S.TS}),
    "CrmNote": S.obj(["id", "body", "author_kind", "created_at"], {
        "id": S.UUID, "contact_id": _STR_NULL, "deal_id": _STR_NULL, "call_id": _STR_NULL,
        "body": {"type": "string"}, "author_kind": {"type": "string"}, "created_at": S.TS}),
    "CrmCallLink": S.obj(["id", "call_id", "contact_id", "created_at"], {
        "id": S.UUID, "call_id": S.UUID, "contact_id": S.UUID, "deal_id": _STR_NULL, "created_at": S.TS,
        "call": S.obj(["id", "direction", "started_at"], {
            "id": S.UUID, "direction": {"type": "string"}, "from_number": {"type": "string"},
            "to_number": {"type": "string"}, "started_at": S.TS, "outcome": _STR_NULL,
            "summary": _STR_NULL})}),
})
S.COMPONENTS["CrmContactCard"] = S.obj(_CONTACT_REQUIRED + ["deals", "tasks", "notes", "call_links"], {
    **_CONTACT_PROPS,
    "deals": {"type": "array", "items": S.ref("CrmDeal")},
    "tasks": {"type": "array", "items": S.ref("CrmTask")},
    "notes": {"type": "array", "items": S.ref("CrmNote")},
    "call_links": {"type": "array", "items": S.ref("CrmCallLink")}})




def serialize_contact(c: CrmContact) -> dict:
    return {"id": str(c.id), "project_id": str(c.project_id), "full_name": c.full_name,
            "phone_e164": c.phone_e164, "email": c.email, "company_id": S.sid(c.company_id), "source": c.source,
            "fields": c.fields_json or {}, "last_contacted_at": S.iso(c.last_contacted_at),
            "created_at": c.created_at.isoformat(), "updated_at": c.updated_at.isoformat()}


def serialize_deal(d: CrmDeal) -> dict:
    return {"id": str(d.id), "contact_id": S.sid(d.contact_id), "title": d.title, "amount": str(d.amount),
            "currency": d.currency, "pipeline": d.pipeline, "stage": d.stage, "status": d.status,
            "source": d.source, "fields": d.fields_json or {}, "created_at": d.created_at.isoformat()}


def serialize_task(t: CrmTask) -> dict:
    return {"id": str(t.id), "contact_id": S.sid(t.contact_id), "deal_id": S.sid(t.deal_id),
            "call_id": S.sid(t.call_id), "title": t.title, "description": t.description, "kind": t.kind,
            "status": t.status, "due_at": S.iso(t.due_at), "created_at": t.created_at.isoformat()}


def serialize_note(n: CrmNote) -> dict:
    return {"id": str(n.id), "contact_id": S.sid(n.contact_id), "deal_id": S.sid(n.deal_id),
            "call_id": S.sid(n.call_id), "body": n.body, "author_kind": n.author_kind,
            "created_at": n.created_at.isoformat()}


def serialize_link(link: CrmCallLink, call: Call) -> dict:
    return {"id": str(link.id), "call_id": str(link.call_id), "contact_id": str(link.contact_id),
            "deal_id": S.sid(link.deal_id), "created_at": link.created_at.isoformat(),
            "call": {"id": str(call.id), "direction": call.direction, "from_number": call.from_number,
                     "to_number": call.to_number, "started_at": call.started_at.isoformat(),
                     "outcome": call.outcome, "summary": call.summary}}


@group.route("/crm/contacts", ["GET"], permission="crm.read", responses={200: S.page_of("CrmContact")},
             query={**PAGE_QUERY, "q": {"type": "string"}, "phone": {"type": "string"}},
             summary="Контакты встроенной CRM (поиск по имени, телефону, e-mail)")
def list_contacts():
    q = CrmContact.for_project(g.project.id)
    if request.args.get("phone"):
        try:
            phone = normalize_e164(request.args["phone"])
        except ValueError as exc:
            raise ValidationFailed({"phone": str(exc)})
        q = q.where(CrmContact.phone_e164 == phone)
    text = (request.args.get("q") or "").strip()
    if text:
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(CrmContact.full_name.ilike(like) | CrmContact.email.ilike(like)
                    | CrmContact.phone_e164.contains(text.lstrip("+")))
    return paginate(q, CrmContact.created_at, CrmContact.id, serialize_contact)


@group.route("/crm/contacts/<contact_id>", ["GET"], permission="crm.read", responses={200: S.ref("CrmContactCard")},
             summary="Карточка контакта: сделки, задачи, заметки и звонки")
def get_contact(contact_id: str):
    try:
        cid = uuid.UUID(contact_id)
    except ValueError:
        raise NotFound("crm_contact", contact_id)
    pid = g.project.id
    c = CrmContact.for_project(pid).where(CrmContact.id == cid).first()
    if c is None:
        raise NotFound("crm_contact", contact_id)
    deals = list(CrmDeal.for_project(pid).where(CrmDeal.contact == c.id).order_by(CrmDeal.created_at.desc()))
    deal_ids = [d.id for d in deals]
    about = (CrmTask.contact == c.id) | (CrmTask.deal.in_(deal_ids) if deal_ids else pw.SQL("false"))
    tasks = CrmTask.for_project(pid).where(about).order_by(CrmTask.created_at.desc())
    note_about = (CrmNote.contact == c.id) | (CrmNote.deal.in_(deal_ids) if deal_ids else pw.SQL("false"))
    notes = CrmNote.for_project(pid).where(note_about).order_by(CrmNote.created_at.desc())
    links = (CrmCallLink.select(CrmCallLink, Call).join(Call, on=(CrmCallLink.call == Call.id))
             .where((CrmCallLink.project == pid) & (CrmCallLink.contact == c.id) & (Call.project == pid))
             .order_by(Call.started_at.desc()))
    return {**serialize_contact(c), "deals": [serialize_deal(d) for d in deals],
            "tasks": [serialize_task(t) for t in tasks], "notes": [serialize_note(n) for n in notes],
            "call_links": [serialize_link(link, link.call) for link in links]}
