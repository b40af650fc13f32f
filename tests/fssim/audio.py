"""Audio helpers: WAV/raw loading, resampling, tone_stream/silence_stream and the caller timeline.

Pure Python on `array('h')` (no numpy here). Audio inside the simulator is 16-bit signed mono at
INTERNAL_RATE; readers convert to the rate they need (8 kHz channel, 8/16 kHz fork).
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import wave
from array import array
from dataclasses import dataclass
from typing import Optional, Sequence, Union

INTERNAL_RATE = 16000
MAX_STREAM_MS = 3600 * 1000  # "infinite" tone/silence streams are capped at one hour

Segment = Union[int, float, str, bytes, "os.PathLike[str]"]


def _le(a: array) -> array:
    """Return the array with little-endian sample order (the wire and WAV order)."""
    if sys.byteorder != "little":
        a = array("h", a)
        a.byteswap()
    return a


def pcm_from_bytes(data: bytes) -> array:
    a = array("h")
    a.frombytes(data[: len(data) - (len(data) % 2)])
    return _le(a)


def pcm_to_bytes(a: array) -> bytes:
    return _le(a).tobytes()


def resample(pcm: array, src: int, dst: int) -> array:
    """Linear-interpolation resampler; exact copy when the rates match."""
    if src == dst or not pcm:
        return array("h", pcm)
    n_out = int(len(pcm) * dst / src)
    out = array("h", bytes(2 * n_out))
    step = src / dst
    last = len(pcm) - 1
    for i in range(n_out):
        pos = i * step
        j = int(pos)
        if j >= last:
            out[i] = pcm[last]
            continue
        frac = pos - j
        out[i] = int(pcm[j] + (pcm[j + 1] - pcm[j]) * frac)
    return out


def load_wav(path: str) -> tuple[array, int]:
    """Read a WAV file as mono 16-bit samples and its rate (stereo is averaged)."""
    with wave.open(path, "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        samples = array("h", ((b - 128) << 8 for b in raw))
    elif width == 2:
        samples = pcm_from_bytes(raw)
    elif width in (3, 4):
        samples = array("h", (int.from_bytes(raw[i + width - 2:i + width], "little", signed=True)
                              for i in range(0, len(raw), width)))
    else:
        raise ValueError(f"unsupported sample width {width} in {path}")
    if channels > 1:
        mono = array("h", bytes(2 * (len(samples) // channels)))
        for i in range(len(mono)):
            mono[i] = int(sum(samples[i * channels:(i + 1) * channels]) / channels)
        samples = mono
    return samples, rate


def write_wav(path: str, pcm: array, rate: int) -> None:
    """Write mono 16-bit PCM as a WAV file (used by uuid_record/record_session)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm_to_bytes(pcm))


_RAW_RATES = {".r8": 8000, ".r16": 16000, ".r24": 24000, ".r32": 32000, ".r48": 48000, ".r64": 64000,
              ".raw": 8000, ".sln": 8000}


@dataclass
class AudioSource:
    """A playable/speakable piece of audio at INTERNAL_RATE."""

    pcm: array
    duration_ms: int
    kind: str  # "file", "tone_stream", "silence_stream"
    infinite: bool = False


def _tone(spec: str, rate: int) -> tuple[array, int, bool]:
    """tone_stream:// in the TGML subset FreeSWITCH users write: %(on,off,f1[,f2...]);loops=N."""
    loops = 1
    m = re.search(r"loops=(-?\d+)", spec)
    if m:
        loops = int(m.group(1))
    # an unterminated last segment is accepted, as FreeSWITCH does for `&playback(tone_stream://%(1000,0,440)`
    # whose data originate cuts at the first ')'
    parts = re.findall(r"%\(([^)]*)\)?", spec)
    one = array("h")
    for part in parts:
        nums = [p.strip() for p in part.split(",")]
        if len(nums) < 2:
            continue
        on_ms, off_ms = int(float(nums[0])), int(float(nums[1]))
        freqs = [float(f) for f in nums[2:] if f]
        n_on = rate * on_ms // 1000
        for i in range(n_on):
            v = sum(math.sin(2 * math.pi * f * i / rate) for f in freqs) / max(1, len(freqs)) if freqs else 0.0
            one.append(int(v * 8000))
        one.extend(array("h", bytes(2 * (rate * off_ms // 1000))))
    infinite = loops < 0
    reps = 1 if infinite else max(1, loops)
    one_ms = len(one) * 1000 // rate
    if infinite:
        return one, MAX_STREAM_MS, True
    return one * reps, one_ms * reps, False


def load_source(path: str, sounds_dir: Optional[str] = None) -> AudioSource:
    """Resolve what `playback`/`uuid_broadcast` accepts into PCM and a duration."""
    if path.startswith("tone_stream://"):
        pcm, ms, inf = _tone(path[len("tone_stream://"):], INTERNAL_RATE)
        return AudioSource(pcm, ms, "tone_stream", inf)
    if path.startswith("silence_stream://"):
        arg = path[len("silence_stream://"):].split(",")[0].strip() or "0"
        ms = int(float(arg))
        if ms < 0:
            return AudioSource(array("h", bytes(2 * INTERNAL_RATE)), MAX_STREAM_MS, "silence_stream", True)
        return AudioSource(array("h", bytes(2 * (INTERNAL_RATE * ms // 1000))), ms, "silence_stream")
    if path.startswith("file_string://"):
        pcm = array("h")
        for part in path[len("file_string://"):].split("!"):
            if part:
                pcm.extend(load_source(part, sounds_dir).pcm)
        return AudioSource(pcm, len(pcm) * 1000 // INTERNAL_RATE, "file")
    real = path
    if sounds_dir and not os.path.isabs(real):
        real = os.path.join(sounds_dir, real)
    ext = os.path.splitext(real)[1].lower()
    if ext in _RAW_RATES:
        with open(real, "rb") as f:
            raw = f.read()
        rate = _RAW_RATES[ext]
        pcm = resample(pcm_from_bytes(raw), rate, INTERNAL_RATE)
    else:
        samples, rate = load_wav(real)
        pcm = resample(samples, rate, INTERNAL_RATE)
    return AudioSource(pcm, len(pcm) * 1000 // INTERNAL_RATE, "file")


def segments_to_pcm(audio: Union[None, Segment, Sequence[Segment]], sounds_dir: Optional[str] = None) -> array:
    """Caller speech given as a WAV path, raw PCM, silence in ms, or a list of those."""
    if audio is None:
        return array("h")
    if isinstance(audio, (list, tuple)):
        out = array("h")
        for seg in audio:
            out.extend(segments_to_pcm(seg, sounds_dir))
        return out
    if isinstance(audio, (int, float)):
        return array("h", bytes(2 * int(INTERNAL_RATE * audio / 1000)))
    if isinstance(audio, (bytes, bytearray)):
        # Raw L16 mono at 8 kHz, the channel rate.
        return resample(pcm_from_bytes(bytes(audio)), 8000, INTERNAL_RATE)
    if isinstance(audio, array):
        return resample(audio, 8000, INTERNAL_RATE)
    return load_source(os.fspath(audio), sounds_dir).pcm


def read_rate(pcm: array, start: int, n: int, rate: int) -> array:
    """Samples [start, start+n) at `rate` from INTERNAL_RATE audio (zero padded)."""
    out = array("h", bytes(2 * n))
    if rate == INTERNAL_RATE:
        seg = pcm[start:start + n]
        out[:len(seg)] = seg
        return out
    if INTERNAL_RATE % rate == 0:
        step = INTERNAL_RATE // rate
        seg = pcm[start * step:(start + n) * step:step]
        out[:len(seg)] = seg
        return out
    ratio = INTERNAL_RATE / rate
    for i in range(n):
        j = int((start + i) * ratio)
        if 0 <= j < len(pcm):
            out[i] = pcm[j]
    return out


class AudioTimeline:
    """Audio positioned in time since the channel's media start (t0, monotonic seconds).

    Both the fork streamer and the recorder read the same timeline, so they see identical audio
    without consuming it from each other.
    """

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.lock = threading.Lock()
        self.segments: list[tuple[int, array]] = []  # (start sample at INTERNAL_RATE, pcm)
        self.end = 0

    def append_at(self, start_sample: int, pcm: array) -> tuple[int, int]:
        with self.lock:
            self.segments.append((start_sample, pcm))
            self.end = max(self.end, start_sample + len(pcm))
            return start_sample, start_sample + len(pcm)

    def append_after(self, now_sample: int, pcm: array) -> tuple[int, int]:
        """Queue speech right after what is already queued (or now, if the caller is silent)."""
        with self.lock:
            start = max(now_sample, self.end)
        return self.append_at(start, pcm)

    def truncate(self, at_sample: int) -> None:
        """Cut everything after at_sample (used when a playback is broken)."""
        with self.lock:
            kept: list[tuple[int, array]] = []
            for start, pcm in self.segments:
                if start >= at_sample:
                    continue
                if start + len(pcm) > at_sample:
                    pcm = pcm[:at_sample - start]
                kept.append((start, pcm))
            self.segments = kept
            self.end = max((s + len(p) for s, p in kept), default=0)

    def read(self, start: int, n: int, rate: int) -> array:
        """n samples at `rate` starting at sample `start` (counted at `rate`)."""
        out = array("h", bytes(2 * n))
        ratio = INTERNAL_RATE // rate if INTERNAL_RATE % rate == 0 else 0
        lo, hi = (start * ratio, (start + n) * ratio) if ratio else (int(start * INTERNAL_RATE / rate), int((start + n) * INTERNAL_RATE / rate))
        with self.lock:
            segs = [(s, p) for s, p in self.segments if s < hi and s + len(p) > lo]
        for s, p in segs:
            piece_lo = max(lo, s)
            piece_hi = min(hi, s + len(p))
            if ratio:
                # align to the output grid
                first = -(-(piece_lo - lo) // ratio)
                src_start = lo + first * ratio - s
                count = len(range(src_start, piece_hi - s, ratio))
                if count <= 0:
                    continue
                chunk = p[src_start:piece_hi - s:ratio]
                for i, v in enumerate(chunk):
                    k = first + i
                    out[k] = max(-32768, min(32767, out[k] + v))
            else:
                for k in range(n):
                    j = int((start + k) * INTERNAL_RATE / rate) - s
                    if 0 <= j < len(p):
                        out[k] = max(-32768, min(32767, out[k] + p[j]))
        return out

    def sample_at(self, mono: float, rate: int) -> int:
        return max(0, int((mono - self.t0) * rate))
