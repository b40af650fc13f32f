"""RQ entry points of the campaign dialer (``core.campaigns.dialer`` does the work).

Each running campaign has ``VOICEAI_DIALER_SLOTS`` loops, one per RQ job. A loop holds a short
Redis lease for its slot (``dialer:lease:<campaign>:<slot>``, refreshed every step), steps the
dialer until its time slice ends and then enqueues its successor. A loop that dies with its worker
(kill -9) stops refreshing its lease; within seconds a surviving loop sees the missing lease and
enqueues a replacement, and every worker's ``start_watchdog`` thread does the same when every loop is gone.
Several loops on one campaign are safe: claims are serialized by the campaign's advisory lock.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import redis
from rq import Queue

from core.config import get_settings

log = logging.getLogger("voiceai.jobs.dialer")

QUEUE = "default"
LEASE_S = 5
SLICE_S = 120


def _lease_key(cid: str, slot: int) -> str:
    return f"dialer:lease:{cid}:{slot}"


def enqueue_loops(r: redis.Redis, campaign_id: Any, slots: int | None = None) -> int:
    """Enqueue a loop for every slot of the campaign that has none running (lease missing)."""
    settings = get_settings()
    slots = slots or settings.dialer_slots
    cid = str(campaign_id)
    queued = 0
    for slot in range(slots):
        if r.exists(_lease_key(cid, slot)):
            continue
        # one enqueue per slot per lease period, whoever notices first
        if not r.set(f"dialer:spawn:{cid}:{slot}", "1", nx=True, ex=LEASE_S * 2):
            continue
        Queue(QUEUE, connection=r).enqueue("jobs.dialer.dial_campaign_job", cid, slot,
                                           job_id=f"dialer-{cid}-{slot}-{uuid.uuid4().hex[:8]}",
                                           job_timeout=SLICE_S + 60, result_ttl=60, failure_ttl=3600)
        queued += 1
    return queued


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_REFRESH = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
            "else return 0 end")


def run_loop(r: redis.Redis, campaign_id: str, slot: int, slice_s: float = SLICE_S,
             interval_s: float | None = None) -> str:
    """One slot's loop; returns why it stopped (busy, finished, paused, slice)."""
    from core.campaigns.dialer import Dialer
    settings = get_settings()
    interval_s = settings.dialer_interval_ms / 1000.0 if interval_s is None else interval_s
    key = _lease_key(campaign_id, slot)
    token = uuid.uuid4().hex
    if not r.set(key, token, nx=True, ex=LEASE_S):
        return "busy"
    dialer = Dialer(r, node=settings.fs_node)
    deadline = time.monotonic() + slice_s
    reason = "slice"
    try:
        while time.monotonic() < deadline:
            if not r.eval(_REFRESH, 1, key, token, LEASE_S * 1000):
                return "lease_lost"
            res = dialer.step(campaign_id)
            if res.status in ("finished", "cancelled", "missing", "draft") or \
                    (res.status == "paused" and res.active_runs == 0):
                reason = res.status
                break
            enqueue_loops(r, campaign_id)  # revive slots whose loop died with its worker
            if res.dialed == 0 and res.finalized == 0:
                time.sleep(interval_s)
    finally:
        r.eval(_RELEASE, 1, key, token)
    if reason == "slice":
        enqueue_loops(r, campaign_id)
    return reason


def dial_campaign_job(campaign_id: str, slot: int = 0) -> str:
    """RQ entry point (binds the database itself)."""
    from models.base import bind_database
    settings = get_settings()
    db = bind_database(settings.database_url)
    r = redis.Redis.from_url(settings.redis_url)
    try:
        with db.connection_context():
            return run_loop(r, campaign_id, slot)
    finally:
        r.close()


def watchdog(r: redis.Redis) -> int:
    """Every running campaign (or paused one with calls still settling) gets its loops back."""
    from models.base import database
    from models.campaigns import Campaign, CampaignRun
    queued = 0
    with database.connection_context():
        running = [c.id for c in Campaign.select(Campaign.id).where(Campaign.status == "running")]
        settling = [row.campaign_id for row in CampaignRun.select(CampaignRun.campaign).where(
            CampaignRun.state.in_(("claimed", "originating", "in_call"))).distinct()]
    for cid in set(running) | set(settling):
        queued += enqueue_loops(r, cid)
    return queued


def start_watchdog(r: redis.Redis, interval_s: float = 10.0) -> threading.Thread:
    """Background thread of every worker process (jobs/worker.py): the net under the loops' own
    revival, for when every loop of a campaign died at once."""
    def loop() -> None:
        while True:
            try:
                watchdog(r)
            except Exception:  # noqa: BLE001 - database or Redis down: try again next round
                log.exception("dialer watchdog failed")
            time.sleep(interval_s)
    thread = threading.Thread(target=loop, name="voiceai-dialer-watchdog", daemon=True)
    thread.start()
    return thread
