"""Turn-taking: when the caller started and finished a turn, from per-frame VAD decisions.

A fixed silence timer cuts off callers who pause while dictating a phone number or an e-mail; the
endpointer waits longer (``extended_silence_ms``) while the running transcript looks unfinished
(ends with digits, "собака", "точка", a preposition or a conjunction). Short noise bursts
(< ``min_speech_ms``) never become turns, and a turn is force-ended at ``max_turn_ms``.
Pure logic: frames and times in, events out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_UNFINISHED_TAIL = re.compile(
    r"(\d|\b(ноль|один|одна|два|две|три|четыре|пять|шесть|семь|восемь|девять|десять|одиннадцать|"
    r"двенадцать|тринадцать|четырнадцать|пятнадцать|шестнадцать|семнадцать|восемнадцать|девятнадцать|"
    r"двадцать|тридцать|сорок|пятьдесят|шестьдесят|семьдесят|восемьдесят|девяносто|сто|двести|триста|"
    r"четыреста|пятьсот|шестьсот|семьсот|восемьсот|девятьсот|тысяча|тысячи|тысяч|плюс|"
    r"собака|точка|дефис|тире|нижнее|подчеркивание|подчёркивание|"
    r"и|или|а|но|в|во|на|с|со|к|ко|по|для|что|чтобы|как|у|о|об|от|до|за|из|при|про|через|это|ну|"
    r"мой|моя|моё|мое|номер|телефон|почта|адрес|улица|дом|квартира|зовут))\W*$",
    re.IGNORECASE)


def looks_unfinished(text: str) -> bool:
    """True when a caller is probably mid-phrase (dictating digits, an address, an e-mail)."""
    return bool(text and _UNFINISHED_TAIL.search(text.strip()))


@dataclass
class TurnConfig:
    frame_ms: int = 20
    min_speech_ms: int = 200        # shorter bursts are noise (coughs, clicks)
    silence_ms: int = 700           # end of turn after this much silence
    extended_silence_ms: int = 1600  # ... or this much while the phrase looks unfinished
    max_turn_ms: int = 20000        # hard cap of one turn
    preroll_ms: int = 200           # audio kept from before the detected start (soft onsets)
    speech_start_frames: int = 3    # consecutive speech frames that start a turn (60 ms)


@dataclass
class SpeechStarted:
    t_ms: int


@dataclass
class TurnEnded:
    t_ms: int                 # when the caller stopped speaking (last speech frame end)
    decided_ms: int           # when the endpointer decided (t_ms + the silence it waited)
    audio: bytes
    speech_ms: int
    reason: str               # silence | max_length


@dataclass
class NoiseDiscarded:
    t_ms: int
    speech_ms: int


TurnEvent = SpeechStarted | TurnEnded | NoiseDiscarded


@dataclass
class Endpointer:
    config: TurnConfig = field(default_factory=TurnConfig)
    partial: str = ""

    def __post_init__(self) -> None:
        self._in_turn = False
        self._buf = bytearray()
        self._preroll: list[bytes] = []
        self._speech_run = 0
        self._speech_ms = 0
        self._silence_ms = 0
        self._turn_ms = 0
        self._last_speech_end = 0

    @property
    def in_turn(self) -> bool:
        return self._in_turn

    @property
    def turn_audio(self) -> bytes:
        """Audio of the current turn so far (preroll included): what a streaming STT starts with."""
        return bytes(self._buf)

    def set_partial(self, text: str) -> None:
        """Latest streaming transcript of the current turn (makes the silence timer smarter)."""
        self.partial = text

    def reset(self) -> None:
        self.__post_init__()
        self.partial = ""

    def push(self, frame: bytes, is_speech: bool, t_ms: int) -> list[TurnEvent]:
        """One frame ending at ``t_ms`` (call time) with its VAD decision."""
        cfg = self.config
        events: list[TurnEvent] = []
        if not self._in_turn:
            self._preroll.append(frame)
            keep = max(1, (cfg.preroll_ms // cfg.frame_ms) + cfg.speech_start_frames)
            if len(self._preroll) > keep:
                self._preroll.pop(0)
            self._speech_run = self._speech_run + 1 if is_speech else 0
            if self._speech_run >= cfg.speech_start_frames:
                self._in_turn = True
                self._buf = bytearray(b"".join(self._preroll))
                self._preroll = []
                self._speech_ms = self._speech_run * cfg.frame_ms
                self._turn_ms = self._speech_ms
                self._silence_ms = 0
                self._last_speech_end = t_ms
                events.append(SpeechStarted(t_ms - self._speech_ms))
            return events
        self._buf.extend(frame)
        self._turn_ms += cfg.frame_ms
        if is_speech:
            self._speech_ms += cfg.frame_ms
            self._silence_ms = 0
            self._last_speech_end = t_ms
        else:
            self._silence_ms += cfg.frame_ms
        limit = cfg.extended_silence_ms if looks_unfinished(self.partial) else cfg.silence_ms
        if self._silence_ms >= limit or self._turn_ms >= cfg.max_turn_ms:
            reason = "silence" if self._silence_ms >= limit else "max_length"
            if self._speech_ms < cfg.min_speech_ms:
                events.append(NoiseDiscarded(t_ms, self._speech_ms))
            else:
                events.append(TurnEnded(t_ms=self._last_speech_end, decided_ms=t_ms, audio=bytes(self._buf),
                                        speech_ms=self._speech_ms, reason=reason))
            self.reset()
        return events
