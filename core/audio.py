"""PCM helpers shared by the audio server, engines, tests and benchmarks.

All call audio inside VoiceAI is 16-bit signed little-endian mono PCM ("L16"), as mod_audio_fork
sends it; rates are 8 kHz (telephony) or 16 kHz (engines). Resampling uses numpy (band-limited
linear interpolation with a light low-pass on the way down), good enough for speech recognition.
"""
from __future__ import annotations

import io
import wave

import numpy as np


def to_array(pcm16: bytes) -> np.ndarray:
    return np.frombuffer(pcm16, dtype="<i2")


def to_bytes(samples: np.ndarray) -> bytes:
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def resample(pcm16: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample L16 mono; identity when the rates match."""
    if src_rate == dst_rate or not pcm16:
        return pcm16
    x = to_array(pcm16).astype(np.float32)
    if dst_rate < src_rate:  # simple moving-average low-pass against aliasing
        k = max(1, int(round(src_rate / dst_rate)))
        if k > 1:
            x = np.convolve(x, np.ones(k, dtype=np.float32) / k, mode="same")
    n_out = int(round(len(x) * dst_rate / src_rate))
    if n_out <= 0:
        return b""
    t_out = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    y = np.interp(t_out, np.arange(len(x), dtype=np.float64), x)
    return to_bytes(np.round(y))


def rms(pcm16: bytes) -> float:
    if not pcm16:
        return 0.0
    x = to_array(pcm16).astype(np.float64)
    return float(np.sqrt(np.mean(x * x)))


def read_wav(path_or_bytes: str | bytes) -> tuple[bytes, int]:
    """(mono L16 PCM, rate) of a 16-bit WAV; stereo is mixed down."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with wave.open(src, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError("only 16-bit WAV is supported")
        frames = w.readframes(w.getnframes())
        rate = w.getframerate()
        if w.getnchannels() == 2:
            x = to_array(frames).reshape(-1, 2).astype(np.int32).mean(axis=1)
            frames = to_bytes(x)
        elif w.getnchannels() != 1:
            raise ValueError("only mono or stereo WAV is supported")
    return frames, rate


def wav_bytes(pcm16: bytes, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16)
    return buf.getvalue()


def write_wav(path: str, pcm16: bytes, rate: int) -> None:
    with open(path, "wb") as fh:
        fh.write(wav_bytes(pcm16, rate))


def frames(pcm16: bytes, rate: int, frame_ms: int = 20) -> list[bytes]:
    """Split into whole frames of ``frame_ms`` (a trailing partial frame is zero-padded)."""
    size = rate * frame_ms // 1000 * 2
    out = [pcm16[i:i + size] for i in range(0, len(pcm16), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + b"\x00" * (size - len(out[-1]))
    return out
