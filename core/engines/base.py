"""Engine interfaces: one base class per kind (STT, LLM, TTS, VAD).

A base class owns what every implementation needs — timing into the Prometheus histograms, error
wrapping into ``EngineError`` with a catalog-friendly code, and "loaded once per process". An
implementation writes one or two methods (``_transcribe``/``_open_stream``, ``_complete``,
``_synthesize``, ``_is_speech``). Methods are synchronous and may be slow: callers in gevent
processes run them through ``core.engines.pool.InferencePool`` (native threads), never on the loop.
Heavy imports live inside implementation modules and raise ``EngineUnavailable`` with an install hint.

Fake engines for tests subclass these bases like the real ones.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator

from core.engines.metrics import observe


class EngineError(Exception):
    """An engine failed at run time. ``code`` is short and stable (``timeout``, ``failed``...)."""

    def __init__(self, engine: str, code: str, message: str) -> None:
        self.engine = engine
        self.code = code
        super().__init__(f"{engine}: {code}: {message}")


class EngineUnavailable(EngineError):
    """The engine cannot load here (package or model missing); ``hint`` says how to install it."""

    def __init__(self, engine: str, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(engine, "unavailable", f"{message} ({hint})")


# ---- STT ----------------------------------------------------------------------------------------

@dataclass
class Word:
    word: str
    start_ms: int
    end_ms: int
    confidence: float


@dataclass
class SttResult:
    """A final transcript. ``confidence`` is on the 0..1 scale of ``transcripts.stt_confidence``."""

    text: str
    confidence: float
    words: list[Word] = field(default_factory=list)
    language: str | None = None
    audio_ms: int = 0
    compute_ms: float = 0.0


@dataclass
class SttPartial:
    text: str


class SttStream(ABC):
    """Streaming recognition of one utterance or one call: feed PCM, read partials, finish."""

    @abstractmethod
    def accept(self, pcm16: bytes) -> SttPartial | None:
        """Feed little-endian 16-bit mono PCM at the engine's ``sample_rate``; maybe a new partial."""

    @abstractmethod
    def finish(self) -> SttResult:
        """End of the utterance: the final result (the stream can be reused for the next one)."""


class SttEngine(ABC):
    kind = "stt"
    name = "stt"
    sample_rate = 16000
    streaming = False

    def transcribe(self, pcm16: bytes, sample_rate: int, hints: list[str] | None = None) -> SttResult:
        """Recognize one utterance (VAD-cut). Resampling is the caller's job (``core.audio``)."""
        if sample_rate != self.sample_rate:
            raise EngineError(self.name, "bad_input", f"expects {self.sample_rate} Hz, got {sample_rate}")
        started = time.perf_counter()
        try:
            result = self._transcribe(pcm16, hints or [])
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - any library failure becomes an EngineError
            raise EngineError(self.name, "failed", str(exc) or type(exc).__name__) from exc
        result.compute_ms = (time.perf_counter() - started) * 1000
        result.audio_ms = result.audio_ms or len(pcm16) * 1000 // (2 * self.sample_rate)
        observe("stt", self.name, result.compute_ms / 1000)
        return result

    def open_stream(self, hints: list[str] | None = None) -> SttStream:
        """Streaming engines override ``_open_stream``; others get utterance buffering."""
        return self._open_stream(hints or [])

    def _open_stream(self, hints: list[str]) -> SttStream:
        return _BufferedStream(self, hints)

    @abstractmethod
    def _transcribe(self, pcm16: bytes, hints: list[str]) -> SttResult: ...


class _BufferedStream(SttStream):
    """Stream adapter for utterance-based engines: collects audio, recognizes on ``finish``."""

    def __init__(self, engine: SttEngine, hints: list[str]) -> None:
        self.engine = engine
        self.hints = hints
        self.buf = bytearray()

    def accept(self, pcm16: bytes) -> SttPartial | None:
        self.buf.extend(pcm16)
        return None

    def finish(self) -> SttResult:
        data, self.buf = bytes(self.buf), bytearray()
        return self.engine.transcribe(data, self.engine.sample_rate, self.hints)


# ---- LLM ----------------------------------------------------------------------------------------

@dataclass
class Message:
    role: str          # system | user | assistant | tool
    content: str
    name: str | None = None


@dataclass
class LlmChunk:
    """A piece of streamed output; the last chunk has ``finish_reason`` and usage counts."""

    text: str
    finish_reason: str | None = None   # stop | length | error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class LlmRequest:
    messages: list[Message]
    max_tokens: int = 256
    temperature: float = 0.3
    stop: list[str] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None   # constrain output to this schema (tool calls, extraction)
    # Messages [0:cache_prefix] are static (persona, rules, tools, knowledge): engines keep their
    # processed state so a turn pays only for the new messages.
    cache_prefix: int = 0


class LlmEngine(ABC):
    kind = "llm"
    name = "llm"

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        """Token stream with timing (time to first token and total) recorded."""
        started = time.perf_counter()
        first = True
        try:
            for chunk in self._complete(request):
                if first and chunk.text:
                    observe("llm_first_token", self.name, time.perf_counter() - started)
                    first = False
                yield chunk
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise EngineError(self.name, "failed", str(exc) or type(exc).__name__) from exc
        finally:
            observe("llm", self.name, time.perf_counter() - started)

    def complete(self, request: LlmRequest) -> str:
        return "".join(c.text for c in self.stream(request))

    @abstractmethod
    def _complete(self, request: LlmRequest) -> Iterator[LlmChunk]: ...


# ---- TTS ----------------------------------------------------------------------------------------

@dataclass
class TtsAudio:
    pcm16: bytes
    sample_rate: int
    compute_ms: float = 0.0

    @property
    def duration_ms(self) -> int:
        return len(self.pcm16) * 1000 // (2 * self.sample_rate)


class TtsEngine(ABC):
    kind = "tts"
    name = "tts"
    sample_rate = 16000

    def synthesize(self, text: str, voice: str | None = None, rate: float = 1.0) -> TtsAudio:
        """Speech for already-normalized text (``core.engines.text_norm_ru.normalize``)."""
        if not text.strip():
            return TtsAudio(b"", self.sample_rate)
        started = time.perf_counter()
        try:
            audio = self._synthesize(text, voice, rate)
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise EngineError(self.name, "failed", str(exc) or type(exc).__name__) from exc
        audio.compute_ms = (time.perf_counter() - started) * 1000
        observe("tts", self.name, audio.compute_ms / 1000)
        return audio

    @abstractmethod
    def _synthesize(self, text: str, voice: str | None, rate: float) -> TtsAudio: ...


# ---- VAD ----------------------------------------------------------------------------------------

class VadEngine(ABC):
    kind = "vad"
    name = "vad"
    frame_ms = 20
    sample_rates = (8000, 16000)

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        """One frame of ``frame_ms`` at ``sample_rate`` (16-bit mono)."""
        return self._is_speech(frame, sample_rate)

    @abstractmethod
    def _is_speech(self, frame: bytes, sample_rate: int) -> bool: ...
