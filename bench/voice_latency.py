"""Voice-to-voice latency of the real pipeline under concurrency.

Russian caller speech synthesized with Festival is streamed by the FreeSWITCH simulator's
mod_audio_fork client (real time, 20 ms frames) into a real esl_app (Whisper STT, the configured
LLM, Festival TTS, file playback through the simulator). For each configuration (scripted LLM,
in-process Qwen2.5 1.5B when installed) and N concurrent calls (1, 4, 8) it prints p50/p95 of:
voice-to-voice (end of caller speech -> first agent audio sent to the call), each stage, the
orchestration overhead (voice-to-voice minus the compute of the stages on the critical path), STT and
TTS real-time factors, CPU per call and the frame backlog. The last line is one JSON object.

Run: ``.venv/bin/python bench/voice_latency.py [--calls 1,4,8] [--turns 3] [--configs scripted,qwen1.5b]``
(needs PostgreSQL, Redis, Festival and the models of ``voiceai models install``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "Здравствуйте, я хочу записаться к стоматологу на завтра.",
    "Скажите, пожалуйста, сколько стоит консультация врача?",
    "А можно прийти в субботу утром?",
]
SCRIPTED = {"engine": "scripted", "rules": [
    {"keywords": ["запис"], "reply": "Конечно, записываю вас к стоматологу на завтра. Какое время вам удобно?"},
    {"keywords": ["сколько", "стоит"], "reply": "Консультация стоит одну тысячу рублей. Записать вас?"},
    {"keywords": ["суббот"], "reply": "Да, в субботу мы работаем с десяти до двух. Записать вас на десять?"},
], "default_reply": "Повторите, пожалуйста."}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def synth_caller_audio(tmp: Path) -> list[str]:
    out = []
    for i, text in enumerate(SENTENCES):
        txt, wav = tmp / f"c{i}.txt", tmp / f"c{i}.wav"
        txt.write_text(text, encoding="utf-8")
        subprocess.run(["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", str(txt), "-o", str(wav)],
                       check=True, capture_output=True, timeout=60)
        out.append(str(wav))
    return out


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_config(name: str, overrides: dict, agent_llm: dict | None, n_calls: int, turns: int, caller_wavs: list[str],
               base_settings, redis_client, work: Path) -> dict:
    from core.seed import create_org
    from models.calls import CallEvent
    from tests.fssim import FsSim
    from tests.support.telephony import (EslProcess, Rig, TelephonyDirs, make_telephony_tenant, telephony_settings,
                                         wait_until)
    from core.telephony.prompts import render_prompts
    from models.telephony import PhoneNumber
    dirs = TelephonyDirs.make(work / f"{name}-{n_calls}")
    render_prompts(dirs.sounds)
    sim = FsSim(dialplan_dir=str(dirs.conf / "dialplan"),
                gateway_dir=str(dirs.conf / "sip_profiles" / "external" / "voiceai_generated"), tz="Europe/Moscow").start()
    settings = telephony_settings(base_settings, dirs, sim.port, voice=True, max_voice_calls=max(8, n_calls),
                                  **overrides)
    esl = EslProcess(settings, dirs.conf.parent / "esl.log").start()
    try:
        esl.wait_log("connected to FreeSWITCH")
        esl.wait_log("voice engines ready", timeout=600)
        slug = f"bench{uuid.uuid4().hex[:6]}"
        t = make_telephony_tenant(slug, recording=False)
        PhoneNumber.update(e164_number=f"+7495{uuid.uuid4().int % 10**7:07d}").where(
            PhoneNumber.id == t["number"].id).execute()
        number = PhoneNumber.get_by_id(t["number"].id).e164_number
        config = {"greeting": "Здравствуйте!", "voice": {"silence_reprompt_s": 60, "barge_in": False}}
        if agent_llm:
            config["llm"] = agent_llm
        t["version"].config_json = config
        t["version"].save()
        rig = Rig(sim, esl, settings, dirs, redis_client, dirs.conf.parent)
        rig.apply()
        # Each caller behaves like a person: waits for the greeting, says a sentence, listens to the
        # whole answer, pauses briefly and says the next one; hangs up after the last answer.
        cpu0 = proc_cpu_s(esl.proc.pid)
        t0 = time.monotonic()
        calls = [sim.inbound_call(caller=f"7916{i:07d}", destination=number.lstrip("+"),
                                  audio=[2500, caller_wavs[0]]) for i in range(n_calls)]

        def answers_done(c) -> int:
            return sum(1 for p in c.heard if "/tts/" in p.path and Path(p.path).name != "1.wav" and p.done)

        def drive(c, offset: int) -> None:
            deadline = time.monotonic() + 60 * turns + 60
            for turn in range(1, turns + 1):
                while answers_done(c) < turn and time.monotonic() < deadline and c.alive:
                    time.sleep(0.05)
                # let the rest of a multi-sentence answer finish
                time.sleep(1.2)
                while any(not p.done for p in c.heard) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if turn < turns:
                    c.play_audio(caller_wavs[(turn + offset) % len(caller_wavs)])
            if c.alive:
                c.hangup()

        import threading
        threads = [threading.Thread(target=drive, args=(c, i)) for i, c in enumerate(calls)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.monotonic() - t0
        cpu = proc_cpu_s(esl.proc.pid) - cpu0
        time.sleep(1.0)
        from models.calls import Call
        ids = [r.id for r in Call.select(Call.id).where(Call.fs_uuid.in_([c.uuid for c in calls]))]
        timings = [e.payload_json for e in CallEvent.select().where((CallEvent.call.in_(ids))
                                                                      & (CallEvent.type == "turn_timing"))]
        stats = [e.payload_json for e in CallEvent.select().where((CallEvent.call.in_(ids))
                                                                    & (CallEvent.type == "voice_stats"))]
        late = [c.fork_stats.get("late_frames", 0) for c in calls if c.fork_stats]
        return summarize(name, n_calls, timings, stats, cpu, wall, late)
    finally:
        esl.close()
        sim.stop()


def _dur(path: str) -> float:
    from core.audio import read_wav
    pcm, rate = read_wav(path)
    return len(pcm) / (2 * rate)


def summarize(name: str, n_calls: int, timings: list[dict], stats: list[dict], cpu_s: float, wall_s: float,
              sim_late: list[int]) -> dict:
    v2v, overhead, stt, llm1, tts1, ep, stages_sum, stt_rtf, tts_rtf = ([] for _ in range(9))
    for t in timings:
        m, c = t["marks_ms"], t["compute_ms"]
        if "first_audio_sent" not in m:
            continue
        v = m["first_audio_sent"]
        critical = c.get("endpoint_wait", 0) + c.get("stt", 0) + c.get("llm_first_sentence", 0) + c.get("tts_first", 0)
        v2v.append(v)
        overhead.append(v - critical)
        stt.append(c.get("stt", 0))
        llm1.append(c.get("llm_first_sentence", 0))
        tts1.append(c.get("tts_first", 0))
        ep.append(c.get("endpoint_wait", 0))
        stages_sum.append(c.get("endpoint_wait", 0) + c.get("stt", 0) + c.get("llm", 0) + c.get("tts_total", 0))
        if c.get("stt_audio"):
            stt_rtf.append(c["stt"] / c["stt_audio"])
        if c.get("tts_first_audio"):
            tts_rtf.append(c["tts_first"] / c["tts_first_audio"])
    backlog = max([s.get("max_backlog_frames", 0) for s in stats] or [0])
    row = {
        "config": name, "calls": n_calls, "turns": len(v2v),
        "voice_to_voice_p50_ms": round(pct(v2v, 50), 1), "voice_to_voice_p95_ms": round(pct(v2v, 95), 1),
        "endpoint_wait_p50_ms": round(pct(ep, 50), 1), "stt_p50_ms": round(pct(stt, 50), 1),
        "stt_p95_ms": round(pct(stt, 95), 1), "llm_first_sentence_p50_ms": round(pct(llm1, 50), 1),
        "llm_first_sentence_p95_ms": round(pct(llm1, 95), 1), "tts_first_p50_ms": round(pct(tts1, 50), 1),
        "tts_first_p95_ms": round(pct(tts1, 95), 1), "overhead_p50_ms": round(pct(overhead, 50), 1),
        "overhead_p95_ms": round(pct(overhead, 95), 1), "stages_sum_p50_ms": round(pct(stages_sum, 50), 1),
        "stt_rtf_p50": round(pct(stt_rtf, 50), 3), "tts_rtf_p50": round(pct(tts_rtf, 50), 3),
        "cpu_per_call_pct": round(100 * cpu_s / wall_s / max(1, n_calls), 1),
        "frame_backlog": backlog, "sim_late_frames": sum(sim_late),
    }
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", default="1,4,8")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--configs", default="scripted,qwen1.5b")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) for inspection")
    args = ap.parse_args()
    import redis
    from core.config import Settings, set_settings
    from core.security.crypto import generate_key, reset_keyring
    from core.seed import sync_roles
    from models.base import bind_database
    from models.migrate import migrate
    import psycopg2
    db_name = f"voiceai_bench_{os.getpid()}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db_name}"')
    models_dir = os.environ.get("VOICEAI_MODELS_DIR", str(ROOT / "var" / "models"))
    settings = Settings.from_env(overrides={
        "database_url": f"postgresql://postgres@127.0.0.1:5432/{db_name}", "redis_url": "redis://127.0.0.1:6379/12",
        "secret_key": "bench", "encryption_keys": generate_key(), "log_level": "WARNING", "models_dir": models_dir},
        environ={})
    set_settings(settings)
    reset_keyring()
    db = bind_database(settings.database_url)
    migrate(db, log=lambda *_: None)
    sync_roles()
    r = redis.Redis.from_url(settings.redis_url)
    r.flushdb()
    work = Path(tempfile.mkdtemp(prefix="voiceai-bench-"))
    rows, headline = [], {}
    try:
        wavs = synth_caller_audio(work)
        ggufs = sorted(Path(models_dir).glob("**/*1.5b*.gguf")) + sorted(Path(models_dir).glob("**/*1_5b*.gguf"))
        configs = {
            "scripted": ({"stt_engine": "whisper", "llm_engine": "scripted", "tts_engine": "festival"}, SCRIPTED),
            "qwen1.5b": ({"stt_engine": "whisper", "llm_engine": "llama", "tts_engine": "festival",
                          "llm_model": str(ggufs[0]) if ggufs else ""}, None),
        }
        for name in args.configs.split(","):
            overrides, agent_llm = configs[name]
            if name.startswith("qwen") and not overrides["llm_model"]:
                print(f"# {name}: skipped (no Qwen 1.5B GGUF in {models_dir}; run: voiceai models install qwen2.5-1.5b-q4)")
                continue
            for n in [int(x) for x in args.calls.split(",")]:
                row = run_config(name, overrides, agent_llm, n, args.turns, wavs, settings, r, work)
                rows.append(row)
                print(f"{name:9} calls={n:<2} turns={row['turns']:<3} v2v p50={row['voice_to_voice_p50_ms']:7.1f} "
                      f"p95={row['voice_to_voice_p95_ms']:7.1f} | endpoint {row['endpoint_wait_p50_ms']:6.1f} "
                      f"stt {row['stt_p50_ms']:6.1f}/{row['stt_p95_ms']:6.1f} llm1 {row['llm_first_sentence_p50_ms']:6.1f}"
                      f"/{row['llm_first_sentence_p95_ms']:6.1f} tts1 {row['tts_first_p50_ms']:6.1f}/{row['tts_first_p95_ms']:6.1f}"
                      f" | overhead p50={row['overhead_p50_ms']:6.1f} p95={row['overhead_p95_ms']:6.1f} "
                      f"stages-sum p50={row['stages_sum_p50_ms']:7.1f} | rtf stt={row['stt_rtf_p50']} "
                      f"tts={row['tts_rtf_p50']} | cpu/call {row['cpu_per_call_pct']}% | backlog {row['frame_backlog']}",
                      flush=True)
                headline[f"{name}_{n}"] = {k: row[k] for k in ("voice_to_voice_p50_ms", "voice_to_voice_p95_ms",
                                                               "overhead_p50_ms", "frame_backlog", "stages_sum_p50_ms",
                                                               "turns")}
    finally:
        db.close()
        admin.cursor().execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='{db_name}'")
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db_name}"')
        if args.keep:
            print(f"# work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(headline, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
