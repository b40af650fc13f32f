"""The voice loop end to end: a simulated caller speaks Russian into a real esl_app.

Caller speech is synthesized with Festival and streamed by the simulator's mod_audio_fork client in
real time; esl_app runs VAD, Whisper, the agent's scripted replies and Festival; the simulator
"hears" the agent's playback, and Whisper transcribes what the caller heard.
"""
from __future__ import annotations

import difflib
import re
import time
import tempfile
from pathlib import Path

import pytest

from core.audio import read_wav, resample
from models.calls import CallEvent, CallIssue, Transcript
from tests.support.speech import festival_wavs
from tests.support.telephony import make_telephony_tenant, wait_until

CALLER_1 = "Здравствуйте, я хочу записаться к стоматологу на завтра."
CALLER_2 = "Подождите, а сколько стоит консультация врача?"
REPLY_1 = ("Конечно, я записываю вас к стоматологу на завтра. "
           "Врач принимает с девяти утра до шести вечера, подойдёт ли вам утреннее время?")
REPLY_2 = "Консультация стоит одну тысячу рублей."

AGENT_CONFIG = {
    "greeting": "Здравствуйте, клиника Улыбка.",  # one sentence: the greeting is 1.wav
    "llm": {"engine": "scripted", "rules": [
        {"keywords": ["запис"], "reply": REPLY_1},
        {"keywords": ["сколько", "стоит", "цен"], "reply": REPLY_2},
        {"keywords": ["клавиатур"], "reply": "Спасибо, код принят."},
    ], "default_reply": "Повторите, пожалуйста."},
    "voice": {"silence_reprompt_s": 30, "barge_in_min_ms": 300},
}


def _norm(text: str) -> str:
    return re.sub(r"[^а-яё0-9 ]", "", text.lower().replace("ё", "е")).strip()


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, _norm(a).split(), _norm(b).split()).ratio()


@pytest.fixture(scope="session")
def festival_speech(tmp_path_factory) -> dict[str, str]:
    return festival_wavs(tmp_path_factory.mktemp("speech"), {"caller1": CALLER_1, "caller2": CALLER_2})


@pytest.fixture(scope="session")
def whisper():
    from core.config import Settings
    from core.engines.factory import build_stt
    import os
    settings = Settings.from_env(environ={"VOICEAI_MODELS_DIR": os.environ.get("VOICEAI_MODELS_DIR", "var/models")})
    try:
        return build_stt(settings)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Whisper model not installed (run: voiceai models install): {exc}")


def _duration_ms(path: str) -> int:
    pcm, rate = read_wav(path)
    return len(pcm) * 1000 // (2 * rate)


def test_voice_turn_answer_heard_barge_in_and_timings(rig_factory, festival_speech, whisper, tmp_path):
    import os
    rig = rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                      models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())))
    t = make_telephony_tenant("voice", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    rig.apply()
    c1, c2 = festival_speech["caller1"], festival_speech["caller2"]
    # The caller waits for the greeting and says sentence 1; the rest reacts to what the agent does.
    call = rig.sim.inbound_call(caller="79161234567", destination="74951234567", audio=[3500, c1])
    row = rig.call_row(call.uuid, state="in_progress", timeout=30)

    def transcripts(speaker):
        return list(Transcript.select().where((Transcript.call == row.id) & (Transcript.speaker == speaker))
                    .order_by(Transcript.ts_start_ms))

    # 1. What the caller said is transcribed closely, with times and confidence.
    first = wait_until(lambda: (lambda ts: ts[0] if ts else None)(transcripts("caller")), timeout=90,
                       message="caller transcript")
    assert similarity(first.text, CALLER_1) >= 0.8, first.text
    assert 0 < first.stt_confidence <= 1 and first.ts_end_ms > first.ts_start_ms >= 3000

    # 2. The agent's answer starts playing; 1.5 s into it the caller interrupts with sentence 2.
    def reply_playing():
        return next((p for p in call.heard if "/tts/" in p.path and Path(p.path).name != "1.wav"), None)
    reply = wait_until(reply_playing, timeout=60, message="reply playback")
    time.sleep(1.5)
    call.play_audio(c2)
    wait_until(lambda: any(e.type == "barge_in" for e in CallEvent.select().where(CallEvent.call == row.id)),
               timeout=30, message="barge-in")
    wait_until(lambda: reply.done, timeout=10, message="reply playback stopped")
    heard = whisper.transcribe(resample(reply.pcm, 8000, 16000), 16000)  # the caller's ear: 8 kHz
    assert similarity(heard.text, REPLY_1.split(". ")[0][:len(heard.text) + 5]) >= 0.5, heard.text
    assert reply.broken and reply.heard_ms < reply.duration_ms

    # 3. Barge-in: the dialog keeps only what was heard.
    agent = wait_until(lambda: [a for a in transcripts("agent") if a.interrupted] or None, timeout=30,
                       message="interrupted agent transcript")[0]
    assert agent.heard_text is not None and len(agent.heard_text) < len(agent.text)

    # 4. The second question is answered after the interruption.
    second = wait_until(lambda: (lambda ts: ts[1] if len(ts) > 1 else None)(transcripts("caller")), timeout=60,
                        message="second caller transcript")
    assert similarity(second.text, CALLER_2) >= 0.7, second.text
    try:
        wait_until(lambda: any(similarity(a.text, REPLY_2) > 0.9 for a in transcripts("agent")), timeout=60,
                   message="second reply")
    except AssertionError:
        import sys
        for e in CallEvent.select().where(CallEvent.call == row.id).order_by(CallEvent.seq):
            print("EV", e.ts.time(), e.type, e.human_status, str(e.payload_json)[:300], file=sys.stderr)
        for tr in Transcript.select().where(Transcript.call == row.id):
            print("TR", tr.speaker, tr.ts_start_ms, tr.ts_end_ms, tr.text, tr.interrupted, tr.heard_text, file=sys.stderr)
        raise

    # 5. Keypad input is a caller turn too.
    call.send_dtmf("42#")
    wait_until(lambda: any(t.text.endswith(": 42") for t in transcripts("caller")), timeout=30, message="DTMF turn")
    wait_until(lambda: any(a.text == "Спасибо, код принят." for a in transcripts("agent")), timeout=60,
               message="reply to DTMF")

    # 6. Timings of every stage are recorded.
    timing = wait_until(lambda: CallEvent.select().where((CallEvent.call == row.id)
                                                         & (CallEvent.type == "turn_timing")).first(),
                        timeout=30, message="turn timing")
    marks = timing.payload_json["marks_ms"]
    for key in ("end_of_speech", "stt_final", "llm_first_token", "first_sentence", "tts_first_audio",
                "first_audio_sent"):
        assert key in marks, marks
    assert marks["end_of_speech"] <= marks["stt_final"] <= marks["first_audio_sent"]
    call.hangup()
    rig.call_row(call.uuid, ended=True)


def test_low_confidence_twice_escalates_with_issue(rig_factory, festival_speech, tmp_path):
    """Below the confidence threshold the agent asks to repeat, then escalates (call_issues row)."""
    import os
    rig = rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                      models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())))
    t = make_telephony_tenant("lowconf", recording=False, operator_target="1001", whisper=False)
    t["version"].config_json = {**AGENT_CONFIG, "voice": {**AGENT_CONFIG["voice"], "low_confidence": 0.99}}
    t["version"].save()
    rig.apply()
    rig.sim.set_behavior("user/1001", outcome="answer", ring_ms=200)
    # Clear speech still scores below a 0.99 threshold: twice "I did not hear you" means escalation.
    speech = festival_speech["caller1"]
    call = rig.sim.inbound_call(caller="79160000009", destination="74951234567", audio=[3500, speech])
    row = rig.call_row(call.uuid, state="in_progress")
    wait_until(lambda: CallEvent.select().where((CallEvent.call == row.id)
                                                & (CallEvent.type == "stt_low_confidence")).exists(),
               timeout=90, message="first low-confidence turn")
    call.wait_for("PLAYBACK_STOP", timeout=30, after=len(call.events))  # "please repeat" was played
    call.play_audio(speech)
    issue = wait_until(lambda: CallIssue.select().where((CallIssue.call == row.id)
                                                        & (CallIssue.code == "STT_LOW_CONFIDENCE")).first(),
                       timeout=60, message="STT_LOW_CONFIDENCE issue")
    assert issue.details_json["turns"] == 2
    events = [e.type for e in CallEvent.select().where(CallEvent.call == row.id)]
    assert events.count("stt_low_confidence") == 2
    rig.call_row(call.uuid, state="with_operator", timeout=30)
    call.hangup()


def test_stream_playback_over_the_audio_socket(rig_factory, festival_speech, whisper):
    """Bidirectional mod_audio_fork: the agent's voice goes back on the socket, barge-in clears it."""
    import os
    rig = rig_factory(voice=True, sim_options={"bidirectional": True}, playback_mode="stream",
                      stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                      models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())))
    t = make_telephony_tenant("stream", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    rig.apply()
    call = rig.sim.inbound_call(caller="79161234567", destination="74951234567",
                                audio=[3500, festival_speech["caller1"]])
    row = rig.call_row(call.uuid, state="in_progress", timeout=30)
    # the greeting and then the reply arrive as L16 on the socket, not as file playback
    wait_until(lambda: len(call.received_stream_audio) > 8000 * 2 * 3, timeout=90, message="streamed audio")
    assert not [p for p in call.heard if "/tts/" in p.path]
    greeting = call.received_stream_audio[:8000 * 2 * 2]
    heard = whisper.transcribe(resample(greeting, 8000, 16000), 16000)
    assert similarity(heard.text, "Здравствуйте клиника улыбка") >= 0.5, heard.text
    wait_until(lambda: Transcript.select().where((Transcript.call == row.id) & (Transcript.speaker == "caller")).exists(),
               timeout=90, message="caller transcript")
    before = len(call.received_stream_audio)
    wait_until(lambda: len(call.received_stream_audio) > before + 8000, timeout=60, message="reply streaming")
    time.sleep(1.0)
    call.play_audio(festival_speech["caller2"])  # interrupts the long reply while it plays
    wait_until(lambda: CallEvent.select().where((CallEvent.call == row.id) & (CallEvent.type == "barge_in")).exists(),
               timeout=60, message="barge-in in stream mode")
    call.hangup()
