"""Dialer benchmark: a campaign of 10,000 contacts against the FreeSWITCH simulator, a real
``voiceai-esl`` and real ``voiceai-worker`` processes, with random outcomes and worker crashes.

    .venv/bin/python bench/dialer.py [--contacts 10000] [--cpm 1200] [--concurrency 30] [--workers 3]

Outcomes are drawn per contact: answered with a random talk time, busy, no answer, failed. Every
``--kill-every`` seconds one worker's process group (worker + its RQ work horse) gets SIGKILL and is
restarted. At the end it checks the rows and the simulator:

- duplicates: an attempt dialled more than once, or two calls of one contact overlapping (must be 0);
- lost: contacts not settled (done/failed/excluded) or attempts never settled (must be 0);
- rate: attempts per minute while fresh contacts were waiting, against ``calls_per_minute``;
- concurrency: peak of simultaneous campaign calls (call rows, queued..ended) against ``max_concurrent``;
- upload: seconds to import 100,000 contacts (CSV parse, E.164, DNC filter, COPY) in one transaction.

The last line is one JSON object (duplicates, lost, rate_ratio, concurrency_ratio, upload_100k_s, ...).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# outcome groups: number prefix after +7999 -> simulator behaviour
GROUPS = [  # (weight, digit, outcome, ring_ms, hangup_after_ms)
    (0.14, "1", "answer", 150, 600), (0.14, "2", "answer", 150, 1000), (0.14, "3", "answer", 150, 1400),
    (0.14, "4", "answer", 150, 1800), (0.14, "5", "answer", 150, 2400),
    (0.12, "6", "busy", 150, None), (0.10, "7", "no_answer", 1200, None), (0.08, "8", "failed", 150, None),
]


def sweep_peak(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    live = peak = 0
    for _, d in points:
        live += d
        peak = max(peak, live)
    return peak


def main() -> int:  # noqa: C901 - a linear script
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=10000)
    ap.add_argument("--cpm", type=float, default=1200)
    ap.add_argument("--concurrency", type=int, default=45)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--kill-every", type=float, default=45.0)
    ap.add_argument("--upload-rows", type=int, default=100000)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()

    import psycopg2
    import redis

    from core.config import Settings, set_settings
    from core.security.crypto import generate_key, reset_keyring
    from core.seed import sync_roles
    from models.base import bind_database, database
    from models.migrate import migrate
    from tests.fssim import FsSim
    from tests.support.telephony import (BIN, EslProcess, TelephonyDirs, make_telephony_tenant, settings_env,
                                         telephony_settings)

    db_name = f"voiceai_bench_dialer_{os.getpid()}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db_name}"')
    work = Path(tempfile.mkdtemp(prefix="voiceai-bench-dialer-"))
    base = Settings.from_env(overrides={
        "database_url": f"postgresql://postgres@127.0.0.1:5432/{db_name}", "redis_url": "redis://127.0.0.1:6379/13",
        "secret_key": "bench", "encryption_keys": generate_key(), "log_level": "WARNING", "dialer_slots": args.slots,
        "dialer_interval_ms": 50}, environ={})
    set_settings(base)
    reset_keyring()
    db = bind_database(base.database_url)
    migrate(db, log=lambda *_: None)
    sync_roles()
    r = redis.Redis.from_url(base.redis_url)
    r.flushdb()
    dirs = TelephonyDirs.make(work)
    sim = FsSim(dialplan_dir=str(dirs.conf / "dialplan"),
                gateway_dir=str(dirs.conf / "sip_profiles" / "external" / "voiceai_generated"), tz="Europe/Moscow",
                heartbeat_interval=None).start()
    settings = telephony_settings(base, dirs, sim.port, voice=False)
    set_settings(settings)
    esl = EslProcess(settings, work / "esl.log").start()
    workers: list[subprocess.Popen] = []
    env = settings_env(settings)
    env["VOICEAI_LOG_LEVEL"] = "WARNING"

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen([str(BIN / "voiceai-worker")], env=env, cwd=ROOT, start_new_session=True,
                                stdout=open(work / f"worker-{len(workers)}.log", "a"), stderr=subprocess.STDOUT)

    out: dict = {}
    try:
        esl.wait_log("connected to FreeSWITCH", timeout=30)
        from core.campaigns.contacts_import import ContactRow, ImportReport
        from core.campaigns.service import copy_contacts, import_contacts
        from core.telephony.fs_apply import apply_telephony
        from core.telephony.command_queue import CommandQueue
        from models.calls import Call
        from models.campaigns import Campaign, CampaignContact, CampaignRun
        rng = random.Random(7)
        with database.connection_context():
            t = make_telephony_tenant("bench", recording=False)
            res = apply_telephony(r, settings)
            if res.command_id:
                CommandQueue(r, settings.fs_node).wait_result(res.command_id, 30)
            for _w, digit, outcome, ring, hang in GROUPS:
                sim.set_behavior(f"7999{digit}*", outcome=outcome, ring_ms=ring, hangup_after_ms=hang)

            # -- upload of 100,000 contacts -------------------------------------------------------
            up = Campaign.create(project=t["project"].id, name="Загрузка", purpose="reminder", agent=t["agent"].id,
                                 sip_connection=t["conn"].id, schedule_json={}, limits_json={})
            lines = ["Телефон;ФИО;Сумма"] + [f"8 (9{rng.randint(10, 99)}) {rng.randint(100, 999)}-{rng.randint(10, 99)}-"
                                             f"{rng.randint(10, 99)};Клиент {i};{rng.randint(100, 99999)}"
                                             for i in range(args.upload_rows)]
            data = ("\n".join(lines) + "\n").encode()
            t0 = time.perf_counter()
            with database.atomic():
                report = import_contacts(up, data, "big.csv", None)
            upload_s = time.perf_counter() - t0
            stored = CampaignContact.select().where(CampaignContact.campaign == up.id).count()
            print(f"upload: {args.upload_rows} rows ({len(data) / 1e6:.1f} MB) in {upload_s:.2f} s; "
                  f"{stored} contacts stored, {report.counts.get('duplicate', 0)} duplicates merged")

            # -- the campaign ---------------------------------------------------------------------------
            c = Campaign.create(project=t["project"].id, name="Бенчмарк", purpose="reminder", agent=t["agent"].id,
                                sip_connection=t["conn"].id, schedule_json={"always_open": True},
                                limits_json={"max_concurrent": args.concurrency, "calls_per_minute": args.cpm,
                                             "max_attempts": 2, "ring_timeout_s": 5,
                                             "retry_delays_min": {"busy": 0.05, "no_answer": 0.05, "failed": 0.05}})
            weights = [g[0] for g in GROUPS]
            rep = ImportReport()
            phones: set[str] = set()
            while len(phones) < args.contacts:
                digit = rng.choices(GROUPS, weights)[0][1]
                phones.add(f"+7999{digit}{rng.randint(0, 999999):06d}")
            rep.contacts = [ContactRow(p, f"К{i}", None, {}, i + 2) for i, p in enumerate(sorted(phones))]
            with database.atomic():
                copy_contacts(c, rep)
            Campaign.update(status="running").where(Campaign.id == c.id).execute()
            cid = c.id

        for _ in range(args.workers):
            workers.append(start_worker())
        from jobs.dialer import enqueue_loops
        enqueue_loops(r, cid, args.slots)
        started = time.time()
        next_kill = started + args.kill_every
        kills = 0
        while time.time() - started < args.timeout:
            time.sleep(1.0)
            with database.connection_context():
                status = Campaign.get_by_id(cid).status
            if status == "finished":
                break
            if time.time() >= next_kill:
                victim = rng.randrange(len(workers))
                os.killpg(workers[victim].pid, signal.SIGKILL)
                workers[victim].wait()
                kills += 1
                time.sleep(2.0)
                workers[victim] = start_worker()
                next_kill = time.time() + args.kill_every
        elapsed = time.time() - started

        # -- checks -----------------------------------------------------------------------------------
        with database.connection_context():
            counts = dict(database.execute_sql("SELECT state, count(*) FROM campaign_contacts WHERE campaign_id=%s "
                                               "GROUP BY state", (str(cid),)).fetchall())
            open_runs = CampaignRun.select().where((CampaignRun.campaign == cid) & (CampaignRun.state != "ended")).count()
            lost = counts.get("pending", 0) + counts.get("in_progress", 0) + open_runs
            calls = list(Call.select(Call.id, Call.campaign_contact, Call.created_at, Call.ended_at, Call.fs_uuid)
                         .where(Call.campaign == cid))
            by_contact: dict = {}
            for call in calls:
                by_contact.setdefault(call.campaign_contact_id, []).append(call)
            overlaps = 0
            for rows in by_contact.values():
                rows.sort(key=lambda x: x.created_at)
                for a, b in zip(rows, rows[1:]):
                    if a.ended_at is None or b.created_at < a.ended_at:
                        overlaps += 1
            runs = list(CampaignRun.select(CampaignRun.claimed_at, CampaignRun.attempt_no).where(CampaignRun.campaign == cid))
        sim_ids: dict[str, int] = {}
        for ch in sim.calls:
            cid_var = ch.variables.get("voiceai_call_id")
            if cid_var:
                sim_ids[cid_var] = sim_ids.get(cid_var, 0) + 1
        double_dialled = sum(n - 1 for n in sim_ids.values() if n > 1)
        not_dialled = sum(1 for call in calls if str(call.id) not in sim_ids)
        duplicates = overlaps + double_dialled
        first_pass_end = max(x.claimed_at for x in runs if x.attempt_no == 1)
        t_first = min(x.claimed_at for x in runs)
        window = (first_pass_end - t_first).total_seconds()
        in_window = sum(1 for x in runs if x.claimed_at <= first_pass_end)
        achieved = in_window / (window / 60.0) if window > 0 else 0.0
        holds = [((x.ended_at or x.created_at) - x.created_at).total_seconds() for x in calls]
        mean_live = sum(holds) / max(1.0, elapsed)
        peak = sweep_peak([(x.created_at.timestamp(), (x.ended_at or x.created_at).timestamp()) for x in calls])
        out = {"duplicates": duplicates, "lost": lost, "rate_ratio": round(achieved / args.cpm, 4),
               "concurrency_ratio": round(peak / args.concurrency, 4), "upload_100k_s": round(upload_s, 2),
               "contacts": args.contacts, "attempts": len(runs), "calls_per_minute": round(achieved, 1),
               "cpm_limit": args.cpm, "peak_concurrency": peak, "concurrency_limit": args.concurrency,
               "worker_kills": kills, "elapsed_s": round(elapsed, 1), "states": counts,
               "calls_without_channel": not_dialled, "mean_hold_s": round(sum(holds) / max(1, len(holds)), 2),
               "mean_concurrency": round(mean_live, 1)}
        print(f"contacts {args.contacts}: {counts} in {elapsed:.0f} s, {len(runs)} attempts, {kills} worker kills (SIGKILL)")
        print(f"calls per minute: {achieved:.1f} achieved vs {args.cpm:.0f} limit (ratio {out['rate_ratio']})")
        print(f"peak concurrency: {peak} vs {args.concurrency} limit (ratio {out['concurrency_ratio']}); "
              f"simulator peak channels {sim.session_peak}")
        print(f"duplicate calls: {duplicates} (overlapping per contact {overlaps}, attempt dialled twice {double_dialled})")
        print(f"lost contacts: {lost}; call rows never dialled (failed before originate): {not_dialled}")
        print(f"upload of {args.upload_rows} contacts: {upload_s:.2f} s")
    finally:
        for w in workers:
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            w.wait()
        esl.close()
        sim.stop()
        db.close()
        admin.cursor().execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='{db_name}'")
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db_name}"')
        r.flushdb()
    print(json.dumps(out))
    return 0 if out and out["duplicates"] == 0 and out["lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
