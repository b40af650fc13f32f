"""What the campaigns API does, apart from HTTP: contact upload (one transaction, COPY), status
changes, DNC list entries, single outbound calls under the campaign rules.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

from core.campaigns import compliance
from core.campaigns.contacts_import import ImportReport, apply_exclusions, parse_contacts
from core.campaigns.dialer import consented_numbers
from core.campaigns.timezones import resolve_timezone
from core.campaigns.windows import next_call_time
from models.base import database, utcnow
from models.campaigns import Campaign, CampaignContact
from models.messaging import Consent, DncEntry

_COPY_COLUMNS = ("id", "created_at", "updated_at", "project_id", "campaign_id", "phone_e164", "name", "timezone",
                 "variables_json", "source_row", "state", "exclusion_reason", "attempts")
_NULL = "__NULL__"


def import_contacts(campaign: Campaign, data: bytes, filename: str, mapping: dict[str, Any] | None) -> ImportReport:
    """Parse, filter and insert the file's contacts; the caller's transaction makes it all-or-nothing.

    Raises ``ImportFileError`` before writing anything when the file is not a readable table.
    """
    report = parse_contacts(data, filename, mapping)
    project_id = campaign.project_id
    dnc = {r.phone_e164 for r in DncEntry.select(DncEntry.phone_e164).where(
        (DncEntry.project == project_id) & (DncEntry.expires_at.is_null() | (DncEntry.expires_at > utcnow())))}
    consented = None
    if compliance.rules_for(campaign.purpose).requires_consent:
        consented = {r.phone_e164 for r in Consent.select(Consent.phone_e164).where(
            (Consent.project == project_id) & (Consent.purpose == campaign.purpose)
            & Consent.channel.in_(("any", "call")) & Consent.revoked_at.is_null())}
    existing = {r.phone_e164 for r in CampaignContact.select(CampaignContact.phone_e164).where(
        CampaignContact.campaign == campaign.id)}
    apply_exclusions(report, dnc, consented, existing)
    copy_contacts(campaign, report)
    return report


def copy_contacts(campaign: Campaign, report: ImportReport) -> None:
    """Bulk insert with COPY (100k rows in about a second) inside the current transaction."""
    if not report.contacts:
        return
    now = utcnow().isoformat()
    buf = io.StringIO()
    writer = csv.writer(buf)
    pid, cid = str(campaign.project_id), str(campaign.id)
    for c in report.contacts:
        writer.writerow((str(uuid.uuid4()), now, now, pid, cid, c.phone_e164, c.name, c.timezone or _NULL,
                         json.dumps(c.variables, ensure_ascii=False), c.source_row,
                         c.state, c.exclusion_reason or _NULL, 0))
    buf.seek(0)
    cursor = database.cursor()
    cursor.copy_expert(f"COPY campaign_contacts ({', '.join(_COPY_COLUMNS)}) FROM STDIN WITH (FORMAT csv, NULL '{_NULL}')",
                       buf)


@dataclass(frozen=True)
class Refusal:
    code: str      # dnc | no_consent | outside_hours | frequency_cap
    message: str   # Russian
    next_allowed_at: dt.datetime | None = None


def check_single_call(project_id: Any, project_tz: str, phone: str, purpose: str, schedule_json: dict | None,
                      contact_tz: str | None, now: dt.datetime) -> Refusal | None:
    """The campaign rules for one outbound call: DNC, consent, hours in the callee's zone, caps."""
    if DncEntry.select().where((DncEntry.project == project_id) & (DncEntry.phone_e164 == phone)
                               & (DncEntry.expires_at.is_null() | (DncEntry.expires_at > now))).exists():
        return Refusal("dnc", "Номер в списке «Не звонить»")
    rules = compliance.rules_for(purpose)
    if rules.requires_consent and phone not in consented_numbers(project_id, [phone], purpose):
        return Refusal("no_consent", "Нет зафиксированного согласия абонента на рекламные звонки")
    zone = resolve_timezone(contact_tz, phone, project_tz).name
    when = next_call_time(schedule_json, purpose, zone, now)
    if when is None or when > now:
        return Refusal("outside_hours", f"Сейчас у абонента нерабочее для звонков время ({zone})", when)
    if purpose == "debt_collection":
        from core.campaigns.dialer import Dialer
        reached = Dialer._debt_contacts(project_id, [phone], now).get(phone, [])
        wait = compliance.frequency_next_allowed(purpose, reached, now)
        if wait is not None:
            return Refusal("frequency_cap", "Превышена частота взаимодействий с должником (230-ФЗ: 1 в сутки, "
                           "2 в неделю, 8 в месяц)", wait)
    return None

