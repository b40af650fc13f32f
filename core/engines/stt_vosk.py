"""Vosk (Kaldi) streaming speech recognition: partial results while the caller speaks.

Vosk is the low-latency choice on CPU: audio is decoded as it arrives, so the final result is ready
a few tens of milliseconds after the end of speech, and partials let the dialog react early (barge-in,
"one moment"). Accuracy is below Whisper's. The Russian models are customer downloads
(``voiceai models fetch vosk-model-small-ru-0.22``); the Korean ``vosk-ko`` package model exercises the
same code in tests.

One ``vosk.Model`` per model folder per process (loading takes seconds and hundreds of MB); one
``KaldiRecognizer`` per stream (cheap), because a recognizer holds the decoding state of one call.
Phrase hints become a Vosk grammar, which only models with a dynamic graph (``graph/HCLr.fst`` +
``graph/Gr.fst``, the "small" models) accept; large models with a static ``HCLG.fst`` ignore hints.
A grammar *restricts* recognition to its phrases, so ``[unk]`` is added when the model knows it:
speech outside the hints then comes out as nothing instead of being forced into a hint.
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from core.engines.base import (EngineError, EngineUnavailable, SttEngine, SttPartial, SttResult, SttStream,
                               Word)
from core.engines.metrics import observe

try:
    import vosk
except ImportError as _exc:  # pragma: no cover - exercised only where the package is missing
    vosk = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None
    vosk.SetLogLevel(-1)   # Kaldi's LOG lines would flood the service log at every model load

PIP_HINT = "pip install vosk"
MODEL_HINT = "voiceai models fetch vosk-model-small-ru-0.22"
UNK = "[unk]"
_FILLER = re.compile(r"^\[.*\]$")          # [unk], [noise]...: not words
_PUNCT = re.compile(r"[^\w\s'-]+", re.UNICODE)

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def load_model(model_dir: str | Path) -> Any:
    """The ``vosk.Model`` for a folder, loaded once per process."""
    if vosk is None:
        raise EngineUnavailable("vosk", f"vosk is not installed ({_IMPORT_ERROR})", PIP_HINT)
    folder = Path(model_dir).resolve()
    if not (folder / "am" / "final.mdl").is_file():
        raise EngineUnavailable("vosk", f"no Vosk model in {folder}", MODEL_HINT)
    key = str(folder)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            try:
                model = vosk.Model(key)
            except Exception as exc:  # noqa: BLE001 - vosk raises a bare Exception on bad folders
                raise EngineUnavailable("vosk", f"cannot load {folder}: {exc}", MODEL_HINT) from exc
            _models[key] = model
        return model


def supports_grammar(model_dir: str | Path) -> bool:
    """Small models (lookahead graph ``HCLr.fst`` + ``Gr.fst``) can switch grammars per recognizer."""
    graph = Path(model_dir) / "graph"
    return (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()


class VoskStt(SttEngine):
    """Streaming recognizer on a Vosk model folder; ``sample_rate`` 8000 (telephony) or 16000."""

    name = "vosk"
    streaming = True

    def __init__(self, model_dir: str | Path, sample_rate: int = 8000, max_grammar_phrases: int = 500) -> None:
        """8000 feeds FreeSWITCH audio as is; Vosk models resample features internally."""
        if sample_rate not in (8000, 16000):
            raise EngineError(self.name, "bad_config", f"sample_rate must be 8000 or 16000, not {sample_rate}")
        self.sample_rate = sample_rate
        self.model_dir = Path(model_dir)
        self.model = load_model(model_dir)
        self.grammar_capable = supports_grammar(model_dir)
        self.max_grammar_phrases = max_grammar_phrases
        self._has_unk = self.model.vosk_model_find_word(UNK) >= 0

    def grammar(self, hints: Sequence[str]) -> list[str] | None:
        """Hints the model can use as a grammar, or None (no hints, big model, or no known words).

        Vosk's vocabulary is lower-case without punctuation; a phrase with a word the model does not
        know is dropped (Vosk would silently cut the word and distort the phrase).
        """
        if not hints or not self.grammar_capable:
            return None
        phrases: list[str] = []
        for hint in hints:
            words = [self._known(w) for w in _PUNCT.sub(" ", str(hint).lower()).split()]
            if words and all(words):
                phrase = " ".join(words)  # type: ignore[arg-type]
                if phrase not in phrases:
                    phrases.append(phrase)
            if len(phrases) >= self.max_grammar_phrases:
                break
        if not phrases:
            return None
        return phrases + ([UNK] if self._has_unk else [])

    def _known(self, word: str) -> str | None:
        """The spelling the model knows (some vocabularies write ё as е), or None."""
        for candidate in (word, word.replace("ё", "е")):
            if self.model.vosk_model_find_word(candidate) >= 0:
                return candidate
        return None

    def _recognizer(self, hints: Sequence[str]) -> Any:
        grammar = self.grammar(hints)
        if grammar:
            # ensure_ascii=False: Vosk reads the JSON bytes as UTF-8 and does not decode \\u escapes.
            rec = vosk.KaldiRecognizer(self.model, float(self.sample_rate), json.dumps(grammar, ensure_ascii=False))
        else:
            rec = vosk.KaldiRecognizer(self.model, float(self.sample_rate))
        rec.SetWords(True)
        return rec

    def _open_stream(self, hints: list[str]) -> SttStream:
        try:
            return VoskStream(self, self._recognizer(hints))
        except Exception as exc:  # noqa: BLE001
            raise EngineError(self.name, "failed", str(exc) or type(exc).__name__) from exc

    def _transcribe(self, pcm16: bytes, hints: list[str]) -> SttResult:
        stream = VoskStream(self, self._recognizer(hints), record_metrics=False)
        step = self.sample_rate // 5 * 2      # 200 ms pieces, as a live call would feed them
        for i in range(0, len(pcm16), step):
            stream.accept(pcm16[i:i + step])
        return stream.finish()


class VoskStream(SttStream):
    """One recognizer fed incrementally. Word times are relative to the start of the utterance."""

    def __init__(self, engine: VoskStt, recognizer: Any, record_metrics: bool = True) -> None:
        self.engine = engine
        self.rec = recognizer
        self.record_metrics = record_metrics
        self._fed_samples = 0           # since the recognizer was created (Vosk's time base)
        self._utt_start = 0             # sample where the current utterance began
        self._done: list[dict] = []     # results Vosk finalized at its own endpoints
        self._partial = ""
        self._compute = 0.0
        self._lock = threading.Lock()   # accept/finish from different threads must not interleave

    def accept(self, pcm16: bytes) -> SttPartial | None:
        if not pcm16:
            return None
        if len(pcm16) % 2:
            raise EngineError(self.engine.name, "bad_input", "odd number of bytes in 16-bit PCM")
        with self._lock:
            started = time.perf_counter()
            try:
                self._fed_samples += len(pcm16) // 2
                if self.rec.AcceptWaveform(pcm16):
                    # Vosk found an endpoint (trailing silence): keep the piece, the utterance goes on.
                    self._done.append(json.loads(self.rec.Result()))
                    partial = ""
                else:
                    partial = json.loads(self.rec.PartialResult()).get("partial", "")
            except EngineError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise EngineError(self.engine.name, "failed", str(exc) or type(exc).__name__) from exc
            finally:
                self._compute += time.perf_counter() - started
            text = " ".join(t for t in [*(_clean_text(r.get("text", "")) for r in self._done),
                                        _clean_text(partial)] if t)
            if text and text != self._partial:
                self._partial = text
                return SttPartial(text)
            return None

    def finish(self) -> SttResult:
        with self._lock:
            started = time.perf_counter()
            try:
                pieces = self._done + [json.loads(self.rec.FinalResult())]
            except Exception as exc:  # noqa: BLE001
                raise EngineError(self.engine.name, "failed", str(exc) or type(exc).__name__) from exc
            self._compute += time.perf_counter() - started
            offset_ms = self._utt_start * 1000 / self.engine.sample_rate
            words: list[Word] = []
            for piece in pieces:
                for w in piece.get("result", []):
                    if _FILLER.match(w.get("word", "")):
                        continue
                    words.append(Word(
                        word=w["word"],
                        start_ms=max(0, int(round(w["start"] * 1000 - offset_ms))),
                        end_ms=max(0, int(round(w["end"] * 1000 - offset_ms))),
                        confidence=float(min(1.0, max(0.0, w.get("conf", 0.0)))),
                    ))
            text = " ".join(t for t in (_clean_text(p.get("text", "")) for p in pieces) if t)
            conf = sum(w.confidence for w in words) / len(words) if words else 0.0
            audio_ms = (self._fed_samples - self._utt_start) * 1000 // self.engine.sample_rate
            result = SttResult(text=text, confidence=conf, words=words, audio_ms=audio_ms,
                               compute_ms=self._compute * 1000)
            # FinalResult resets the decoder; the next utterance starts here.
            self._utt_start = self._fed_samples
            self._done, self._partial, self._compute = [], "", 0.0
        if self.record_metrics:
            observe("stt", self.engine.name, result.compute_ms / 1000)
        return result


def _clean_text(text: str) -> str:
    return " ".join(t for t in text.split() if not _FILLER.match(t))
