"""Coqui TTS (optional extra): XTTS v2 and other Coqui models for customers who install them.

Not installed by default and not usable on the reference machines: ``TTS`` 0.22.0 fails to import
with current torch (torchaudio ABI), and the maintained fork ``coqui-tts`` 0.28.0 imports only with
torch/torchaudio 2.9.1 (a multi-GB CUDA install). No Coqui model ships in a package registry; its
Russian-capable models (XTTS v2, Bark) are downloads. So this engine raises ``EngineUnavailable``
with the hint below until a customer sets it up.

Setup (customer machine, ideally with a GPU):

1. ``pip install coqui-tts torch==2.9.1 torchaudio==2.9.1`` (or ``pip install voiceai[coqui]`` with
   an old torch for ``TTS`` 0.22).
2. Download a model folder (for XTTS v2: ``model.pth``, ``config.json``, ``vocab.json``,
   ``speakers_xtts.pth``) and configure its path as ``model_dir``; for XTTS also a short reference
   WAV of the voice as ``speaker_wav`` and ``language="ru"``.
3. The engine loads the model once per process (``TTS(model_path=..., config_path=...)``) and
   returns audio at the model's output rate.

The package is imported lazily, on first use, so that importing this module never fails.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.audio import to_bytes
from core.engines.base import EngineError, EngineUnavailable, TtsAudio, TtsEngine
from core.engines.text_norm_ru import normalize

INSTALL_HINT = ("pip install coqui-tts torch==2.9.1 torchaudio==2.9.1 and configure model_dir "
                "(see core/engines/tts_coqui.py)")

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def import_tts() -> Any:
    """The ``TTS.api.TTS`` class, or ``EngineUnavailable`` with the install hint."""
    try:
        from TTS.api import TTS  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - ImportError, or torch ABI errors raised at import
        raise EngineUnavailable("coqui", f"Coqui TTS cannot be imported ({type(exc).__name__}: {exc})",
                                INSTALL_HINT) from exc
    return TTS


class CoquiTts(TtsEngine):
    """A local Coqui model folder; ``speaker_wav``/``language`` for multi-speaker models like XTTS."""

    name = "coqui"

    def __init__(self, model_dir: str | Path, speaker_wav: str | Path | None = None, language: str = "ru",
                 device: str = "cpu", normalize_text: bool = True) -> None:
        self.model_dir = Path(model_dir)
        self.speaker_wav = str(speaker_wav) if speaker_wav else None
        self.language = language
        self.device = device
        self.normalize_text = normalize_text
        self._tts: Any = None

    def load(self) -> None:
        """Import Coqui and load the model once per process; raises ``EngineUnavailable``."""
        if self._tts is not None:
            return
        tts_cls = import_tts()
        config = self.model_dir / "config.json"
        if not config.is_file():
            raise EngineUnavailable(self.name, f"no Coqui model in {self.model_dir}", INSTALL_HINT)
        key = f"{self.model_dir.resolve()}|{self.device}"
        with _models_lock:
            tts = _models.get(key)
            if tts is None:
                tts = tts_cls(model_path=str(self.model_dir), config_path=str(config)).to(self.device)
                _models[key] = tts
        self._tts = tts
        rate = getattr(getattr(tts, "synthesizer", None), "output_sample_rate", None)
        if rate:
            self.sample_rate = int(rate)

    def _synthesize(self, text: str, voice: str | None, rate: float) -> TtsAudio:
        self.load()
        spoken = normalize(text) if self.normalize_text else text
        kwargs: dict[str, Any] = {"text": spoken, "speed": rate or 1.0}
        if self.speaker_wav:
            kwargs.update(speaker_wav=self.speaker_wav, language=self.language)
        elif voice:
            kwargs["speaker"] = voice
        wav = self._tts.tts(**kwargs)
        samples = np.asarray(wav, dtype=np.float32)
        if samples.size == 0:
            raise EngineError(self.name, "failed", "empty waveform")
        return TtsAudio(to_bytes(np.round(np.clip(samples, -1.0, 1.0) * 32767)), self.sample_rate)
