"""Whisper speech recognition through faster-whisper (CTranslate2), one VAD-cut utterance at a time.

Whisper is not a streaming recognizer: it sees a whole utterance and returns its transcript, so the
call pipeline cuts utterances with our own VAD (``vad_filter=False`` here) and ``open_stream`` is the
base class's buffering adapter. It is the accurate choice for Russian on CPU (base: RTF ~0.1-0.2 on
2 cores, ~330 MB RSS). The model folder comes from ``voiceai models install whisper-base``.

Confidence (0..1): Whisper gives, per segment, the mean log-probability of its tokens
(``avg_logprob``) and the probability that the window holds no speech (``no_speech_prob``). We take
the token-weighted mean log-probability over all segments and return
``exp(mean_logprob) * (1 - mean_no_speech_prob) * (1 - looping_share)``: the geometric-mean token
probability, discounted by the model's own belief that there was no speech and by the share of
tokens in segments whose text compresses better than 2.4:1 (Whisper's own repetition-loop test).
It ranks transcripts well (clean Festival speech ~0.55-0.75, silence and noise ~0) but it is not a
calibrated probability that the text is correct.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.engines.base import EngineError, EngineUnavailable, SttResult, SttEngine, Word

try:
    import faster_whisper
except ImportError as _exc:  # pragma: no cover - exercised only where the package is missing
    faster_whisper = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

PIP_HINT = "pip install faster-whisper"
MODEL_HINT = "voiceai models install whisper-base"
# Whisper keeps at most 223 prompt tokens (the last ones); Russian is ~3-4 characters per token.
MAX_PROMPT_CHARS = 600
COMPRESSION_LOOP = 2.4    # faster-whisper's compression_ratio_threshold: text this repetitive is a loop
_WORD_PUNCT = ".,!?;:…\"'«»()[]—–-"

_models: dict[tuple[str, str, str, int, int], Any] = {}
_models_lock = threading.Lock()


def load_model(model_dir: str | Path, device: str = "cpu", compute_type: str = "int8",
               cpu_threads: int = 2, num_workers: int = 1) -> Any:
    """The ``WhisperModel`` for these settings, loaded once per process (0.3 s, ~330 MB)."""
    if faster_whisper is None:
        raise EngineUnavailable("whisper", f"faster-whisper is not installed ({_IMPORT_ERROR})", PIP_HINT)
    folder = Path(model_dir).resolve()
    if not (folder / "model.bin").is_file():
        raise EngineUnavailable("whisper", f"no Whisper model in {folder}", MODEL_HINT)
    key = (str(folder), device, compute_type, cpu_threads, num_workers)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            try:
                model = faster_whisper.WhisperModel(str(folder), device=device, compute_type=compute_type,
                                                    cpu_threads=cpu_threads, num_workers=num_workers,
                                                    local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - a broken model folder is "unavailable"
                raise EngineUnavailable("whisper", f"cannot load {folder}: {exc}", MODEL_HINT) from exc
            _models[key] = model
        return model


def initial_prompt(hints: Sequence[str], max_chars: int = MAX_PROMPT_CHARS) -> str | None:
    """Phrase hints as a Whisper prompt: expected words then read as "already said" context.

    The hints are joined with commas and *no* final full stop: measured on Festival speech, a prompt
    ending a sentence ("... оператор." or one sentence per hint) made Whisper append hallucinated
    text after the utterance ("Это", "СПОКОЙНАЯ МУЗЫКА"); the open list did not, and still turned
    "прием" into the hinted "приём". Duplicates are dropped and the list is cut to fit Whisper's
    prompt window (it would otherwise silently drop the *first* hints).
    """
    seen: set[str] = set()
    parts: list[str] = []
    used = 0
    for hint in hints:
        text = " ".join(str(hint).split()).strip(" ,.;:!?")
        if not text or text.lower() in seen:
            continue
        if used + len(text) + 2 > max_chars:
            break
        seen.add(text.lower())
        parts.append(text)
        used += len(text) + 2
    return ", ".join(parts) if parts else None


def max_new_tokens(seconds: float) -> int:
    """A token budget for an utterance: bounds the time Whisper can spend in a hallucination loop.

    Russian speech comes to ~4-6 Whisper tokens per second; on noise Whisper can instead repeat a
    phrase until its 448-token limit (measured: 1 s of noise took 15-20 s to decode). 10 tokens per
    second plus 10 leaves room for fast talkers; 220 keeps room for the longest prompt.
    """
    return int(min(220, 10 + 10 * seconds))


def confidence(segments: Sequence[Any]) -> float:
    """Utterance confidence from segments (see the module docstring for the definition)."""
    weights = [max(1, len(getattr(s, "tokens", None) or [])) for s in segments]
    total = sum(weights)
    if not total:
        return 0.0
    logprob = sum(w * s.avg_logprob for w, s in zip(weights, segments)) / total
    no_speech = sum(w * s.no_speech_prob for w, s in zip(weights, segments)) / total
    value = math.exp(min(0.0, logprob)) * (1.0 - no_speech)
    # Share of tokens in segments Whisper itself would call a repetition loop.
    looping = sum(w for w, s in zip(weights, segments)
                  if getattr(s, "compression_ratio", 0.0) > COMPRESSION_LOOP) / total
    return float(min(1.0, max(0.0, value * (1.0 - looping))))


class WhisperStt(SttEngine):
    """Utterance recognizer on a local faster-whisper model folder (16 kHz input)."""

    name = "whisper"
    sample_rate = 16000
    streaming = False

    def __init__(self, model_dir: str | Path, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 2, language: str | None = "ru", beam_size: int = 2,
                 temperature: float | Sequence[float] = 0.0, num_workers: int = 1) -> None:
        """``beam_size`` 1-2 keeps latency low; ``temperature`` 0 means no re-decoding fallbacks."""
        self.model_dir = Path(model_dir)
        self.language = language
        self.beam_size = beam_size
        self.temperature = list(temperature) if isinstance(temperature, (list, tuple)) else temperature
        self.model = load_model(model_dir, device, compute_type, cpu_threads, num_workers)

    def _transcribe(self, pcm16: bytes, hints: list[str]) -> SttResult:
        if len(pcm16) % 2:
            raise EngineError(self.name, "bad_input", "odd number of bytes in 16-bit PCM")
        audio = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        if audio.size == 0:
            return SttResult(text="", confidence=0.0, language=self.language)
        segments_iter, info = self.model.transcribe(
            audio, language=self.language, task="transcribe", beam_size=self.beam_size,
            temperature=self.temperature, vad_filter=False, word_timestamps=True,
            initial_prompt=initial_prompt(hints), condition_on_previous_text=False,
            max_new_tokens=max_new_tokens(audio.size / self.sample_rate),
        )
        segments = list(segments_iter)   # decoding happens while iterating
        words: list[Word] = []
        for seg in segments:
            for w in seg.words or []:
                token = w.word.strip().strip(_WORD_PUNCT)   # words as Vosk gives them: no punctuation
                if token:
                    words.append(Word(token, int(round(w.start * 1000)), int(round(w.end * 1000)),
                                      float(min(1.0, max(0.0, w.probability)))))
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        return SttResult(text=text, confidence=confidence(segments) if text else 0.0, words=words,
                         language=getattr(info, "language", None) or self.language)
