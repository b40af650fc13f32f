"""esl_app's runtime: the supervised FreeSWITCH connection, live calls, commands, drain.

Lifecycle: connect (exponential backoff while FreeSWITCH is unreachable) -> subscribe -> re-attach
live calls -> serve. When the connection drops, calls keep their workers; on reconnect the runtime
re-attaches again, adopting channels it does not know and closing rows whose channel vanished.
``drain()`` (SIGTERM) stops taking new calls and commands and waits for live calls to end, up to
VOICEAI_DRAIN_TIMEOUT; calls still up then stay up in FreeSWITCH for the next esl_app to adopt.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import gevent
import redis
from gevent.event import Event

from core.config import Settings
from core.storage import make_storage
from core.telephony.command_queue import CommandQueue
from esl_app.calls import CallManager
from esl_app.commands import CommandExecutor
from esl_app.esl import FsCommandError, FsConnection, FsEvent
from esl_app.recordings import Recordings
from esl_app.transfer import Transfers

log = logging.getLogger("voiceai.esl")


class LazyEngines:
    """The process's EngineSet, built on first use (normally by the start-up warm-up)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._set = None
        self._lock = __import__("threading").Lock()

    def load(self):  # type: ignore[no-untyped-def]
        with self._lock:
            if self._set is None:
                from core.engines.factory import EngineSet
                self._set = EngineSet.from_settings(self.settings)
            return self._set

    def describe(self) -> dict:
        e = self.load()
        return {"stt": e.stt.name, "llm": e.llm.name, "tts": e.tts.name, "vad": self.settings.vad_engine}

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.load(), name)


class EslRuntime:
    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None,
                 connect_timeout_s: float = 5.0, max_backoff_s: float = 30.0) -> None:
        self.settings = settings
        self.node = settings.fs_node
        self.redis = redis_client or redis.Redis.from_url(settings.redis_url)
        self.calls = CallManager(self)
        self.recordings = Recordings(self, make_storage(settings), settings.fs_recordings_dir)
        self.transfers = Transfers(self)
        self.commands = CommandExecutor(self, CommandQueue(self.redis, self.node))
        from esl_app.voice import VoiceManager
        self.voice = VoiceManager(self, LazyEngines(settings), max_calls=settings.max_voice_calls,
                                  playback_mode=settings.playback_mode, tts_dir=settings.fs_tts_dir,
                                  pool_size=settings.inference_threads)
        self.audio_server = None
        self.fs: FsConnection = None  # type: ignore[assignment]
        self.connect_timeout_s = connect_timeout_s
        self.max_backoff_s = max_backoff_s
        self.stopping = Event()
        self.connected = Event()
        self.event_hooks: list[Callable[[FsEvent], None]] = []  # other subsystems (audio, gateways)
        self.reconnects = 0
        self._greenlets: list[gevent.Greenlet] = []

    # -- events ------------------------------------------------------------------------------
    def _on_event(self, event: FsEvent) -> None:
        self.calls.on_event(event)
        for hook in self.event_hooks:
            hook(event)

    # -- connection supervision ----------------------------------------------------------------
    def _connect_once(self) -> FsConnection:
        s = self.settings
        conn = FsConnection(s.esl_host, s.esl_port, s.esl_password, self._on_event, self.connect_timeout_s)
        conn.connect()
        return conn

    def supervise(self) -> None:
        """Keep a connection up until stopped; re-attach calls after every (re)connect."""
        backoff = 0.5
        first = True
        while not self.stopping.is_set():
            try:
                self.fs = self._connect_once()
            except Exception as exc:  # noqa: BLE001 - unreachable, refused, bad password: retry
                log.warning("FreeSWITCH unreachable, retrying",
                            extra={"error": str(exc) or type(exc).__name__, "retry_in_s": backoff,
                                   "host": self.settings.esl_host, "port": self.settings.esl_port})
                self.stopping.wait(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)
                continue
            backoff = 0.5
            if not first:
                self.reconnects += 1
            first = False
            log.info("connected to FreeSWITCH", extra={"host": self.settings.esl_host,
                                                        "port": self.settings.esl_port})
            try:
                self.calls.reattach()
                if self.reconnects == 0:
                    self.commands.recover()
            except FsCommandError:
                log.exception("re-attach failed; will retry on the next connection")
                self.fs.close()
                continue
            self.connected.set()
            while self.fs.connected and not self.stopping.is_set():
                self.stopping.wait(0.5)
            self.connected.clear()
            if not self.stopping.is_set():
                log.warning("lost the FreeSWITCH connection; reconnecting")
            self.fs.close()

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self.supervise), gevent.spawn(self._commands_when_connected)]
        if self.settings.voice_enabled:
            from esl_app.audio_server import serve_audio
            self.audio_server = serve_audio(self, self.settings.audio_ws_host, self.settings.audio_ws_port)
            self._greenlets.append(gevent.spawn(self._warm_up))

    def _warm_up(self) -> None:
        """Load the models in the inference pool at start, so the first caller does not wait."""
        try:
            engines = self.voice.pool.run(self.voice.engines.load)
            # Start long-lived helpers (the Festival server) and warm caches before the first caller.
            self.voice.pool.run(engines.tts.synthesize, engines.normalize("Добрый день."))
            self.voice.pool.run(engines.stt.transcribe, b"\x00\x00" * (engines.stt.sample_rate // 2),
                                engines.stt.sample_rate, None)
            from core.kb.embeddings import get_embedder
            self.voice.pool.run(get_embedder)  # knowledge-base models, so the first question does not load them
            log.info("voice engines ready", extra=self.voice.engines.describe())
        except Exception as exc:  # noqa: BLE001 - calls will be handed to an operator instead
            log.error("voice engines failed to load", extra={"error": str(exc)})

    def _commands_when_connected(self) -> None:
        while not self.stopping.is_set():
            if not self.connected.wait(timeout=1):
                continue
            self.commands.run_until(lambda: not self.connected.is_set() or self.stopping.is_set()
                                    or not self.calls.accepting)
            if not self.calls.accepting:
                return

    # -- shutdown ------------------------------------------------------------------------------
    def drain(self, timeout_s: float | None = None) -> int:
        """Stop new calls and commands, wait for live calls to end; returns calls left up."""
        timeout_s = self.settings.drain_timeout_s if timeout_s is None else timeout_s
        self.calls.accepting = False
        log.info("draining: no new calls or commands", extra={"live_calls": len(self.calls),
                                                              "timeout_s": timeout_s})
        deadline = time.monotonic() + timeout_s
        while len(self.calls) and time.monotonic() < deadline:
            gevent.sleep(0.2)
        left = len(self.calls)
        if left:
            log.warning("drain timeout: leaving calls up for the next esl_app to re-attach",
                        extra={"live_calls": left})
        return left

    def stop(self) -> None:
        self.stopping.set()
        if self.audio_server is not None:
            self.audio_server.stop(timeout=2)
        self.commands.stop()
        for worker in list(self.calls.workers.values()):
            worker.stop()
        if self.fs is not None:
            self.fs.close()
        gevent.joinall(self._greenlets, timeout=5)
