"""The platform's own CRM on the ``crm_*`` tables (models.crm), scoped to one project.

Every query filters by the project, so an id from another project is simply "not found".
"""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from core.tools.base import ToolContext, ToolError
from core.tools.crm.base import (CallLinkRecord, ContactRecord, CrmProvider, DealRecord, NoteRecord,
                                 TaskRecord)
from models.base import utcnow
from models.crm import (CrmCallLink, CrmContact, CrmDeal, CrmNote, CrmSource, CrmTask, NoteAuthorKind,
                        TaskStatus)


def _uuid(value: str | uuid.UUID | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _contact_record(c: CrmContact, created: bool = False) -> ContactRecord:
    return ContactRecord(id=str(c.id), full_name=c.full_name, phone=c.phone_e164, email=c.email,
                         created=created)


def _source(ctx: ToolContext) -> str:
    return CrmSource.CALL.value if ctx.call_id else CrmSource.API.value


class BuiltinCrm(CrmProvider):
    name = "builtin"

    def __init__(self, project_id: uuid.UUID) -> None:
        self.project_id = project_id

    # -- lookups ------------------------------------------------------------------------------
    def _contact_row(self, contact_id: str | None) -> CrmContact:
        cid = _uuid(contact_id)
        row = CrmContact.for_project(self.project_id).where(CrmContact.id == cid).first() if cid else None
        if row is None:
            raise ToolError("NOT_FOUND", "Контакт не найден в CRM", {"contact_id": contact_id})
        return row

    def _deal_row(self, deal_id: str | None) -> CrmDeal:
        did = _uuid(deal_id)
        row = CrmDeal.for_project(self.project_id).where(CrmDeal.id == did).first() if did else None
        if row is None:
            raise ToolError("NOT_FOUND", "Сделка не найдена в CRM", {"deal_id": deal_id})
        return row

    def find_contact_by_phone(self, phone_e164: str) -> ContactRecord | None:
        row = (CrmContact.for_project(self.project_id).where(CrmContact.phone_e164 == phone_e164)
               .order_by(CrmContact.created_at, CrmContact.id).first())
        return _contact_record(row) if row else None

    def get_contact(self, contact_id: str) -> ContactRecord:
        return _contact_record(self._contact_row(contact_id))

    # -- changes ------------------------------------------------------------------------------
    def create_contact(self, ctx: ToolContext, phone_e164: str, full_name: str = "",
                       email: str | None = None) -> ContactRecord:
        row = CrmContact.create(project=self.project_id, full_name=full_name or "", phone_e164=phone_e164,
                                email=email, source=_source(ctx), last_contacted_at=utcnow())
        return _contact_record(row, created=True)

    def update_contact(self, ctx: ToolContext, contact_id: str, full_name: str | None = None,
                       email: str | None = None) -> ContactRecord:
        row = self._contact_row(contact_id)
        if full_name:
            row.full_name = full_name
        if email:
            row.email = email
        row.last_contacted_at = utcnow()
        row.save()
        return _contact_record(row)

    def find_or_create_contact(self, ctx: ToolContext, phone_e164: str, full_name: str = "",
                               email: str | None = None) -> ContactRecord:
        record = super().find_or_create_contact(ctx, phone_e164, full_name, email)
        if not record.created:
            CrmContact.update(last_contacted_at=utcnow()).where(
                (CrmContact.project == self.project_id) & (CrmContact.id == uuid.UUID(record.id))).execute()
        return record

    def create_deal(self, ctx: ToolContext, title: str, contact_id: str | None, amount: Decimal,
                    currency: str = "RUB", stage: str | None = None, comment: str = "") -> DealRecord:
        contact = self._contact_row(contact_id) if contact_id else None
        row = CrmDeal.create(project=self.project_id, contact=contact.id if contact else None,
                             company=contact.company_id if contact else None, title=title,
                             amount=amount, currency=currency, stage=stage or "new", source=_source(ctx),
                             fields_json={"comment": comment} if comment else {})
        if comment:
            CrmNote.create(project=self.project_id, contact=row.contact_id, deal=row.id, call=ctx.call_id,
                           body=comment, author_kind=NoteAuthorKind.AGENT.value)
        return DealRecord(id=str(row.id), title=row.title, amount=str(Decimal(row.amount).quantize(Decimal("0.01"))),
                          currency=row.currency, stage=row.stage, status=row.status,
                          contact_id=str(row.contact_id) if row.contact_id else None)

    def create_task(self, ctx: ToolContext, title: str, kind: str, description: str = "",
                    due_at: dt.datetime | None = None, contact_id: str | None = None,
                    deal_id: str | None = None) -> TaskRecord:
        contact = self._contact_row(contact_id) if contact_id else None
        deal = self._deal_row(deal_id) if deal_id else None
        if contact is None and deal is not None and deal.contact_id:
            contact = CrmContact.get_by_id(deal.contact_id)
        row = CrmTask.create(project=self.project_id, contact=contact.id if contact else None,
                             deal=deal.id if deal else None, call=ctx.call_id, kind=kind, title=title,
                             description=description, due_at=due_at, status=TaskStatus.OPEN.value,
                             created_by=ctx.user_id)
        return TaskRecord(id=str(row.id), title=row.title, kind=row.kind, status=row.status, due_at=row.due_at,
                          contact_id=str(row.contact_id) if row.contact_id else None,
                          deal_id=str(row.deal_id) if row.deal_id else None)

    def add_note(self, ctx: ToolContext, body: str, contact_id: str | None = None,
                 deal_id: str | None = None) -> NoteRecord:
        contact = self._contact_row(contact_id) if contact_id else None
        deal = self._deal_row(deal_id) if deal_id else None
        if contact is None and deal is not None and deal.contact_id:
            contact = CrmContact.get_by_id(deal.contact_id)
        if contact is None and deal is None:
            raise ToolError("VALIDATION_FAILED", "Укажите контакт или сделку, к которой добавить заметку")
        row = CrmNote.create(project=self.project_id, contact=contact.id if contact else None,
                             deal=deal.id if deal else None, call=ctx.call_id, body=body,
                             author_kind=NoteAuthorKind.AGENT.value)
        return NoteRecord(id=str(row.id), contact_id=str(row.contact_id) if row.contact_id else None,
                          deal_id=str(row.deal_id) if row.deal_id else None)

    def link_call(self, ctx: ToolContext, call_id: uuid.UUID, contact_id: str,
                  deal_id: str | None = None) -> CallLinkRecord:
        contact = self._contact_row(contact_id)
        deal = self._deal_row(deal_id) if deal_id else None
        existing = CrmCallLink.for_project(self.project_id).where(
            (CrmCallLink.call == call_id) & (CrmCallLink.contact == contact.id)).first()
        created = existing is None
        if existing is None:
            existing = CrmCallLink.create(project=self.project_id, call=call_id, contact=contact.id,
                                          deal=deal.id if deal else None)
        elif deal is not None and existing.deal_id != deal.id:
            existing.deal = deal.id
            existing.save()
        contact.last_contacted_at = utcnow()
        contact.save()
        return CallLinkRecord(id=str(existing.id), call_id=str(call_id), contact_id=str(contact.id),
                              deal_id=str(existing.deal_id) if existing.deal_id else None, created=created)
