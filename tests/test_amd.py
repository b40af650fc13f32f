"""Answering-machine detection on synthesized audio: Russian speech from espeak-ng (a short
"Алло?" vs a long voicemail greeting), the WebRTC VAD the voice loop uses, and a numpy beep."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from core.engines.vad import WebRtcVad
from core.voice.amd import HUMAN, MACHINE, UNKNOWN, AmdDetector, analyse

RATE = 8000
FRAME = RATE // 50  # 20 ms


def speech(text: str) -> np.ndarray:
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng not installed")
    wav = subprocess.run(["espeak-ng", "-v", "ru", "-s", "150", "--stdout", text], capture_output=True, check=True).stdout
    pcm = np.frombuffer(wav[44:], dtype="<i2").astype(np.float64)
    src_rate = 22050
    idx = np.arange(0, len(pcm), src_rate / RATE)
    return np.interp(idx, np.arange(len(pcm)), pcm).astype(np.int16)


def silence(ms: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.normal(0, 30, RATE * ms // 1000)).astype(np.int16)  # line noise


def tone(ms: int, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(RATE * ms // 1000) / RATE
    return (9000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frames(audio: np.ndarray) -> list[tuple[bool, bytes]]:
    vad = WebRtcVad(aggressiveness=3, frame_ms=20)
    out = []
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        chunk = audio[i:i + FRAME].tobytes()
        out.append((vad.is_speech(chunk, RATE), chunk))
    return out


def test_short_hello_then_silence_is_a_human():
    det = analyse(frames(np.concatenate([silence(400), speech("Алло?"), silence(2500)])), RATE)
    assert (det.decision, det.reason) == (HUMAN, "short_greeting")
    assert det.elapsed_ms < 3000 and not det.beep


def test_long_greeting_is_a_machine_and_the_beep_is_found():
    greeting = speech("Здравствуйте! Вы позвонили в компанию Ромашка. К сожалению, сейчас никто не может "
                      "ответить. Оставьте, пожалуйста, сообщение после звукового сигнала.")
    audio = np.concatenate([silence(300), greeting, silence(300), tone(500), silence(1000)])
    det = AmdDetector()
    decided_at = None
    for is_speech, pcm in frames(audio):
        if det.feed(is_speech, pcm, RATE) == MACHINE and decided_at is None:
            decided_at = det.elapsed_ms
        if det.beep:
            break
    assert det.decision == MACHINE and decided_at is not None and decided_at <= 5000
    assert det.beep and det.reason == "beep"


def test_silence_is_unknown_and_speech_is_not_a_beep():
    assert analyse(frames(silence(4000)), RATE).decision == UNKNOWN
    hello = analyse(frames(np.concatenate([speech("Да, слушаю"), silence(1500)])), RATE)
    assert hello.decision == HUMAN and not hello.beep


def test_beep_alone_within_any_state():
    det = analyse(frames(np.concatenate([silence(500), tone(300, 1400)])), RATE)
    assert det.beep and det.decision == MACHINE
    low = analyse(frames(np.concatenate([silence(200), tone(300, 150)])), RATE)  # mains hum, not a beep
    assert not low.beep


class _Call:
    def __init__(self, amd: dict, direction: str = "outbound", campaign_id: str | None = "c1") -> None:
        self.metadata_json, self.direction, self.campaign_id = {"amd": amd}, direction, campaign_id


def test_session_policies():
    from core.voice.amd import AmdSession
    assert AmdSession.for_call(_Call({"enabled": False})) is None
    assert AmdSession.for_call(_Call({"enabled": True}, direction="inbound")) is None
    assert AmdSession.for_call(_Call({"enabled": True}, campaign_id=None)) is None
    greeting = speech("Здравствуйте! Вы позвонили в компанию Ромашка. Оставьте сообщение после сигнала, и мы "
                      "обязательно перезвоним вам в ближайшее время.")
    audio = frames(np.concatenate([silence(300), greeting, silence(200), tone(400), silence(600)]))

    def run(policy: str, message: str | None = None) -> list:
        s = AmdSession.for_call(_Call({"enabled": True, "policy": policy, "message_file": message}))
        return [a for a in (s.feed(sp, pcm, RATE) for sp, pcm in audio) if a is not None]
    (hang,) = run("hangup")
    assert hang.kind == "hangup" and hang.metadata["result"] == MACHINE
    record, play = run("leave_message", "/tmp/msg.wav")
    assert record.kind == "record" and play.kind == "play_then_hangup" and play.metadata["beep"]
    assert play.metadata["message_left"] and play.file == "/tmp/msg.wav"
    human = AmdSession.for_call(_Call({"enabled": True, "policy": "hangup"}))
    acts = [a for a in (human.feed(sp, pcm, RATE) for sp, pcm in frames(np.concatenate([speech("Алло?"), silence(1500)])))
            if a is not None]
    assert [a.kind for a in acts] == ["record"] and acts[0].metadata["result"] == HUMAN
