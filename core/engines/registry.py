"""Engine factories: ``get_stt`` hands out one loaded engine per configuration per process.

Loading a model costs seconds and hundreds of MB, so every caller asking for the same engine with
the same settings gets the same object (engines are safe to share; per-call state lives in streams).
VAD instances are per call leg (they carry state), hence ``make_vad`` builds a new one each time;
the Silero ONNX session underneath is still shared.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from core.engines.base import EngineError, SttEngine, VadEngine
from core.engines.models import models_dir

# Model folder used when the caller names an engine but no model.
DEFAULT_STT_MODELS = {"whisper": "whisper-base", "vosk": "vosk-model-small-ru-0.22"}

_stt: dict[tuple, SttEngine] = {}
_stt_lock = threading.Lock()


def _model_dir(engine: str, kwargs: dict[str, Any]) -> Path:
    model_dir = kwargs.pop("model_dir", None)
    model = kwargs.pop("model", None) or DEFAULT_STT_MODELS[engine]
    return Path(model_dir) if model_dir else models_dir() / model


def get_stt(name: str, **kwargs: Any) -> SttEngine:
    """The shared STT engine ``name`` ("whisper" | "vosk") for these settings, loaded on first use.

    ``model`` names an installed model under ``models_dir()``; ``model_dir`` gives a folder directly;
    the other keyword arguments go to the engine's constructor.
    """
    if name not in DEFAULT_STT_MODELS:
        raise EngineError(name, "unknown", f"unknown STT engine {name!r}; known: {', '.join(DEFAULT_STT_MODELS)}")
    folder = _model_dir(name, kwargs).resolve()
    key = (name, str(folder), tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    with _stt_lock:
        engine = _stt.get(key)
        if engine is None:
            if name == "whisper":
                from core.engines.stt_whisper import WhisperStt
                engine = WhisperStt(folder, **kwargs)
            else:
                from core.engines.stt_vosk import VoskStt
                engine = VoskStt(folder, **kwargs)
            _stt[key] = engine
        return engine


def make_vad(name: str = "webrtc", **kwargs: Any) -> VadEngine:
    """A new VAD for one call leg: "webrtc" (fast, always there) or "silero" (robust to noise)."""
    from core.engines.vad import SileroVad, WebRtcVad
    if name == "webrtc":
        return WebRtcVad(**kwargs)
    if name == "silero":
        return SileroVad(**kwargs)
    raise EngineError(name, "unknown", f"unknown VAD {name!r}; known: webrtc, silero")
