"""Answering-machine detection (AMD) for outbound campaign calls, from the first seconds of audio.

Pure: feed it one frame at a time (the VAD's speech flag plus the 16-bit PCM for beep detection)
and read ``decision``. The pattern it looks for (the classic AMD heuristics):

- a person answers with a short word ("Алло?", "Да") and then waits: speech no longer than
  ``max_greeting_ms`` followed by ``after_greeting_silence_ms`` of silence -> human;
- a machine plays a long uninterrupted greeting ("Здравствуйте, вы позвонили в компанию...,
  оставьте сообщение после сигнала"): one stretch of speech longer than ``max_greeting_ms``, or
  more than ``max_words`` words before the caller would have paused -> machine;
- the voicemail beep (a pure tone 400-2500 Hz for at least ``beep_ms``) -> machine, with ``beep``
  set: the moment to leave a message;
- nothing heard for ``initial_silence_ms``, or no verdict by ``total_ms`` -> unknown (the call is
  treated as answered by a person: hanging up on a silent human is worse than talking to a machine).

The campaign's ``limits_json.amd.policy`` says what to do with a machine: ``hangup`` (outcome
voicemail, retried per the voicemail delay), ``leave_message`` (play the message after the beep; the
contact is done), ``retry_later`` (hang up without waiting; retried).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HUMAN, MACHINE, UNKNOWN = "human", "machine", "unknown"


@dataclass(frozen=True)
class AmdConfig:
    frame_ms: int = 20
    initial_silence_ms: int = 3500
    max_greeting_ms: int = 1800
    after_greeting_silence_ms: int = 800
    min_word_ms: int = 100
    max_words: int = 4
    total_ms: int = 5000
    beep_ms: int = 160
    beep_purity: float = 0.7   # share of the frame's energy in the strongest frequency (±1 bin)


@dataclass
class AmdDetector:
    config: AmdConfig = field(default_factory=AmdConfig)
    elapsed_ms: int = 0
    decision: str | None = None
    reason: str = ""
    beep: bool = False
    _speech_run_ms: int = 0
    _silence_run_ms: int = 0
    _heard_speech_ms: int = 0
    _words: int = 0
    _tone_run_ms: int = 0

    def feed(self, is_speech: bool, pcm16: bytes | None = None, sample_rate: int = 8000) -> str | None:
        """One frame; returns the decision once made (and keeps returning it)."""
        cfg = self.config
        if pcm16 and self._is_tone(pcm16, sample_rate):
            self._tone_run_ms += cfg.frame_ms
            if self._tone_run_ms >= cfg.beep_ms:
                self.beep = True
                return self._decide(MACHINE, "beep")
        else:
            self._tone_run_ms = 0
        if self.decision is not None:
            return self.decision
        self.elapsed_ms += cfg.frame_ms
        if is_speech:
            self._speech_run_ms += cfg.frame_ms
            self._heard_speech_ms += cfg.frame_ms
            if self._speech_run_ms == cfg.min_word_ms:
                self._words += 1
            self._silence_run_ms = 0
            if self._speech_run_ms > cfg.max_greeting_ms:
                return self._decide(MACHINE, "long_greeting")
            if self._words > cfg.max_words:
                return self._decide(MACHINE, "many_words")
        else:
            self._silence_run_ms += cfg.frame_ms
            self._speech_run_ms = 0
            if self._words == 0 and self.elapsed_ms >= cfg.initial_silence_ms:
                return self._decide(UNKNOWN, "initial_silence")
            if self._words and self._silence_run_ms >= cfg.after_greeting_silence_ms \
                    and self._heard_speech_ms <= cfg.max_greeting_ms:
                return self._decide(HUMAN, "short_greeting")
        if self.elapsed_ms >= cfg.total_ms:
            return self._decide(UNKNOWN, "timeout")
        return None

    def _decide(self, verdict: str, reason: str) -> str:
        if self.decision is None or (verdict == MACHINE and reason == "beep"):
            self.decision, self.reason = verdict, reason
        return self.decision

    def _is_tone(self, pcm16: bytes, sample_rate: int) -> bool:
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
        if samples.size < 32 or np.sqrt(np.mean(samples ** 2)) < 300:
            return False
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
        total = spectrum.sum()
        if total <= 0:
            return False
        peak = int(np.argmax(spectrum))
        freq = peak * sample_rate / samples.size
        if not 400 <= freq <= 2500:
            return False
        return spectrum[max(0, peak - 1):peak + 2].sum() / total >= self.config.beep_purity


def analyse(frames: list[tuple[bool, bytes]], sample_rate: int = 8000, config: AmdConfig | None = None) -> AmdDetector:
    """Run the detector over recorded frames (tests, offline checks); stops at the decision
    (or continues to the beep when a machine was detected and a message should be left)."""
    det = AmdDetector(config or AmdConfig())
    for is_speech, pcm in frames:
        det.feed(is_speech, pcm, sample_rate)
        if det.beep:
            break
    return det


@dataclass(frozen=True)
class AmdAction:
    kind: str                 # record | hangup | play_then_hangup
    metadata: dict            # merged into calls.metadata_json["amd"]
    file: str | None = None   # the message to play (leave_message)


class AmdSession:
    """AMD of one campaign call with its policy; ``feed`` returns what esl_app should do, once."""

    def __init__(self, policy: str = "hangup", message_file: str | None = None,
                 config: AmdConfig | None = None) -> None:
        self.policy = policy
        self.message_file = message_file
        self.detector = AmdDetector(config or AmdConfig())
        self.done = False
        self._recorded = False

    @classmethod
    def for_call(cls, call: object) -> "AmdSession | None":
        """Only outbound campaign calls whose campaign enabled AMD (``metadata_json.amd``, set by the dialer)."""
        meta = (getattr(call, "metadata_json", None) or {}).get("amd") or {}
        if getattr(call, "direction", "") != "outbound" or not getattr(call, "campaign_id", None) or not meta.get("enabled"):
            return None
        return cls(meta.get("policy", "hangup"), meta.get("message_file"))

    def feed(self, is_speech: bool, pcm16: bytes, sample_rate: int) -> AmdAction | None:
        if self.done:
            return None
        verdict = self.detector.feed(is_speech, pcm16, sample_rate)
        if verdict is None:
            return None
        meta = {"enabled": True, "policy": self.policy, "result": verdict, "reason": self.detector.reason,
                "decided_ms": self.detector.elapsed_ms, "beep": self.detector.beep}
        if verdict != MACHINE:
            self.done = True
            return AmdAction("record", meta)
        if self.policy == "leave_message" and self.message_file:
            if not self.detector.beep:  # wait for the beep (or give up after the analysis window)
                if self.detector.elapsed_ms < self.detector.config.total_ms * 4:
                    if not self._recorded:
                        self._recorded = True
                        return AmdAction("record", meta)
                    return None
            self.done = True
            return AmdAction("play_then_hangup", {**meta, "message_left": True}, self.message_file)
        self.done = True
        return AmdAction("hangup", meta)
