"""Streaming recognition during the caller's turn, off the gevent loop.

With a streaming engine (Vosk) the caller's audio is recognized while they speak: partial
transcripts make the endpointer smarter (it waits longer while a phone number or an e-mail is being
dictated) and the final result is ready almost as soon as the turn ends. Audio is fed in ~100 ms
chunks, strictly in order, through the inference pool; the loop only queues bytes.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import gevent
from gevent.queue import Queue

from core.audio import resample
from core.engines.base import SttResult, SttStream

if TYPE_CHECKING:
    from core.engines.base import SttEngine
    from core.engines.pool import InferencePool

log = logging.getLogger("voiceai.esl.stt")
CHUNK_MS = 100


class StreamFeeder:
    """One caller turn's streaming recognizer: ``feed`` frames, ``finish`` for the final result."""

    def __init__(self, pool: "InferencePool", stt: "SttEngine", hints: list[str],
                 on_partial: Callable[[str], None], in_rate: int) -> None:
        self.pool = pool
        self.in_rate = in_rate
        self.stt = stt
        self.hints = hints
        self.on_partial = on_partial
        self.partials = 0
        self.error: Exception | None = None
        self._chunk_bytes = in_rate * 2 * CHUNK_MS // 1000
        self._pending = bytearray()
        self._queue: Queue = Queue()
        self._stream: SttStream | None = None
        self._greenlet = gevent.spawn(self._run)

    def feed(self, pcm16: bytes) -> None:
        """Audio at the line's rate; resampled per chunk (not per 20 ms frame) for the engine."""
        self._pending.extend(pcm16)
        if len(self._pending) >= self._chunk_bytes:
            self._put()

    def _put(self) -> None:
        self._queue.put(resample(bytes(self._pending), self.in_rate, self.stt.sample_rate))
        self._pending.clear()

    def finish(self) -> SttResult:
        """All audio fed: the final result (raises EngineError like ``transcribe``)."""
        self._close_input()
        self._greenlet.join()
        if self.error is not None:
            raise self.error
        assert self._stream is not None
        return self.pool.run(self._stream.finish)

    def cancel(self) -> None:
        """Noise, not a turn: stop feeding and drop the recognizer's state off the loop."""
        self._close_input()

        def drain() -> None:
            self._greenlet.join()
            if self._stream is not None and self.error is None:
                try:
                    self.pool.run(self._stream.finish)
                except Exception:  # noqa: BLE001 - nothing waits for this result
                    pass
        gevent.spawn(drain)

    def _close_input(self) -> None:
        if self._pending:
            self._put()
        self._queue.put(None)

    def _run(self) -> None:
        try:
            self._stream = self.pool.run(self.stt.open_stream, self.hints)
            while True:
                chunk = self._queue.get()
                if chunk is None:
                    return
                partial = self.pool.run(self._stream.accept, chunk)
                if partial is not None and partial.text:
                    self.partials += 1
                    self.on_partial(partial.text)
        except Exception as exc:  # noqa: BLE001 - reported by finish()
            log.warning("streaming recognition failed", extra={"error": str(exc)})
            self.error = exc
            while self._queue.get() is not None:  # let finish() join
                pass
