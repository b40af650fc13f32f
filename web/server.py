"""``voiceai-web``: serves the Flask app on gevent (HTTP + WebSocket) on VOICEAI_HTTP_PORT."""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

from core.config import get_settings  # noqa: E402
from core.gevent_support import patch_psycopg2  # noqa: E402


def main() -> int:
    patch_psycopg2()
    from web.app import create_app
    settings = get_settings()
    app = create_app(settings)
    log = logging.getLogger("voiceai.web")
    server = WSGIServer((settings.http_host, settings.http_port), app, log=None, error_log=log)
    log.info("web listening", extra={"host": settings.http_host, "port": settings.http_port})

    def _stop(*_):
        log.info("web stopping (draining requests)")
        server.stop(timeout=10)

    import gevent
    gevent.signal_handler(signal.SIGTERM, _stop)
    gevent.signal_handler(signal.SIGINT, _stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
