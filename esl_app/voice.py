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
from core.voice.amd import AmdSession
from core.voice.dialog import heard_prefix
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
BROWSER_NO_TRANSFER = ("Здесь я бы перевёл вас на оператора, но в браузере перевод недоступен. "
                       "Позвоните нам по телефону, и оператор продолжит разговор. До свидания.")
NO_OPERATOR_ESCALATION = "Сейчас соединить с оператором не получится. Пожалуйста, перезвоните нам позже. До свидания."
OPERATOR_BUSY = "Операторы сейчас заняты. Давайте я постараюсь помочь сам."
CALLBACK_PROMISED = "Операторы сейчас заняты. Мы перезвоним вам в ближайшее время. Чем ещё могу помочь?"


@dataclass
class VoiceSettings:
    """Per-call audio behaviour (turns, barge-in, silence, confidence) from the agent version's config.

    What the agent says (greeting, replies, prompts) is the dialog runtime's (``core.agent``).
    """

    low_confidence: float = 0.45
    low_confidence_escalate_after: int = 2
    silence_reprompt_s: float = 8.0
    max_reprompts: int = 2
    barge_in: bool = True
    barge_in_min_ms: int = 300
    max_call_s: int = 900
    turn: TurnConfig = field(default_factory=TurnConfig)
    stt_hints: list[str] = field(default_factory=list)  # words to expect (names, products), all states

    @classmethod
    def from_agent_config(cls, config: dict[str, Any]) -> "VoiceSettings":
        from core.agent.config import derive_voice
        voice = derive_voice(config)  # adaptive/escalation settings of the Studio win over raw ``voice``
        s = cls()
        for key in ("low_confidence", "low_confidence_escalate_after", "silence_reprompt_s", "max_reprompts",
                    "barge_in", "barge_in_min_ms", "max_call_s"):
            if key in voice:
                setattr(s, key, type(getattr(s, key))(voice[key]))
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
        self._greeting_pending = False
        # What this call consumed, for pricing (core.billing.costs): kept in calls.metadata_json.usage.
        self.usage: dict[str, float] = {"stt_seconds": 0.0, "llm_tokens": 0, "tts_chars": 0}
        self.listeners: list[Any] = []  # live listen-in pages (esl_app.listen.Listener)
        self.recorder = CallRecorder(self.call, self.runtime.redis)
        tts_dir = manager.tts_dir / str(self.call.id)
        tts_dir.mkdir(parents=True, exist_ok=True)
        self.tts_dir = tts_dir
        self.session = manager.session_for(self.call, line, self)
        self.amd = AmdSession.for_call(self.call)  # answering-machine detection (campaign calls only)

    # -- frame loop ---------------------------------------------------------------------------
    def run(self) -> None:
        self.line.attach(self._on_fs_event)
        try:
            if self.amd is None:
                self.say(self.session.greeting(), turn=None)
            else:
                self._greeting_pending = True  # campaign call: greet once AMD says a person answered
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
            self._save_usage()
            self._finish_session()
            self._event("voice_stats", "", {"frames": self.frames, "max_backlog_frames": self.max_backlog_frames,
                                            "turns": len([1 for _ in self.history if _.role == "user"])})
            self.line.detach(self._on_fs_event)
            for listener in list(self.listeners):
                listener.close()
            for done in self._playback_done.values():
                done.set()

    def _frame(self, frame: bytes) -> None:
        self.frames += 1
        for listener in self.listeners:
            listener.put(0, frame)
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
        if self.amd is not None and not self.amd.done:
            self._amd_frame(speech, frame)
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
        return list(dict.fromkeys([*self.s.stt_hints, *self.session.phrase_hints()]))

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
        spoken_parts = [u.text for u in interrupted]
        if spoken_parts:
            self.session.note_heard(" ".join(spoken_parts), heard)
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
        if self._greeting_pending:
            return  # AMD is still listening to who answered
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
            self.usage["stt_seconds"] += len(audio) / (2 * m.stt.sample_rate)
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
        self._reply(timer, text, result.confidence)

    def _reply(self, timer: TurnTimer, text: str, confidence: float | None = None, dtmf: str | None = None) -> None:
        """The dialog runtime's reply to one caller turn, spoken sentence by sentence as it streams."""
        cancel = threading.Event()
        self.cancel_gen = cancel
        splitter = SentenceStream()
        reply_parts: list[str] = []
        utterances: list[Utterance] = []
        started = time.perf_counter()
        try:
            for piece in self.session.respond(text, confidence=confidence, dtmf=dtmf):
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
        except Exception as exc:  # noqa: BLE001 - the runtime handles LLM failures; this is the last net
            log.exception("reply generation failed")
            utterances.append(self._queue_sentence(FALLBACK_REPLY, timer))
            self._event("llm_failed", "Сбой генерации ответа", {"engine": getattr(exc, "engine", "agent"),
                                                                "error": str(exc)})
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
        self._session_events()
        if not cancel.is_set():
            self._after_reply()

    # -- the dialog runtime's decisions ---------------------------------------------------------
    def _session_events(self) -> None:
        """Guardrail hits, LLM fallbacks and escalations of the runtime go to the call's timeline."""
        events, self.session.events = list(self.session.events), []
        titles = {"agent.escalation": "Агент решил перевести на оператора",
                  "agent.guardrail": "Агент не стал называть непроверенные данные",
                  "agent.llm_failed": "Языковая модель недоступна: резервный сценарий"}
        for ev in events:
            etype = str(ev.get("type", "agent.event"))
            self._event(etype, titles.get(etype, ""), {k: v for k, v in ev.items() if k != "type"})

    def _after_reply(self) -> None:
        if self.ended.is_set():
            return
        if self.session.escalation is not None:
            self._escalate_session()
        elif self.session.ended:
            self._event("agent_hangup", "Агент завершил звонок", {"reason": "dialog_closed"})
            gevent.sleep(0.3)
            self.line.hangup("NORMAL_CLEARING")
            self.ended.set()

    def _escalate_session(self) -> None:
        """A policy fired: store the handoff packet and hand the caller over with it."""
        from core.agent.handoff import create_packet, transfer_args, whisper_text
        esc = self.session.escalation
        if not self.line.can_transfer():
            self.line.notify({"type": "transfer", "reason": esc.reason, "reason_text": esc.reason_text})
            self.goodbye(BROWSER_NO_TRANSFER, "escalation_without_line")
            return
        with database.connection_context():
            packet = create_packet(self.session, self.call.id)
            args = transfer_args(packet, self.m.operator_route_for(self.call))
            route = None
            if args is not None:
                from models.telephony import OperatorRoute
                route = OperatorRoute.get_or_none(OperatorRoute.id == args["operator_route_id"])
        if args is None:
            self.goodbye(NO_OPERATOR_ESCALATION, "escalation_no_operator")
            return
        if route is not None and route.whisper_enabled:
            args["whisper_file"] = self._synthesize_file(whisper_text(packet), "whisper")
        result = self.line.transfer(args) or {}
        if result.get("ok") or self.ended.is_set():
            return
        # Nobody took the call and the route sends the caller back: the agent goes on talking.
        fallback = result.get("fallback")
        if fallback == "hangup":
            return
        self.session.resume_after_failed_transfer()
        text = CALLBACK_PROMISED if fallback == "callback_task" else OPERATOR_BUSY
        self.say(text, None)

    def _synthesize_file(self, text: str, name: str) -> str:
        audio = self.m.pool.run(self.m.tts.synthesize, self.m.normalize(text))
        path = self.tts_dir / f"{name}-{uuid.uuid4().hex[:8]}.wav"
        with open(path, "wb") as fh:
            fh.write(wav_bytes(audio.pcm16, audio.sample_rate))
        return str(path)

    def _finish_session(self) -> None:
        """Call end: the runtime writes outcome, summary and collected fields to the call."""
        try:
            with database.connection_context():
                self.session.finish()
        except Exception:  # noqa: BLE001 - the call is over; never lose the rest of the teardown
            log.exception("could not finish the dialog session", extra={"call_id": str(self.call.id)})

    def _queue_sentence(self, text: str, timer: TurnTimer | None) -> Utterance:
        self.seq += 1
        result = AsyncResult()
        utt = Utterance(self.seq, text, result, timer)
        m = self.m

        def synth() -> None:
            try:
                started = time.perf_counter()
                spoken = m.normalize(text)
                audio = m.pool.run(m.tts.synthesize, spoken)
                self.usage["tts_chars"] += len(spoken)
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
        again = self.session.low_confidence()
        if again is not None and self.low_conf_turns < self.s.low_confidence_escalate_after:
            self.say(again, None)
            return
        self._issue("STT_LOW_CONFIDENCE", {"turns": self.low_conf_turns, "last_text": text,
                                           "confidence": round(confidence, 3)})
        if self.session.escalation is None:
            self.session.escalate("low_confidence", f"Система плохо слышит клиента ({self.low_conf_turns} раза подряд)")
        esc = self.session.escalation
        route_id = (esc.operator_route_id or self.m.operator_route_for(self.call)) if self.line.can_transfer() else None
        if route_id is None:
            self.goodbye(NO_OPERATOR, "low_confidence_no_operator")
            return
        for utt in self.say(ESCALATE_LOW_CONF, None):
            utt.done.wait(timeout=30)
        self._escalate_session()

    # -- audio out ----------------------------------------------------------------------------
    def play_audio(self, utt: Utterance, audio: Any) -> None:
        utt.duration_ms = audio.duration_ms
        if self.listeners:
            pcm = resample(audio.pcm16, audio.sample_rate, self.rate)
            for listener in self.listeners:
                listener.put(1, pcm)
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

    def _amd_frame(self, speech: bool, frame: bytes) -> None:
        """Apply the answering-machine verdict (core/voice/amd.py) per the campaign's policy."""
        action = self.amd.feed(speech, frame, self.rate)
        if action is None:
            return
        meta = {**(self.call.metadata_json or {}), "amd": {**((self.call.metadata_json or {}).get("amd") or {}),
                                                          **action.metadata}}
        self.recorder.persist({"metadata_json": meta})
        self._event("amd", "Автоответчик" if action.metadata.get("result") == "machine" else "", action.metadata)
        if action.kind == "play_then_hangup" and action.file:
            import wave
            with wave.open(action.file) as w:
                seconds = w.getnframes() / w.getframerate()
            self.line.play_file(action.file)
            gevent.spawn_later(seconds + 0.5, self.line.hangup, "NORMAL_CLEARING")
        elif action.kind == "hangup":
            self.line.hangup("NORMAL_CLEARING")
        elif self._greeting_pending and action.metadata.get("result") != "machine":
            self._greeting_pending = False
            self.endpointer.reset()  # the "Алло?" AMD listened to is not a question for the agent
            self.say(self.session.greeting(), turn=None)

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
        self.turn_task = gevent.spawn(self._reply, timer, "", 1.0, digits)

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
        self._save_usage()

    def _save_usage(self) -> None:
        """Merge the usage counters into the call's metadata (a JSONB merge: other writers keep theirs)."""
        usage = {"stt_seconds": round(self.usage["stt_seconds"], 2), "llm_tokens": int(self.usage["llm_tokens"]),
                 "tts_chars": int(self.usage["tts_chars"])}
        try:
            with database.connection_context():
                database.execute_sql(
                    "UPDATE calls SET metadata_json = coalesce(metadata_json, '{}'::jsonb) || "
                    "jsonb_build_object('usage', %s::jsonb) WHERE id = %s",
                    (json.dumps(usage), str(self.call.id)))
        except Exception:  # noqa: BLE001
            log.exception("could not save call usage")

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
        self.live: dict[str, VoiceCall] = {}  # call id -> its running conversation (listen-in finds it here)
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

    def session_for(self, call: Any, line: "PhoneLine | BrowserLine", voice_call: "VoiceCall") -> Any:
        """The dialog runtime of this call over its frozen agent version (core.agent.session).

        The LLM runs in the inference pool; a barge-in cancels the generation in flight through the
        voice call's current cancel event.
        """
        from core.agent.session import AgentSession, SessionContext
        from models.saas import Project
        with database.connection_context():
            config = self.config_for(call)
            project = Project.get_or_none(Project.id == call.project_id)
        caller = call.from_number if call.direction == "inbound" else call.to_number
        ctx = SessionContext(project_id=call.project_id, agent_id=call.agent_id, agent_version_id=call.agent_version_id,
                             trace_id=call.trace_id, call_id=call.id,
                             caller_phone=caller if line.kind == "phone" else None, channel=line.kind,
                             variables=dict(call.variables_json or {}),
                             timezone=(project.timezone if project is not None and project.timezone else "Europe/Moscow"),
                             offload=self.pool.run)
        engine = self.engines.llm

        def llm_stream(request: Any) -> Any:
            for chunk in self.pool.stream(engine.stream, request, cancel=voice_call.cancel_gen):
                if chunk.finish_reason is not None:  # the last chunk carries the usage counts
                    voice_call.usage["llm_tokens"] += (max(0, chunk.prompt_tokens - chunk.cached_tokens)
                                                       + chunk.completion_tokens)
                yield chunk
        return AgentSession(config, ctx, llm_stream)

    def config_for(self, call: Any) -> dict[str, Any]:
        from models.agents import AgentVersion
        if call.agent_version_id:
            version = AgentVersion.get_or_none(AgentVersion.id == call.agent_version_id)
            if version is not None:
                return dict(version.config_json or {})
        return {}

    def operator_route_for(self, call: Any) -> str | None:
        from models.telephony import PhoneNumber
        if call.phone_number_id:
            with database.connection_context():
                number = PhoneNumber.get_or_none(PhoneNumber.id == call.phone_number_id)
            if number is not None and number.operator_route_id:
                return str(number.operator_route_id)
        return None

    def settings_for(self, call: Any) -> VoiceSettings:
        with database.connection_context():
            return VoiceSettings.from_agent_config(self.config_for(call))

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
        call = VoiceCall(self, line, settings)
        self.live[str(line.call.id)] = call
        try:
            call.run()
        finally:
            self.live.pop(str(line.call.id), None)
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
            line.transfer({"operator_route_id": route_id})
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
            line.transfer({"operator_route_id": route_id})
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
