"""The real-time voice loop of one call: VAD/turns -> STT -> reply stream -> TTS -> playback.

Everything heavy runs in the inference pool (native threads); this module only moves data between
greenlets. Per call: a frame loop (VAD, endpointing, barge-in), a turn task (STT, dialog stream,
sentence cutting, TTS per sentence overlapped with generation) and a player (plays sentences in
order, through ``uuid_broadcast``-style file playback or streaming on the audio socket).
Barge-in flushes queued speech and pending generation and keeps in the dialog only what the caller
heard. Per-turn timings go to ``call_events`` (type ``turn_timing``) and the Prometheus histograms.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import AsyncResult, Event
from gevent.queue import Queue

from core.audio import resample, wav_bytes
from core.calls.store import CallRecorder
from core.engines.base import EngineError, Message
from core.engines.metrics import observe
from core.voice.dialog import LlmResponder, heard_prefix
from core.voice.endpoint import Endpointer, NoiseDiscarded, SpeechStarted, TurnConfig, TurnEnded
from core.voice.sentences import SentenceStream
from esl_app.esl import FsEvent
from models.base import database, utcnow
from models.calls import CallIssue, Transcript

if TYPE_CHECKING:
    from esl_app.audio_server import ForkSocket
    from esl_app.calls import CallWorker
    from esl_app.lines import BrowserLine, PhoneLine
    from esl_app.stt_feed import StreamFeeder
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.voice")

ASK_REPEAT = "Извините, я вас плохо расслышал. Повторите, пожалуйста."
ESCALATE_LOW_CONF = "Кажется, у нас плохая связь. Соединяю вас с оператором."
NO_OPERATOR = "Кажется, у нас плохая связь. Пожалуйста, перезвоните нам чуть позже. До свидания."
REPROMPT = "Вы меня слышите?"
SILENCE_GOODBYE = "Не слышу вас. Пожалуйста, перезвоните. До свидания."
OVERLOAD = "Сейчас все линии заняты. Пожалуйста, перезвоните через несколько минут. До свидания."
FALLBACK_REPLY = "Извините, у меня техническая заминка. Сейчас соединю вас с оператором."


@dataclass
class VoiceSettings:
    """Per-call behaviour; defaults overridden by the agent version's config (``voice`` section)."""

    greeting: str = "Здравствуйте! Чем могу помочь?"
    system_prompt: str | None = None
    low_confidence: float = 0.45
    low_confidence_escalate_after: int = 2
    silence_reprompt_s: float = 8.0
    max_reprompts: int = 2
    barge_in: bool = True
    barge_in_min_ms: int = 300
    max_call_s: int = 900
    turn: TurnConfig = field(default_factory=TurnConfig)
    # {"engine": "scripted", "rules": [...], "default_reply": ..., "token_delay_s": ...}: the agent's
    # deterministic mode; otherwise the process LLM is used.
    llm: dict[str, Any] = field(default_factory=dict)
    stt_hints: list[str] = field(default_factory=list)  # words to expect (names, products), all states

    @classmethod
    def from_agent_config(cls, config: dict[str, Any]) -> "VoiceSettings":
        voice = dict(config.get("voice") or {})
        s = cls()
        s.greeting = config.get("greeting") or s.greeting
        s.system_prompt = config.get("system_prompt") or config.get("persona") or None
        for key in ("low_confidence", "low_confidence_escalate_after", "silence_reprompt_s", "max_reprompts",
                    "barge_in", "barge_in_min_ms", "max_call_s"):
            if key in voice:
                setattr(s, key, type(getattr(s, key))(voice[key]))
        s.llm = dict(config.get("llm") or {})
        s.stt_hints = [str(h) for h in (voice.get("stt_hints") or config.get("stt_hints") or [])][:500]
        turn = voice.get("turn") or {}
        s.turn = TurnConfig(**{k: int(v) for k, v in turn.items() if k in TurnConfig.__dataclass_fields__})
        return s


@dataclass
class Utterance:
    """One sentence of the agent's reply on its way to the caller."""

    seq: int
    text: str
    audio: AsyncResult                      # TtsAudio
    turn: "TurnTimer | None" = None
    started_at: float | None = None         # monotonic, when playback was started
    duration_ms: float = 0.0
    done: Event = field(default_factory=Event)
    interrupted: bool = False
    heard: str | None = None                # set at barge-in: what the caller actually heard


@dataclass
class TurnTimer:
    """Timing marks of one caller turn, in ms from the end of the caller's speech."""

    end_of_speech_mono: float
    marks: dict[str, float] = field(default_factory=dict)
    compute: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, (time.monotonic() - self.end_of_speech_mono) * 1000)


class Player:
    """Plays utterances in order; ``flush`` (barge-in) stops the current one and drops the rest."""

    def __init__(self, call: "VoiceCall") -> None:
        self.call = call
        self.queue: Queue = Queue()
        self.current: Utterance | None = None
        self.generation = 0
        self.greenlet = gevent.spawn(self._run)

    @property
    def speaking(self) -> bool:
        return self.current is not None

    def enqueue(self, utt: Utterance) -> None:
        self.queue.put((self.generation, utt))

    def flush(self) -> list[Utterance]:
        """Stop what plays now, drop what waits; returns the interrupted and dropped utterances."""
        self.generation += 1
        dropped: list[Utterance] = []
        while not self.queue.empty():
            _gen, utt = self.queue.get_nowait()
            utt.interrupted = True
            utt.done.set()  # never played: whoever waits for it can go on
            dropped.append(utt)
        cur = self.current
        if cur is not None:
            cur.interrupted = True
            self.call.stop_audio()
            dropped.insert(0, cur)
        return dropped

    def _run(self) -> None:
        while not self.call.ended.is_set():
            try:
                gen, utt = self.queue.get(timeout=0.5)
            except gevent.queue.Empty:
                continue
            if gen != self.generation:
                utt.done.set()
                continue
            try:
                audio = utt.audio.get(timeout=30)
            except Exception as exc:  # noqa: BLE001 - TTS failed: skip the sentence, keep the call
                log.warning("sentence synthesis failed", extra={"error": str(exc)})
                utt.done.set()
                continue
            if gen != self.generation or self.call.ended.is_set():
                utt.done.set()
                continue
            self.current = utt
            try:
                self.call.play_audio(utt, audio)
            finally:
                self.current = None
                utt.done.set()
                self.call.last_agent_audio_end = time.monotonic()


class VoiceCall:
    def __init__(self, manager: "VoiceManager", line: "PhoneLine | BrowserLine", settings: VoiceSettings) -> None:
        self.m = manager
        self.runtime = manager.runtime
        self.line = line
        self.call = line.call
        self.s = settings
        self.rate = line.rate
        self.ended = Event()
        self.endpointer = Endpointer(settings.turn)
        self.vad = manager.engines.new_vad()  # per call: VADs keep state between frames
        self.player = Player(self)
        self.history: list[Message] = []
        self.t_start = time.monotonic()
        self.frames = 0
        self.seq = 0
        self.turn_task: gevent.Greenlet | None = None
        self.cancel_gen: threading.Event | None = None
        self.low_conf_turns = 0
        self.reprompts = 0
        self.last_agent_audio_end = time.monotonic()
        self.last_caller_activity = time.monotonic()
        self._barge_speech_ms = 0
        self._playback_done: dict[str, Event] = {}
        self._first_frame_at: float | None = None
        self._dtmf_buf = ""
        self._dtmf_timer: gevent.Greenlet | None = None
        self.max_backlog_frames = 0
        self.feeder: "StreamFeeder | None" = None
        self.recorder = CallRecorder(self.call, self.runtime.redis)
        tts_dir = manager.tts_dir / str(self.call.id)
        tts_dir.mkdir(parents=True, exist_ok=True)
        self.tts_dir = tts_dir
        self.responder = manager.responder_for(settings)

    # -- frame loop ---------------------------------------------------------------------------
    def run(self) -> None:
        self.line.attach(self._on_fs_event)
        try:
            self.say(self.s.greeting, turn=None)
            while not self.ended.is_set():
                data = self.line.receive(timeout=0.5)
                if data is None:
                    if self.line.closed:
                        break
                    self._timers()
                    continue
                if isinstance(data, str):
                    self._text_frame(data)
                    continue
                self._frame(data)
                if self.frames % 25 == 0:
                    self._timers()
        finally:
            self.ended.set()
            if self.cancel_gen is not None:
                self.cancel_gen.set()
            if self.feeder is not None:
                self.feeder.cancel()
            self._event("voice_stats", "", {"frames": self.frames, "max_backlog_frames": self.max_backlog_frames,
                                            "turns": len([1 for _ in self.history if _.role == "user"])})
            self.line.detach(self._on_fs_event)
            for done in self._playback_done.values():
                done.set()

    def _frame(self, frame: bytes) -> None:
        self.frames += 1
        now = time.monotonic()
        if self._first_frame_at is None:
            self._first_frame_at = now
        else:
            # Frames arrive every frame_ms; frames this loop is behind real time beyond 40 ms of
            # network/scheduling jitter (0: keeping up).
            behind = (now - self._first_frame_at) * 1000 / self.s.turn.frame_ms - (self.frames - 1)
            self.max_backlog_frames = max(self.max_backlog_frames, max(0, int(behind) - 2))
        t_ms = int(self.frames * self.s.turn.frame_ms)
        speech = self.vad.is_speech(frame, self.rate)
        if speech:
            self.last_caller_activity = time.monotonic()
        if self.player.speaking and self.s.barge_in:
            self._barge_speech_ms = self._barge_speech_ms + self.s.turn.frame_ms if speech else 0
            if self._barge_speech_ms >= self.s.barge_in_min_ms:
                self.barge_in()
        if self.feeder is not None and self.endpointer.in_turn:
            self.feeder.feed(frame)  # this frame belongs to the running turn
        for ev in self.endpointer.push(frame, speech, t_ms):
            if isinstance(ev, TurnEnded):
                self._start_turn(ev)
            elif isinstance(ev, SpeechStarted):
                self.reprompts = 0
                self._open_feeder()
            elif isinstance(ev, NoiseDiscarded) and self.feeder is not None:
                self.feeder.cancel()
                self.feeder = None

    def _open_feeder(self) -> None:
        """Streaming engines recognize during the turn; partials steer the endpointer."""
        if not getattr(self.m.stt, "streaming", False):
            return
        if self.feeder is not None:
            self.feeder.cancel()
        from esl_app.stt_feed import StreamFeeder
        self.feeder = StreamFeeder(self.m.pool, self.m.stt, self.stt_hints(), self.endpointer.set_partial, self.rate)
        self.feeder.feed(self.endpointer.turn_audio)

    def stt_hints(self) -> list[str]:
        """Words the recognizer should expect now (the dialog state's choices, the agent's vocabulary)."""
        hints = getattr(self.responder, "phrase_hints", None)
        dynamic = hints() if callable(hints) else []
        return list(dict.fromkeys([*self.s.stt_hints, *dynamic]))

    def _timers(self) -> None:
        now = time.monotonic()
        if now - self.t_start > self.s.max_call_s:
            self.goodbye("Время разговора истекло. Спасибо за звонок, до свидания.", "max_duration")
            return
        idle = now - max(self.last_agent_audio_end, self.last_caller_activity)
        if (not self.player.speaking and not self.endpointer.in_turn and
                (self.turn_task is None or self.turn_task.dead) and idle > self.s.silence_reprompt_s):
            if self.reprompts >= self.s.max_reprompts:
                self.goodbye(SILENCE_GOODBYE, "caller_silent")
            else:
                self.reprompts += 1
                self.last_caller_activity = now
                self.say(REPROMPT, turn=None)

    # -- barge-in -----------------------------------------------------------------------------
    def barge_in(self) -> None:
        self._barge_speech_ms = 0
        if self.cancel_gen is not None:
            self.cancel_gen.set()
        interrupted = self.player.flush()
        heard_parts = []
        for utt in interrupted:
            played = (time.monotonic() - utt.started_at) * 1000 if utt.started_at is not None else 0
            utt.heard = heard_prefix(utt.text, played, utt.duration_ms) if utt.started_at is not None else ""
            utt.interrupted = True
            if utt.heard:
                heard_parts.append(utt.heard)
        heard = " ".join(heard_parts)
        # The dialog keeps only what the caller actually heard of the last reply.
        if self.history and self.history[-1].role == "assistant":
            spoken = self._spoken_before(interrupted)
            self.history[-1] = Message("assistant", (spoken + " " + heard).strip())
            if not self.history[-1].content:
                self.history.pop()
        self._event("barge_in", "Клиент перебил агента", {"heard": heard, "dropped": len(interrupted)})

    def _spoken_before(self, interrupted: list[Utterance]) -> str:
        last = self.history[-1].content if self.history else ""
        for utt in interrupted:
            idx = last.find(utt.text)
            if idx >= 0:
                return last[:idx].strip()
        return last

    # -- turns --------------------------------------------------------------------------------
    def _start_turn(self, ev: TurnEnded) -> None:
        if self.turn_task is not None and not self.turn_task.dead:
            # The caller went on before the reply was out: drop that reply, answer both turns at once.
            if self.cancel_gen is not None:
                self.cancel_gen.set()
            self.turn_task.kill(block=False)
            self.player.flush()
        # The endpointer decided ``decided_ms - t_ms`` after the caller stopped; measure from the stop.
        lag_s = (ev.decided_ms - ev.t_ms) / 1000
        timer = TurnTimer(end_of_speech_mono=time.monotonic() - lag_s)
        timer.mark("end_of_speech")
        timer.mark("endpoint_decided")
        feeder, self.feeder = self.feeder, None
        self.turn_task = gevent.spawn(self._turn, ev, timer, feeder)

    def _turn(self, ev: TurnEnded, timer: TurnTimer, feeder: "StreamFeeder | None" = None) -> None:
        m = self.m
        audio = resample(ev.audio, self.rate, m.stt.sample_rate)
        try:
            started = time.perf_counter()
            if feeder is not None:
                result = feeder.finish()
                timer.compute["stt_partials"] = float(feeder.partials)
            else:
                result = m.pool.run(m.stt.transcribe, audio, m.stt.sample_rate, self.stt_hints() or None)
            timer.compute["stt"] = (time.perf_counter() - started) * 1000
            timer.compute["stt_audio"] = len(audio) * 1000 / (2 * m.stt.sample_rate)
            timer.compute["endpoint_wait"] = float(ev.decided_ms - ev.t_ms)
        except EngineError as exc:
            log.error("speech recognition failed", extra={"error": str(exc)})
            self._issue("STT_LOW_CONFIDENCE", {"error": str(exc)})
            return
        timer.mark("stt_final")
        text = result.text.strip()
        start_ms = max(0, ev.t_ms - ev.speech_ms)
        self._transcript("caller", text, start_ms, ev.t_ms, result.confidence)
        if not text:
            return
        if result.confidence < self.s.low_confidence:
            self._low_confidence(text, result.confidence)
            return
        self.low_conf_turns = 0
        self.history.append(Message("user", text))
        self._reply(timer)

    def _reply(self, timer: TurnTimer) -> None:
        m = self.m
        cancel = threading.Event()
        self.cancel_gen = cancel
        splitter = SentenceStream()
        reply_parts: list[str] = []
        utterances: list[Utterance] = []
        started = time.perf_counter()
        try:
            for piece in m.pool.stream(self.responder.stream, list(self.history), cancel=cancel):
                if cancel.is_set():
                    break
                timer.mark("llm_first_token")
                reply_parts.append(piece)
                for sentence in splitter.feed(piece):
                    if "llm_first_sentence" not in timer.compute:
                        timer.compute["llm_first_sentence"] = (time.perf_counter() - started) * 1000
                    utterances.append(self._queue_sentence(sentence, timer))
            if not cancel.is_set():
                for sentence in splitter.flush():
                    timer.compute.setdefault("llm_first_sentence", (time.perf_counter() - started) * 1000)
                    utterances.append(self._queue_sentence(sentence, timer))
        except EngineError as exc:
            log.error("reply generation failed", extra={"error": str(exc)})
            utterances.append(self._queue_sentence(FALLBACK_REPLY, timer))
            self._event("llm_failed", "Сбой генерации ответа", {"engine": exc.engine, "error": str(exc)})
        timer.compute["llm"] = (time.perf_counter() - started) * 1000
        reply = "".join(reply_parts).strip()
        if reply and not cancel.is_set():
            self.history.append(Message("assistant", reply))
        elif reply:
            self.history.append(Message("assistant", " ".join(u.text for u in utterances)))
        for utt in utterances:
            utt.done.wait(timeout=120)
        self._record_timing(timer, utterances)
        interrupted = any(u.interrupted or u.heard is not None for u in utterances)
        start_ms = int((timer.end_of_speech_mono - self.t_start) * 1000 + timer.marks.get("first_audio_sent", 0))
        self._transcript("agent", " ".join(u.text for u in utterances), start_ms,
                         int((time.monotonic() - self.t_start) * 1000), None,
                         heard=" ".join(u.heard if u.heard is not None else (u.text if u.started_at else "")
                                        for u in utterances).strip() if interrupted else None,
                         interrupted=interrupted)

    def _queue_sentence(self, text: str, timer: TurnTimer | None) -> Utterance:
        self.seq += 1
        result = AsyncResult()
        utt = Utterance(self.seq, text, result, timer)
        m = self.m

        def synth() -> None:
            try:
                started = time.perf_counter()
                audio = m.pool.run(m.tts.synthesize, m.normalize(text))
                if timer is not None:
                    spent = (time.perf_counter() - started) * 1000
                    if "tts_first" not in timer.compute:
                        timer.compute["tts_first"] = spent
                        timer.compute["tts_first_audio"] = float(audio.duration_ms)
                    timer.compute["tts_total"] = timer.compute.get("tts_total", 0.0) + spent
                    timer.compute["tts_audio_total"] = timer.compute.get("tts_audio_total", 0.0) + audio.duration_ms
                    timer.mark("tts_first_audio")
                result.set(audio)
            except Exception as exc:  # noqa: BLE001
                result.set_exception(exc)

        if timer is not None:
            timer.mark("first_sentence")
        gevent.spawn(synth)
        self.player.enqueue(utt)
        return utt

    def say(self, text: str, turn: TurnTimer | None) -> list[Utterance]:
        """Speak fixed text (greeting, reprompts) through the same TTS and player."""
        out = [self._queue_sentence(s, turn) for s in (SentenceStream().feed(text + " ") or [text])]
        self._transcript("agent", text, int((time.monotonic() - self.t_start) * 1000), None, None)
        return out

    def goodbye(self, text: str, reason: str) -> None:
        utts = self.say(text, None)
        for utt in utts:
            utt.done.wait(timeout=30)
        self._event("agent_hangup", "Агент завершил звонок", {"reason": reason})
        self.line.hangup("NORMAL_CLEARING")
        self.ended.set()

    def _low_confidence(self, text: str, confidence: float) -> None:
        self.low_conf_turns += 1
        self._event("stt_low_confidence", "Система плохо слышит",
                    {"text": text, "confidence": round(confidence, 3), "count": self.low_conf_turns})
        if self.low_conf_turns < self.s.low_confidence_escalate_after:
            self.say(ASK_REPEAT, None)
            return
        self._issue("STT_LOW_CONFIDENCE", {"turns": self.low_conf_turns, "last_text": text,
                                           "confidence": round(confidence, 3)})
        route_id = self.m.operator_route_for(self.call) if self.line.can_transfer() else None
        if route_id is None:
            self.goodbye(NO_OPERATOR, "low_confidence_no_operator")
            return
        for utt in self.say(ESCALATE_LOW_CONF, None):
            utt.done.wait(timeout=30)
        self.line.transfer(route_id)

    # -- audio out ----------------------------------------------------------------------------
    def play_audio(self, utt: Utterance, audio: Any) -> None:
        utt.duration_ms = audio.duration_ms
        if self.line.streaming:
            self._play_stream(utt, audio)
        else:
            self._play_file(utt, audio)

    def _mark_first_audio(self, utt: Utterance) -> None:
        utt.started_at = time.monotonic()
        if utt.turn is not None:
            utt.turn.mark("first_audio_sent")

    def _play_file(self, utt: Utterance, audio: Any) -> None:
        path = str(self.tts_dir / f"{utt.seq}.wav")
        with open(path, "wb") as fh:
            fh.write(wav_bytes(audio.pcm16, audio.sample_rate))
        done = Event()
        self._playback_done[path] = done
        self._mark_first_audio(utt)
        try:
            self.line.play_file(path)
        except Exception as exc:  # noqa: BLE001
            log.warning("playback command failed", extra={"error": str(exc)})
            return
        done.wait(timeout=audio.duration_ms / 1000 + 10)
        self._playback_done.pop(path, None)

    def _play_stream(self, utt: Utterance, audio: Any) -> None:
        pcm = resample(audio.pcm16, audio.sample_rate, self.rate)
        self._mark_first_audio(utt)
        chunk = self.rate * 2 // 5  # 200 ms
        for i in range(0, len(pcm), chunk):
            if utt.interrupted or self.ended.is_set():
                return
            self.line.send_audio(pcm[i:i + chunk])
        end = utt.started_at + len(pcm) / (2 * self.rate)
        while not utt.interrupted and not self.ended.is_set() and time.monotonic() < end:
            gevent.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def stop_audio(self) -> None:
        self.line.stop_audio()

    def _text_frame(self, data: str) -> None:
        """Browser lines send keypad digits and hang-ups as JSON; fork echoes carry nothing we need."""
        if self.line.kind != "browser":
            return
        try:
            msg = json.loads(data)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("type") == "dtmf" and str(msg.get("digit", "")) in set("0123456789*#"):
            self.last_caller_activity = time.monotonic()
            self._dtmf(str(msg["digit"]))
        elif msg.get("type") == "hangup":
            self.ended.set()

    def _on_fs_event(self, event: FsEvent) -> None:
        if event.uuid != self.line.fs_uuid:
            return
        if event.name == "PLAYBACK_STOP":
            done = self._playback_done.get(event.get("Playback-File-Path", ""))
            if done is not None:
                done.set()
        elif event.name == "DTMF":
            self.last_caller_activity = time.monotonic()
            self._dtmf(event.get("DTMF-Digit", ""))
        elif event.name == "CHANNEL_HANGUP_COMPLETE":
            self.ended.set()

    def _dtmf(self, digit: str) -> None:
        """Keypad input is a caller turn too: digits until '#' or a 2 s pause (codes, menu choices)."""
        if not digit:
            return
        if digit != "#":
            self._dtmf_buf += digit
        if self._dtmf_timer is not None:
            self._dtmf_timer.kill(block=False)
        if digit == "#":
            self._dtmf_commit()
        else:
            self._dtmf_timer = gevent.spawn_later(2.0, self._dtmf_commit)

    def _dtmf_commit(self) -> None:
        digits, self._dtmf_buf = self._dtmf_buf, ""
        if not digits or self.ended.is_set():
            return
        if self.player.speaking:
            self.barge_in()
        text = f"Клиент ввёл на клавиатуре: {digits}"
        t_ms = int((time.monotonic() - self.t_start) * 1000)
        self._transcript("caller", text, t_ms, t_ms, 1.0)
        self.history.append(Message("user", text))
        timer = TurnTimer(end_of_speech_mono=time.monotonic())
        timer.mark("end_of_speech")
        if self.turn_task is not None and not self.turn_task.dead:
            self.turn_task.kill(block=False)
        self.turn_task = gevent.spawn(self._reply, timer)

    # -- records ------------------------------------------------------------------------------
    def _record_timing(self, timer: TurnTimer, utterances: list[Utterance]) -> None:
        payload = {"marks_ms": {k: round(v, 1) for k, v in timer.marks.items()},
                   "compute_ms": {k: round(v, 1) for k, v in timer.compute.items()},
                   "sentences": len(utterances), "interrupted": any(u.interrupted for u in utterances)}
        v2v = timer.marks.get("first_audio_sent")
        if v2v is not None:
            observe("voice_to_voice", self.m.llm_name, v2v / 1000)
        self.m.timings.append(payload)
        self._event("turn_timing", "", payload)

    def _event(self, etype: str, status: str, payload: dict[str, Any]) -> None:
        try:
            with database.connection_context():
                self.recorder.add_event(etype, utcnow(), status, payload)
        except Exception:  # noqa: BLE001
            log.exception("could not record call event")

    def _issue(self, code: str, details: dict[str, Any]) -> None:
        try:
            with database.connection_context():
                CallIssue.create(project=self.call.project_id, call=self.call.id, code=code, source="system",
                                 details_json=details)
                self.recorder.persist({"has_errors": True})
        except Exception:  # noqa: BLE001
            log.exception("could not record call issue")

    def _transcript(self, speaker: str, text: str, start_ms: int, end_ms: int | None, confidence: float | None,
                    heard: str | None = None, interrupted: bool = False) -> None:
        if not text:
            return
        self.line.notify({"type": "transcript", "speaker": speaker, "text": text, "heard": heard,
                          "interrupted": interrupted, "confidence": confidence, "ts_ms": start_ms})
        try:
            with database.connection_context():
                Transcript.create(project=self.call.project_id, call=self.call.id, speaker=speaker, text=text,
                                  ts_start_ms=start_ms, ts_end_ms=end_ms, stt_confidence=confidence,
                                  heard_text=heard, interrupted=interrupted)
        except Exception:  # noqa: BLE001
            log.exception("could not save transcript")


class VoiceManager:
    """Per-process voice resources: engines (loaded once), the inference pool, admission control."""

    def __init__(self, runtime: "EslRuntime", engines: Any, max_calls: int, playback_mode: str,
                 tts_dir: str, pool_size: int = 2) -> None:
        from pathlib import Path
        from core.engines.pool import InferencePool
        self.runtime = runtime
        self.engines = engines
        self.max_calls = max_calls
        self.playback_mode = playback_mode
        self.tts_dir = Path(tts_dir)
        self.pool = InferencePool(pool_size, max_queue=max_calls * 4)
        self.active = 0
        self.timings: list[dict[str, Any]] = []

    @property
    def stt(self):  # type: ignore[no-untyped-def]
        return self.engines.stt

    @property
    def tts(self):  # type: ignore[no-untyped-def]
        return self.engines.tts

    @property
    def llm_name(self) -> str:
        return getattr(self.engines.llm, "name", "llm") if self.engines._set is not None else "llm"

    def normalize(self, text: str) -> str:
        return self.engines.normalize(text)

    def responder_for(self, settings: VoiceSettings) -> LlmResponder:
        engine = self.engines.llm
        if settings.llm.get("engine") == "scripted":
            from core.engines.llm_scripted import ScriptedLlm
            cfg = {k: v for k, v in settings.llm.items() if k in ("rules", "default_reply", "token_delay_s")}
            engine = ScriptedLlm(**cfg)
        if settings.system_prompt:
            return LlmResponder(engine, settings.system_prompt)
        return LlmResponder(engine)

    def operator_route_for(self, call: Any) -> str | None:
        from models.telephony import PhoneNumber
        if call.phone_number_id:
            with database.connection_context():
                number = PhoneNumber.get_or_none(PhoneNumber.id == call.phone_number_id)
            if number is not None and number.operator_route_id:
                return str(number.operator_route_id)
        return None

    def settings_for(self, call: Any) -> VoiceSettings:
        from models.agents import AgentVersion
        config: dict[str, Any] = {}
        if call.agent_version_id:
            with database.connection_context():
                version = AgentVersion.get_or_none(AgentVersion.id == call.agent_version_id)
            if version is not None:
                config = version.config_json or {}
        return VoiceSettings.from_agent_config(config)

    def run_call(self, worker: "CallWorker", fork: "ForkSocket", meta: dict[str, Any]) -> None:
        routing = (worker.call.metadata_json or {}).get("routing") or {}
        if routing.get("action") not in (None, "agent"):
            return  # a routing rule sent this call to an operator or a goodbye: no agent
        from esl_app.lines import PhoneLine
        self.run_line(PhoneLine(self.runtime, worker, fork, self.playback_mode))

    def run_line(self, line: "PhoneLine | BrowserLine") -> None:
        """Run the conversation on a phone or browser line, within the process's voice capacity."""
        try:
            self.pool.run(self.engines.load)  # no-op once warmed up; never loads on the loop
        except Exception as exc:  # noqa: BLE001
            log.error("voice engines unavailable for a call", extra={"error": str(exc)})
            self._unavailable(line)
            return
        settings = self.settings_for(line.call)
        if self.active >= self.max_calls or self.pool.saturated:
            self._overflow(line)
            return
        self.active += 1
        try:
            VoiceCall(self, line, settings).run()
        finally:
            self.active -= 1

    def _unavailable(self, line: "PhoneLine | BrowserLine") -> None:
        """Engines failed to load: hand the caller to a person or end the call cleanly, never leave it parked."""
        recorder = CallRecorder(line.call, self.runtime.redis)
        with database.connection_context():
            recorder.add_event("voice_unavailable", utcnow(), "Голосовой модуль недоступен", {})
            CallIssue.create(project=line.call.project_id, call=line.call.id, code="INTEGRATION_TIMEOUT",
                             source="system", details_json={"reason": "voice engines unavailable"})
        route_id = self.operator_route_for(line.call) if line.can_transfer() else None
        if route_id is not None:
            line.transfer(route_id)
        else:
            line.hangup("NORMAL_TEMPORARY_FAILURE")

    def _overflow(self, line: "PhoneLine | BrowserLine") -> None:
        """Saturated: refuse clearly (or hand to an operator) instead of degrading every call."""
        log.warning("voice capacity reached; refusing the call", extra={"active": self.active})
        recorder = CallRecorder(line.call, self.runtime.redis)
        with database.connection_context():
            recorder.add_event("overloaded", utcnow(), "Все линии заняты", {"active": self.active})
            CallIssue.create(project=line.call.project_id, call=line.call.id, code="VOICE_CAPACITY_REACHED",
                             source="system", details_json={"active": self.active, "max_calls": self.max_calls})
        route_id = self.operator_route_for(line.call) if line.can_transfer() else None
        if route_id is not None:
            line.transfer(route_id)
            return
        audio = self.pool.run(self.tts.synthesize, self.normalize(OVERLOAD))
        if line.kind == "browser":
            line.send_audio(resample(audio.pcm16, audio.sample_rate, line.rate))
        else:
            path = self.tts_dir / f"overload-{uuid.uuid4().hex}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(wav_bytes(audio.pcm16, audio.sample_rate))
            line.play_file(str(path))
        gevent.sleep(audio.duration_ms / 1000 + 0.3)
        line.hangup("NORMAL_CLEARING")
