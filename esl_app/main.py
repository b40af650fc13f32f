"""``voiceai-esl``: the telephony runtime process (one per FreeSWITCH node).

SIGTERM drains (no new calls or commands; live calls finish, up to VOICEAI_DRAIN_TIMEOUT) and
exits; a second SIGTERM or SIGINT exits at once. Calls still up stay up in FreeSWITCH and the next
esl_app re-attaches them.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

from core.config import get_settings  # noqa: E402
from core.gevent_support import patch_psycopg2  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from models.base import bind_database  # noqa: E402

log = logging.getLogger("voiceai.esl")


def main() -> int:
    patch_psycopg2()
    settings = get_settings()
    configure_logging(settings.log_level)
    bind_database(settings.database_url, pooled=True)
    from esl_app.runtime import EslRuntime
    runtime = EslRuntime(settings)
    runtime.start()
    done = Event()
    signals = {"count": 0}

    def on_signal(sig: int) -> None:
        signals["count"] += 1
        if sig == signal.SIGINT or signals["count"] > 1:
            done.set()
            return
        gevent.spawn(lambda: (runtime.drain(), done.set()))

    gevent.signal_handler(signal.SIGTERM, on_signal, signal.SIGTERM)
    gevent.signal_handler(signal.SIGINT, on_signal, signal.SIGINT)
    done.wait()
    runtime.stop()
    log.info("esl_app stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
