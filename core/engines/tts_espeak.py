"""espeak-ng TTS: instant and always installable, but robotic — for tones, smoke tests and fallbacks.

Not the agent's voice and not test speech for STT (Whisper mostly fails on it); use Festival or
Piper for that. One ``espeak-ng`` process per call is fine here: it starts in milliseconds.

Install: ``apt-get install espeak-ng``. Output is resampled from espeak's 22.05 kHz to
``output_rate`` (16 kHz by default, like the other engines).
"""
from __future__ import annotations

import shutil
import struct
import subprocess

from core.engines import native

from core.audio import resample
from core.engines.base import EngineError, EngineUnavailable, TtsAudio, TtsEngine
from core.engines.text_norm_ru import normalize

INSTALL_HINT = "apt-get install espeak-ng"
BASE_WPM = 160          # espeak's words per minute at rate 1.0
MIN_WPM, MAX_WPM = 80, 450


def wpm_for_rate(rate: float, base_wpm: int = BASE_WPM) -> int:
    """espeak ``-s`` words per minute for a relative rate (1.0 = normal), clamped to espeak's range."""
    return int(min(MAX_WPM, max(MIN_WPM, round(base_wpm * (rate or 1.0)))))


def parse_stream_wav(data: bytes) -> tuple[bytes, int]:
    """PCM and rate of the WAV espeak writes to stdout (its sizes are placeholders, so walk chunks)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV stream")
    pos, rate, bits = 12, 0, 16
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            channels, rate = struct.unpack("<HI", data[body + 2:body + 8])
            bits = struct.unpack("<H", data[body + 14:body + 16])[0]
            if channels != 1 or bits != 16:
                raise ValueError("expected 16-bit mono")
        elif cid == b"data":
            pcm = data[body:]
            if size < len(pcm):
                pcm = pcm[:size]
            return pcm[: len(pcm) // 2 * 2], rate
        pos = body + size + (size & 1)
    raise ValueError("no data chunk")


class EspeakTts(TtsEngine):
    """espeak-ng in a subprocess writing WAV to stdout."""

    name = "espeak"

    def __init__(self, voice: str = "ru", output_rate: int = 16000, base_wpm: int = BASE_WPM,
                 binary: str = "espeak-ng", normalize_text: bool = True, timeout: float = 30.0) -> None:
        self.voice = voice
        self.sample_rate = output_rate
        self.base_wpm = base_wpm
        self.binary = binary
        self.normalize_text = normalize_text
        self.timeout = timeout

    def _synthesize(self, text: str, voice: str | None, rate: float) -> TtsAudio:
        exe = shutil.which(self.binary)
        if exe is None:
            raise EngineUnavailable(self.name, f"{self.binary} not found", INSTALL_HINT)
        spoken = normalize(text) if self.normalize_text else text
        cmd = [exe, "-v", voice or self.voice, "-s", str(wpm_for_rate(rate, self.base_wpm)), "--stdout", "--",
               spoken]
        try:
            proc = native.run(cmd, timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise EngineError(self.name, "timeout", f"espeak-ng took over {self.timeout:.0f} s") from exc
        if proc.returncode != 0:
            raise EngineError(self.name, "failed", proc.stderr.decode(errors="replace")[:300] or "espeak-ng failed")
        pcm, sr = parse_stream_wav(proc.stdout)
        return TtsAudio(resample(pcm, sr, self.sample_rate), self.sample_rate)
