"""Voice activity detection: is this 10-30 ms frame of call audio speech?

Two engines behind ``VadEngine``:

* ``WebRtcVad`` (``webrtcvad-wheels``): the WebRTC GMM detector. Microseconds per frame, no model
  file, native at 8 and 16 kHz. It reacts to energy and voicing, so it also fires on music, hold
  tones and loud line noise. Use it for cutting utterances on clean lines, for barge-in where every
  millisecond counts, and as the always-available fallback.
* ``SileroVad``: the Silero neural detector (the ONNX model that ships inside the faster-whisper
  package), run with onnxruntime. ~0.1-0.3 ms per 32 ms window on one core, much better at telling
  speech from noise, music and beeps. Use it where lines are noisy or where false "speech" costs
  (interrupting the agent, sending noise to Whisper). It works on 16 kHz; 8 kHz frames are upsampled.

Both are stateful (WebRTC adapts, Silero carries an LSTM state and a window buffer): create one
instance per call leg; the Silero ONNX session itself is shared by the whole process.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.audio import resample
from core.engines.base import EngineError, EngineUnavailable, VadEngine


class WebRtcVad(VadEngine):
    """WebRTC VAD; ``aggressiveness`` 0 (lets most through) .. 3 (strictest about what is speech).

    The default is 3: measured on Festival speech with a -64 dBFS noise floor, mode 2 at 8 kHz kept
    calling the noise after the speech "speech" for seconds, mode 3 did not and still caught every
    loud speech frame. Lower it only for very quiet callers.
    """

    name = "webrtc"
    sample_rates = (8000, 16000, 32000, 48000)

    def __init__(self, aggressiveness: int = 3, frame_ms: int = 20) -> None:
        try:
            import webrtcvad
        except ImportError as exc:
            raise EngineUnavailable("webrtc", f"webrtcvad is not installed ({exc})",
                                    "pip install webrtcvad-wheels") from exc
        if aggressiveness not in (0, 1, 2, 3):
            raise EngineError(self.name, "bad_config", f"aggressiveness must be 0..3, not {aggressiveness}")
        if frame_ms not in (10, 20, 30):
            raise EngineError(self.name, "bad_config", f"frame_ms must be 10, 20 or 30, not {frame_ms}")
        self.frame_ms = frame_ms
        self.aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)

    def _is_speech(self, frame: bytes, sample_rate: int) -> bool:
        if sample_rate not in self.sample_rates:
            raise EngineError(self.name, "bad_input", f"unsupported sample rate {sample_rate}")
        if len(frame) not in (sample_rate // 1000 * ms * 2 for ms in (10, 20, 30)):
            raise EngineError(self.name, "bad_input",
                              f"frame of {len(frame)} bytes is not 10/20/30 ms at {sample_rate} Hz")
        return bool(self._vad.is_speech(frame, sample_rate))


# ---- Silero -------------------------------------------------------------------------------------

SILERO_RATE = 16000
WINDOW = 512          # samples per model step at 16 kHz (32 ms)
CONTEXT = 64          # samples of the previous window the model sees in front of each step

_sessions: dict[str, Any] = {}
_sessions_lock = threading.Lock()


def silero_model_path() -> Path:
    """The Silero ONNX file inside the installed faster-whisper package (newest version if several)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable("silero", "faster-whisper (which ships the Silero model) is not installed",
                                "pip install faster-whisper")
    assets = Path(list(spec.submodule_search_locations)[0]) / "assets"
    found = sorted(assets.glob("silero_vad*.onnx"))
    if not found:
        raise EngineUnavailable("silero", f"no silero_vad*.onnx in {assets}", "pip install -U faster-whisper")
    return found[-1]


def _session(path: Path) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailable("silero", f"onnxruntime is not installed ({exc})", "pip install onnxruntime") from exc
    key = str(path)
    with _sessions_lock:
        sess = _sessions.get(key)
        if sess is None:
            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads = 1      # a 32 ms window is too small to split across threads
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 3
            sess = onnxruntime.InferenceSession(key, providers=["CPUExecutionProvider"], sess_options=opts)
            _sessions[key] = sess
        return sess


class SileroVad(VadEngine):
    """Silero speech probability per 32 ms window, thresholded with hysteresis.

    ``threshold``: a window at or above it starts speech; while in speech, windows down to
    ``threshold - 0.15`` keep it going (Silero's own recommendation, avoids flicker inside words).
    Frames of any whole number of milliseconds are accepted; the answer reflects the latest complete
    window, so it lags the audio by at most one window (32 ms).
    """

    name = "silero"

    def __init__(self, threshold: float = 0.5, frame_ms: int = 20, model_path: str | Path | None = None) -> None:
        if not 0.0 < threshold < 1.0:
            raise EngineError(self.name, "bad_config", f"threshold must be in (0, 1), not {threshold}")
        self.threshold = threshold
        self.neg_threshold = max(0.01, threshold - 0.15)
        self.frame_ms = frame_ms
        self.session = _session(Path(model_path) if model_path else silero_model_path())
        self.reset()

    def reset(self) -> None:
        """Forget the audio so far (a new call, or after a long gap in the stream)."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._speaking = False
        self.probability = 0.0

    def speech_probability(self, frame: bytes, sample_rate: int) -> float:
        """Feed a frame; the probability of the latest complete 32 ms window."""
        if sample_rate not in (8000, 16000):
            raise EngineError(self.name, "bad_input", f"unsupported sample rate {sample_rate}")
        if len(frame) % 2:
            raise EngineError(self.name, "bad_input", "odd number of bytes in 16-bit PCM")
        pcm = resample(frame, sample_rate, SILERO_RATE) if sample_rate != SILERO_RATE else frame
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, samples])
        while self._pending.size >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            batch = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = self.session.run(None, {"input": batch, "h": self._h, "c": self._c})
            self._context = window[-CONTEXT:]
            self.probability = float(np.asarray(out).reshape(-1)[-1])
        return self.probability

    def _is_speech(self, frame: bytes, sample_rate: int) -> bool:
        prob = self.speech_probability(frame, sample_rate)
        self._speaking = prob >= (self.neg_threshold if self._speaking else self.threshold)
        return self._speaking
