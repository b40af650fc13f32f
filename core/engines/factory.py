"""Building the process's engines from configuration, once per process.

``EngineSet.from_settings`` resolves model paths (explicit setting, else what ``voiceai models
install`` put in VOICEAI_MODELS_DIR), imports implementation modules lazily and loads each model
once. An LLM that cannot load falls back to the deterministic scripted engine with an error in the
log, so calls keep working (the fallback scenarios of the spec) instead of failing.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from core.config import Settings
from core.engines.base import EngineUnavailable, LlmEngine, SttEngine, TtsEngine, VadEngine

log = logging.getLogger("voiceai.engines")
_lock = threading.Lock()
_cache: dict[tuple, Any] = {}


def _once(key: tuple, build: Callable[[], Any]) -> Any:
    with _lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


def _models_dir(settings: Settings) -> Path:
    return Path(settings.models_dir)


def _installed(settings: Settings, *names: str) -> str | None:
    """Path of the first of ``names`` that ``voiceai models install/fetch`` put in place."""
    from core.engines.models import ModelError, model_path
    for name in names:
        try:
            return str(model_path(name, _models_dir(settings)))
        except ModelError:
            continue
    return None


def _pick_gguf(settings: Settings) -> str | None:
    if settings.llm_model:
        return settings.llm_model
    return _installed(settings, "qwen2.5-1.5b-q4", "qwen2.5-0.5b-q4")


def build_stt(settings: Settings) -> SttEngine:
    """The shared STT engine (core.engines.registry keeps one per model and settings)."""
    from core.engines.registry import get_stt
    if settings.stt_engine == "vosk":
        path = settings.stt_model or _installed(settings, "vosk-model-ru-0.42", "vosk-model-small-ru-0.22", "vosk-ko")
        if not path:
            raise EngineUnavailable("vosk", "no Vosk model installed", "run: voiceai models fetch vosk-model-small-ru-0.22")
        return get_stt("vosk", model_dir=path)
    if settings.stt_engine == "whisper":
        path = settings.stt_model or _installed(settings, "whisper-base")
        if not path:
            raise EngineUnavailable("whisper", "Whisper model not installed", "run: voiceai models install whisper-base")
        return get_stt("whisper", model_dir=path, cpu_threads=settings.inference_threads)
    raise ValueError(f"unknown VOICEAI_STT_ENGINE {settings.stt_engine!r}")


def build_llm(settings: Settings, fallback: bool = True) -> LlmEngine:
    from core.engines.llm_scripted import ScriptedLlm
    try:
        if settings.llm_engine == "scripted":
            return _once(("llm", "scripted"), ScriptedLlm)
        if settings.llm_engine == "http":
            from core.engines.llm_http import OpenAiCompatibleLlm
            return _once(("llm", "http", settings.llm_url, settings.llm_model),
                         lambda: OpenAiCompatibleLlm(settings.llm_url, model=settings.llm_model or "default",
                                                     api_key=settings.llm_api_key or None))
        if settings.llm_engine == "llama":
            from core.engines.llm_llama import LlamaCppLlm
            path = _pick_gguf(settings)
            if path is None:
                raise EngineUnavailable("llama", "no GGUF model installed", "run: voiceai models install")
            return _once(("llm", "llama", path), lambda: LlamaCppLlm(path, n_threads=settings.inference_threads))
        raise ValueError(f"unknown VOICEAI_LLM_ENGINE {settings.llm_engine!r}")
    except (EngineUnavailable, ImportError, OSError) as exc:
        if not fallback:
            raise
        log.error("LLM unavailable; using the scripted fallback engine", extra={"error": str(exc)})
        return _once(("llm", "scripted"), ScriptedLlm)


def build_tts(settings: Settings) -> TtsEngine:
    if settings.tts_engine == "festival":
        from core.engines.tts_festival import FestivalTts
        return _once(("tts", "festival"), FestivalTts)
    if settings.tts_engine == "espeak":
        from core.engines.tts_espeak import EspeakTts
        return _once(("tts", "espeak"), EspeakTts)
    if settings.tts_engine == "piper":
        from core.engines.tts_piper import PiperTts
        return _once(("tts", "piper", settings.tts_voice), lambda: PiperTts(settings.tts_voice))
    if settings.tts_engine == "coqui":
        from core.engines.tts_coqui import CoquiTts
        return _once(("tts", "coqui", settings.tts_voice), lambda: CoquiTts(settings.tts_voice))
    raise ValueError(f"unknown VOICEAI_TTS_ENGINE {settings.tts_engine!r}")


def vad_maker(settings: Settings) -> Callable[[], VadEngine]:
    """A factory of per-call VADs (they keep state between frames, so never share one)."""
    from core.engines.registry import make_vad
    if settings.vad_engine == "silero":
        return lambda: make_vad("silero")
    return lambda: make_vad("webrtc", aggressiveness=settings.vad_aggressiveness)


@dataclass
class EngineSet:
    stt: SttEngine
    llm: LlmEngine
    tts: TtsEngine
    new_vad: Callable[[], VadEngine]
    normalize: Callable[[str], str]

    @classmethod
    def from_settings(cls, settings: Settings) -> "EngineSet":
        from core.engines.text_norm_ru import normalize
        new_vad = vad_maker(settings)
        new_vad()  # fail at start, not on the first call, when the VAD cannot load
        return cls(stt=build_stt(settings), llm=build_llm(settings), tts=build_tts(settings),
                   new_vad=new_vad, normalize=normalize)
