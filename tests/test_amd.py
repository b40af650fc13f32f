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
