"""The campaign dialer: claim due contacts, record the attempt, originate, settle outcomes.

Crash safety (docs/campaigns.md, "Crash safety"):

1. ``claim`` runs in ONE transaction under a per-campaign advisory lock: it counts live calls,
   takes tokens from the rate bucket, claims due contacts (``UPDATE ... WHERE state='pending' AND
   next_attempt_at<=now ... FOR UPDATE SKIP LOCKED`` with a fresh ``claim_token``), re-checks DNC,
   consent, hours and frequency caps for each, and for the ones to dial creates the ``calls`` row
   and the ``campaign_runs`` row (state ``claimed``, ``originate_command_id`` = the call id from
   which the command id ``originate-<call id>`` derives). The originate command itself is stored
   on the call row (``metadata_json.originate``).
2. Only after COMMIT are the commands queued for esl_app; then the runs become ``originating``.
3. A worker killed between 1 and 2 leaves runs in ``claimed``: ``recover`` re-queues the stored
   command. The queue refuses an id it has seen (``tel:cmd:<id>:seen``) and esl_app executes an id
   at most once, so a re-queue never dials twice; a worker killed inside 1 rolls back entirely.
4. ``finalize`` settles runs whose call ended (from whichever process ended it): prices the call,
   moves the contact to done / pending (retry at the outcome's delay) / failed, writes the
   ``campaign_results`` row for final states, adds opt-outs to the DNC list. One transaction per
   batch, rows locked with SKIP LOCKED, state-guarded, so two dialers never settle a run twice.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from zoneinfo import ZoneInfo

import redis

from core.billing.budgets import budget_reached
from core.billing.costs import price_call
from core.campaigns import compliance
from core.campaigns.limits import Limits, after_attempt, parse_limits
from core.campaigns.optout import detect_opt_out
from core.campaigns.pacing import TokenBucket, bucket_for, dial_slots
from core.campaigns.timezones import resolve_timezone
from core.campaigns.windows import next_call_time
from core.events.bus import publish
from core.events.schema import make_event
from core.telephony.command_queue import CommandQueue, TelephonyCommand
from core.telephony.outbound import OutboundRequest, prepare_call
from core.tracing import new_trace_id, set_trace_id
from models.base import database, utcnow
from models.calls import Call, Transcript
from models.campaigns import Campaign, CampaignContact, CampaignResult, CampaignRun
from models.messaging import DncEntry, DncSource
from models.saas import Project
from models.telephony import SipConnection

log = logging.getLogger("voiceai.dialer")

ACTIVE_RUN_STATES = ("claimed", "originating", "in_call")
STALE_CLAIM_S = 15.0
CONVERSION_OUTCOMES = frozenset({"success", "converted", "agreed", "confirmed", "paid", "promise_to_pay",
                                 "appointment_booked", "interested"})


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class StepResult:
    claimed: int = 0
    dialed: int = 0
    deferred: int = 0
    excluded: int = 0
    finalized: int = 0
    recovered: int = 0
    status: str = "running"
    active_runs: int = 0
    paused_reason: str | None = None
    events: list[dict] = field(default_factory=list)


def is_conversion(extracted: dict[str, Any] | None) -> bool:
    """The agent's extracted outcome says the call achieved its goal."""
    data = extracted or {}
    if data.get("conversion") is True:
        return True
    return str(data.get("outcome", "")).lower() in CONVERSION_OUTCOMES


class Dialer:
    def __init__(self, r: redis.Redis, node: str = "default", wid: str | None = None,
                 clock: Callable[[], dt.datetime] = utcnow, monotonic: Callable[[], float] = time.time) -> None:
        self.r = r
        self.node = node
        self.wid = wid or worker_id()
        self.clock = clock
        self.monotonic = monotonic

    # -- one step of the loop -----------------------------------------------------------------
    def step(self, campaign_id: Any, on_committed: Callable[[], None] | None = None) -> StepResult:
        """Recover, settle ended calls, claim and originate. Safe to run from several workers."""
        res = StepResult()
        cid = uuid.UUID(str(campaign_id))
        res.recovered = self.recover(cid)
        res.finalized = self.finalize(cid, res)
        commands = self.claim(cid, res)
        if on_committed is not None:
            on_committed()  # tests: the moment a crash leaves claimed runs behind
        self.submit(commands)
        self.maybe_finish(cid, res)
        for event in res.events:
            self._publish(event)
        return res

    # -- claim ------------------------------------------------------------------------------------
    def claim(self, cid: uuid.UUID, res: StepResult) -> list[TelephonyCommand]:
        commands: list[TelephonyCommand] = []
        with database.atomic():
            database.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dialer:{cid}",))
            campaign = Campaign.get_or_none(Campaign.id == cid)
            if campaign is None:
                res.status = "missing"
                return []
            res.status = campaign.status
            if campaign.status != "running":
                return []
            limits = parse_limits(campaign.limits_json)
            now = self.clock()
            verdict = budget_reached(campaign.project_id, cid, limits.budget, now)
            if verdict is not None:
                self._pause_for_budget(campaign, verdict, res)
                return []
            project = Project.get_by_id(campaign.project_id)
            live = self._live_calls(cid)
            daily_left, project_left = self._daily_left(campaign, project, limits, now)
            bucket = self._load_bucket(cid, limits)
            tokens = bucket.available(self.monotonic())
            n = dial_slots(tokens, limits.max_concurrent, live, daily_left, project_left)
            if n <= 0:
                self._save_bucket(cid, bucket)
                return []
            token = uuid.uuid4()
            rows = database.execute_sql(
                "UPDATE campaign_contacts SET state='in_progress', claim_token=%s, claimed_by=%s, claimed_at=%s, "
                "updated_at=%s WHERE id IN (SELECT id FROM campaign_contacts WHERE campaign_id=%s AND state='pending' "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= %s) ORDER BY next_attempt_at NULLS FIRST, "
                "source_row NULLS LAST LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING id, phone_e164, name, timezone, variables_json, attempts",
                (str(token), self.wid, now, now, str(cid), now, n)).fetchall()
            res.claimed = len(rows)
            if not rows:
                self._save_bucket(cid, bucket)
                return []
            phones = [row[1] for row in rows]
            dnc = self._dnc(campaign.project_id, phones, now)
            consented = self._consented(campaign.project_id, phones, now) \
                if compliance.rules_for(campaign.purpose).requires_consent else None
            reached = self._debt_contacts(campaign.project_id, phones, now) \
                if campaign.purpose == "debt_collection" else {}
            conn = SipConnection.get_or_none(SipConnection.id == campaign.sip_connection_id) \
                if campaign.sip_connection_id else None
            if conn is None:
                conn = SipConnection.select().where(SipConnection.project == campaign.project_id).first()
            project_tz = campaign.timezone or project.timezone
            for contact_id, phone, name, tz, variables, attempts in rows:
                if phone in dnc:
                    self._exclude(contact_id, "dnc", now)
                    res.excluded += 1
                    continue
                if consented is not None and phone not in consented:
                    self._exclude(contact_id, "no_consent", now)
                    res.excluded += 1
                    continue
                zone = resolve_timezone(tz, phone, project_tz).name
                when = next_call_time(campaign.schedule_json, campaign.purpose, zone, now)
                if when is None:
                    self._exclude(contact_id, "schedule_ended", now)
                    res.excluded += 1
                    continue
                wait = compliance.frequency_next_allowed(campaign.purpose, reached.get(phone, []), now) \
                    if campaign.purpose == "debt_collection" else None
                if wait is not None and wait > when:
                    when = next_call_time(campaign.schedule_json, campaign.purpose, zone, wait) or wait
                if when > now or conn is None:
                    self._defer(contact_id, when if when > now else now + dt.timedelta(minutes=5), now)
                    res.deferred += 1
                    continue
                commands.append(self._originate(campaign, conn, limits, contact_id, phone, name, variables,
                                                attempts + 1, token, now))
            bucket.take(len(commands), self.monotonic())
            self._save_bucket(cid, bucket)
            res.dialed = len(commands)
        return commands

    def _originate(self, campaign: Campaign, conn: SipConnection, limits: Limits, contact_id: Any, phone: str,
                   name: str, variables: dict, attempt_no: int, token: uuid.UUID, now: dt.datetime) -> TelephonyCommand:
        set_trace_id(new_trace_id())
        agent_vars = {**(variables or {}), **({"name": name} if name else {})}
        call, cmd = prepare_call(OutboundRequest(
            project_id=campaign.project_id, to_e164=phone, sip_connection=conn, caller_id=campaign.caller_id,
            agent_id=campaign.agent_id, agent_version_id=campaign.agent_version_id or campaign.agent.published_version_id,
            variables=agent_vars, timeout_s=limits.ring_timeout_s, campaign_id=campaign.id,
            campaign_contact_id=contact_id, variables_on_channel=False), self.node)
        cmd.args["campaign_id"] = str(campaign.id)
        Call.update(metadata_json={"originate": json.loads(cmd.to_json()), "campaign_attempt": attempt_no,
                                   "amd": {"enabled": limits.amd_enabled, "policy": limits.amd_policy}}
                    ).where(Call.id == call.id).execute()
        CampaignRun.create(project=campaign.project_id, campaign=campaign.id, contact=contact_id, attempt_no=attempt_no,
                           call=call.id, state="claimed", claimed_by=self.wid, claimed_at=now,
                           originate_command_id=call.id)
        CampaignContact.update(attempts=attempt_no, last_attempt_at=now, updated_at=now).where(
            (CampaignContact.id == contact_id) & (CampaignContact.claim_token == token)).execute()
        return cmd

    def submit(self, commands: list[TelephonyCommand]) -> None:
        if not commands:
            return
        queue = CommandQueue(self.r, self.node)
        for cmd in commands:
            queue.submit(cmd)
        ids = [uuid.UUID(cmd.args["call_id"]) for cmd in commands]
        with database.atomic():
            CampaignRun.update(state="originating", started_at=utcnow(), updated_at=utcnow()).where(
                CampaignRun.call.in_(ids) & (CampaignRun.state == "claimed")).execute()

    # -- recovery ---------------------------------------------------------------------------------
    def recover(self, cid: uuid.UUID) -> int:
        """Re-queue commands of runs a killed worker recorded but never queued (idempotent)."""
        cutoff = self.clock() - dt.timedelta(seconds=STALE_CLAIM_S)
        stale = list(CampaignRun.select(CampaignRun, Call).join(Call, on=(CampaignRun.call == Call.id)).where(
            (CampaignRun.campaign == cid) & (CampaignRun.state == "claimed") & (CampaignRun.claimed_at < cutoff)))
        if not stale:
            return 0
        queue = CommandQueue(self.r, self.node)
        count = 0
        for run in stale:
            stored = (run.call.metadata_json or {}).get("originate")
            if stored:
                queued = queue.submit(TelephonyCommand(**stored))
                log.warning("stale dialer claim recovered", extra={"run_id": str(run.id), "requeued": queued})
            count += CampaignRun.update(state="originating", started_at=utcnow(), updated_at=utcnow()).where(
                (CampaignRun.id == run.id) & (CampaignRun.state == "claimed")).execute()
        return count

    # -- outcomes ---------------------------------------------------------------------------------
    def finalize(self, cid: uuid.UUID, res: StepResult | None = None, batch: int = 500) -> int:
        done = 0
        with database.atomic():
            rows = database.execute_sql(
                "SELECT r.id, r.contact_id, r.call_id, r.attempt_no FROM campaign_runs r JOIN calls c ON c.id = r.call_id "
                "WHERE r.campaign_id=%s AND r.state IN ('claimed','originating','in_call') AND c.ended_at IS NOT NULL "
                "ORDER BY r.claimed_at LIMIT %s FOR UPDATE OF r SKIP LOCKED", (str(cid), batch)).fetchall()
            if not rows:
                return 0
            campaign = Campaign.get_by_id(cid)
            limits = parse_limits(campaign.limits_json)
            now = self.clock()
            for run_id, contact_id, call_id, attempt_no in rows:
                price_call(call_id)
                call = Call.get_by_id(call_id)
                contact = CampaignContact.get_by_id(contact_id)
                outcome = self._outcome(call, limits)
                CampaignRun.update(state="ended", outcome=outcome, ended_at=call.ended_at, updated_at=now).where(
                    CampaignRun.id == run_id).execute()
                self._opt_out(call, contact)
                if contact.state == "excluded":
                    done += 1
                    continue
                decision = after_attempt(outcome, contact.attempts, limits, now)
                state = decision.state
                if outcome == "voicemail_message_left":
                    state = "done"
                CampaignContact.update(state=state, next_attempt_at=decision.next_attempt_at, last_outcome=outcome[:20],
                                       claim_token=None, claimed_by=None, claimed_at=None, updated_at=now).where(
                    CampaignContact.id == contact_id).execute()
                if state in ("done", "failed"):
                    self._result(campaign, contact, call, outcome, now)
                done += 1
        if res is not None and done and self.r.set(f"dialer:progress:{cid}", "1", nx=True, px=1000):
            res.events.append(make_event("campaign.progress", campaign.project_id, "campaign", cid,
                                         self.progress_payload(cid)))
        # a call that ended may have used up the budget
        if limits.budget is not None or done:
            with database.atomic():
                database.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dialer:{cid}",))
                campaign = Campaign.get_by_id(cid)
                if campaign.status == "running":
                    verdict = budget_reached(campaign.project_id, cid, limits.budget, now)
                    if verdict is not None and res is not None:
                        self._pause_for_budget(campaign, verdict, res)
        return done

    @staticmethod
    def _outcome(call: Call, limits: Limits) -> str:
        amd = (call.metadata_json or {}).get("amd") or {}
        if amd.get("result") == "machine":
            return "voicemail_message_left" if amd.get("message_left") else "voicemail"
        return call.outcome or "failed"

    def _result(self, campaign: Campaign, contact: CampaignContact, call: Call, outcome: str, now: dt.datetime) -> None:
        cost = Call.select(Call.cost_total).where(Call.campaign_contact == contact.id)
        total = sum((c.cost_total for c in cost), start=type(call.cost_total)(0))
        (CampaignResult.insert(project=campaign.project_id, campaign=campaign.id, contact=contact.id, call=call.id,
                               outcome=outcome, conversion=is_conversion(call.extracted_json),
                               attempts=contact.attempts, extracted_json=call.extracted_json or {},
                               cost_total=total, currency=call.currency, completed_at=now)
         .on_conflict(conflict_target=[CampaignResult.campaign, CampaignResult.contact],
                      update={CampaignResult.outcome: outcome, CampaignResult.call: call.id,
                              CampaignResult.attempts: contact.attempts, CampaignResult.cost_total: total,
                              CampaignResult.conversion: is_conversion(call.extracted_json),
                              CampaignResult.extracted_json: call.extracted_json or {},
                              CampaignResult.completed_at: now}).execute())

    def _opt_out(self, call: Call, contact: CampaignContact) -> None:
        """The callee asked not to be called: DNC now, and the contact is excluded."""
        for turn in Transcript.select(Transcript.text).where((Transcript.call == call.id) & (Transcript.speaker == "caller")):
            phrase = detect_opt_out(turn.text)
            if phrase:
                add_opt_out(call.project_id, contact.phone_e164, call.id, phrase)
                CampaignContact.update(state="excluded", exclusion_reason="opt_out", updated_at=utcnow()).where(
                    CampaignContact.id == contact.id).execute()
                contact.state = "excluded"
                return

    # -- helpers ----------------------------------------------------------------------------------
    def _live_calls(self, cid: uuid.UUID) -> int:
        return database.execute_sql(
            "SELECT count(*) FROM campaign_runs r JOIN calls c ON c.id = r.call_id WHERE r.campaign_id=%s "
            "AND r.state IN ('claimed','originating','in_call') AND c.ended_at IS NULL", (str(cid),)).fetchone()[0]

    def _daily_left(self, campaign: Campaign, project: Project, limits: Limits,
                    now: dt.datetime) -> tuple[int | None, int | None]:
        if limits.daily_cap is None and limits.project_daily_cap is None:
            return None, None
        zone = ZoneInfo(project.timezone or "Europe/Moscow")
        midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        out: list[int | None] = []
        for cap, where in ((limits.daily_cap, CampaignRun.campaign == campaign.id),
                           (limits.project_daily_cap, CampaignRun.project == campaign.project_id)):
            if cap is None:
                out.append(None)
                continue
            used = CampaignRun.select().where(where & (CampaignRun.claimed_at >= midnight)).count()
            out.append(max(0, cap - used))
        return out[0], out[1]

    def _bucket_key(self, cid: uuid.UUID) -> str:
        return f"dialer:bucket:{cid}"

    def _load_bucket(self, cid: uuid.UUID, limits: Limits) -> TokenBucket:
        bucket = bucket_for(limits.calls_per_minute)
        raw = self.r.hgetall(self._bucket_key(cid))
        if raw:
            data = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
            if abs(data.get("rate", -1) - bucket.rate_per_s) < 1e-9:
                bucket.tokens, bucket.updated = data.get("tokens", 0.0), data.get("updated", 0.0)
        return bucket

    def _save_bucket(self, cid: uuid.UUID, bucket: TokenBucket) -> None:
        self.r.hset(self._bucket_key(cid), mapping={"tokens": bucket.tokens, "updated": bucket.updated,
                                                   "rate": bucket.rate_per_s})
        self.r.expire(self._bucket_key(cid), 3600)

    @staticmethod
    def _dnc(project_id: Any, phones: list[str], now: dt.datetime) -> set[str]:
        return {row.phone_e164 for row in DncEntry.select(DncEntry.phone_e164).where(
            (DncEntry.project == project_id) & DncEntry.phone_e164.in_(phones)
            & (DncEntry.expires_at.is_null() | (DncEntry.expires_at > now)))}

    @staticmethod
    def _consented(project_id: Any, phones: list[str], now: dt.datetime) -> set[str]:
        return consented_numbers(project_id, phones, "advertising")

    @staticmethod
    def _debt_contacts(project_id: Any, phones: list[str], now: dt.datetime) -> dict[str, list[dt.datetime]]:
        rows = database.execute_sql(
            "SELECT c.to_number, c.answered_at FROM calls c JOIN campaigns k ON k.id = c.campaign_id "
            "WHERE c.project_id=%s AND k.purpose='debt_collection' AND c.answered_at IS NOT NULL "
            "AND c.answered_at > %s AND c.to_number = ANY(%s)",
            (str(project_id), now - dt.timedelta(days=31), phones)).fetchall()
        out: dict[str, list[dt.datetime]] = {}
        for phone, answered in rows:
            out.setdefault(phone, []).append(answered if answered.tzinfo else answered.replace(tzinfo=dt.timezone.utc))
        return out

    @staticmethod
    def _exclude(contact_id: Any, reason: str, now: dt.datetime) -> None:
        CampaignContact.update(state="excluded", exclusion_reason=reason, claim_token=None, claimed_by=None,
                               claimed_at=None, updated_at=now).where(CampaignContact.id == contact_id).execute()

    @staticmethod
    def _defer(contact_id: Any, when: dt.datetime, now: dt.datetime) -> None:
        CampaignContact.update(state="pending", next_attempt_at=when, claim_token=None, claimed_by=None,
                               claimed_at=None, updated_at=now).where(CampaignContact.id == contact_id).execute()

    def _pause_for_budget(self, campaign: Campaign, verdict: Any, res: StepResult) -> None:
        changed = Campaign.update(status="paused", pause_reason="BUDGET_LIMIT_REACHED", updated_at=utcnow()).where(
            (Campaign.id == campaign.id) & (Campaign.status == "running")).execute()
        res.status = "paused"
        res.paused_reason = "BUDGET_LIMIT_REACHED"
        if changed:
            res.events.append(make_event("budget.threshold_reached", campaign.project_id, "campaign", campaign.id, {
                "scope": verdict.scope, "limit": str(verdict.limit), "spent": str(verdict.spent), "threshold": 1.0,
                "budget_limit_id": verdict.budget_limit_id, "action": "campaign_paused",
                "error_code": "BUDGET_LIMIT_REACHED", "campaign_name": campaign.name}))

    def maybe_finish(self, cid: uuid.UUID, res: StepResult) -> None:
        open_count = CampaignContact.select().where((CampaignContact.campaign == cid)
                                                    & CampaignContact.state.in_(("pending", "in_progress"))).count()
        res.active_runs = CampaignRun.select().where((CampaignRun.campaign == cid)
                                                     & CampaignRun.state.in_(ACTIVE_RUN_STATES)).count()
        if open_count:
            return
        now = utcnow()
        changed = Campaign.update(status="finished", finished_at=now, updated_at=now).where(
            (Campaign.id == cid) & (Campaign.status == "running")).execute()
        if changed:
            res.status = "finished"
            campaign = Campaign.get_by_id(cid)
            res.events.append(make_event("campaign.finished", campaign.project_id, "campaign", cid,
                                         self.progress_payload(cid)))

    def progress_payload(self, cid: uuid.UUID) -> dict[str, Any]:
        from core.campaigns.stats import contact_counts
        return {"contacts": contact_counts(cid)}

    def _publish(self, event: dict) -> None:
        try:
            publish(self.r, event)
        except redis.RedisError:
            log.exception("campaign event not published")


def consented_numbers(project_id: Any, phones: list[str], purpose: str) -> set[str]:
    """Numbers with a valid (unrevoked) consent for ``purpose`` on calls (or any channel)."""
    from models.messaging import Consent
    return {row.phone_e164 for row in Consent.select(Consent.phone_e164).where(
        (Consent.project == project_id) & Consent.phone_e164.in_(phones) & (Consent.purpose == purpose)
        & Consent.channel.in_(("any", "call")) & Consent.revoked_at.is_null())}


def add_opt_out(project_id: Any, phone: str, call_id: Any, phrase: str) -> None:
    """Put a number into the DNC list because its owner asked during a call (idempotent)."""
    (DncEntry.insert(project=project_id, phone_e164=phone, reason=f"Просьба абонента в разговоре: «{phrase}»",
                     source=DncSource.CALL_OPT_OUT.value, call=call_id)
     .on_conflict_ignore().execute())
