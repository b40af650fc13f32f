"""Prometheus histograms of engine latency (spec 14.2: latency STT/LLM/TTS, voice-to-voice).

One registry per process; esl_app exposes it over HTTP (``/metrics``). ``observe`` never raises:
metrics must not break a call.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

HISTOGRAMS = {
    "stt": Histogram("voiceai_stt_seconds", "STT compute time per utterance", ["engine"],
                     registry=REGISTRY, buckets=_BUCKETS),
    "llm": Histogram("voiceai_llm_seconds", "LLM time per completion", ["engine"],
                     registry=REGISTRY, buckets=_BUCKETS),
    "llm_first_token": Histogram("voiceai_llm_first_token_seconds", "LLM time to first token", ["engine"],
                                 registry=REGISTRY, buckets=_BUCKETS),
    "tts": Histogram("voiceai_tts_seconds", "TTS compute time per sentence", ["engine"],
                     registry=REGISTRY, buckets=_BUCKETS),
    "voice_to_voice": Histogram("voiceai_voice_to_voice_seconds",
                                "End of caller speech to first agent audio sent to the call", ["engine"],
                                registry=REGISTRY, buckets=_BUCKETS),
}


def observe(kind: str, engine: str, seconds: float) -> None:
    try:
        HISTOGRAMS[kind].labels(engine=engine).observe(max(0.0, seconds))
    except Exception:  # noqa: BLE001
        pass
