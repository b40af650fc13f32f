"""``voiceai-worker``: an RQ worker on the platform queues (campaigns, messages, indexing, ...)."""
from __future__ import annotations

import logging

import redis
from rq import Queue, Worker

from core.config import get_settings
from core.logging import configure_logging
from models.base import bind_database


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level)
    bind_database(settings.database_url)
    conn = redis.Redis.from_url(settings.redis_url)
    queues = [Queue(name.strip(), connection=conn) for name in settings.rq_queues.split(",") if name.strip()]
    logging.getLogger("voiceai.worker").info("worker starting", extra={"queues": [q.name for q in queues]})
    from jobs.scheduler import start_background
    start_background(conn)
    from jobs.dialer import start_watchdog  # campaign dialer loops survive killed workers
    start_watchdog(conn)
    Worker(queues, connection=conn).work(with_scheduler=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
