"""``voiceai-esl``: the telephony runtime process (one per FreeSWITCH node).

At this stage it keeps an Event Socket connection to FreeSWITCH alive (reconnect with
exponential backoff, event subscription) and reports its state in logs; call handling is
added on top of ``EslLink`` by the telephony work.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from greenswitch.esl import InboundESL  # noqa: E402

from core.config import Settings, get_settings  # noqa: E402
from core.logging import configure_logging  # noqa: E402

log = logging.getLogger("voiceai.esl")
SUBSCRIBED_EVENTS = ("CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_PARK "
                     "CHANNEL_HANGUP_COMPLETE DTMF PLAYBACK_START PLAYBACK_STOP RECORD_STOP "
                     "BACKGROUND_JOB CUSTOM mod_audio_fork::connect mod_audio_fork::connect_failed "
                     "mod_audio_fork::disconnect mod_audio_fork::play_audio sofia::gateway_state")


class EslLink:
    """One supervised inbound ESL connection: connect, subscribe, and reconnect when it drops."""

    def __init__(self, settings: Settings, stop: Event, max_backoff_s: float = 30.0) -> None:
        self.settings = settings
        self.stop = stop
        self.max_backoff_s = max_backoff_s
        self.conn: InboundESL | None = None

    def _connect(self) -> InboundESL:
        s = self.settings
        conn = InboundESL(host=s.esl_host, port=s.esl_port, password=s.esl_password)
        conn.connect()
        conn.send(f"event plain {SUBSCRIBED_EVENTS}")
        return conn

    def run(self) -> None:
        backoff = 0.5
        while not self.stop.is_set():
            try:
                self.conn = self._connect()
                log.info("connected to FreeSWITCH", extra={"host": self.settings.esl_host,
                                                            "port": self.settings.esl_port})
                backoff = 0.5
                while self.conn.connected and not self.stop.is_set():
                    self.stop.wait(1.0)
            except Exception as exc:  # noqa: BLE001 - any failure means "retry later"
                log.warning("FreeSWITCH unreachable, retrying",
                            extra={"error": str(exc) or type(exc).__name__, "retry_in_s": backoff})
                self.stop.wait(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)
            finally:
                if self.conn is not None:
                    try:
                        self.conn.stop()
                    except Exception:  # noqa: BLE001
                        pass
                    self.conn = None


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level)
    stop = Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    EslLink(settings, stop).run()
    log.info("esl_app stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
