"""Periodic jobs: enqueued by whichever worker holds the schedule lock for the period.

RQ has no cron of its own; each worker runs ``tick()`` in a background thread and a Redis ``SET NX``
per job and period makes sure exactly one copy is enqueued across all workers.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import redis
from rq import Queue

log = logging.getLogger("voiceai.jobs.scheduler")


@dataclass(frozen=True)
class Periodic:
    name: str
    func: str          # dotted path RQ imports in the worker
    every_s: int
    queue: str = "default"


PERIODIC = [
    Periodic("purge_recordings", "jobs.retention.purge_recordings_job", 3600),
]


def tick(r: redis.Redis, now: float | None = None, periodic: list[Periodic] = PERIODIC) -> list[str]:
    """Enqueue every periodic job whose period started and nobody enqueued yet."""
    now = time.time() if now is None else now
    enqueued = []
    for job in periodic:
        period = int(now // job.every_s)
        key = f"sched:{job.name}:{period}"
        if r.set(key, "1", nx=True, ex=job.every_s * 2):
            try:
                Queue(job.queue, connection=r).enqueue(job.func, job_id=f"{job.name}-{period}",
                                                       job_timeout=job.every_s)
            except Exception:  # noqa: BLE001 - release the period so the next tick (any worker) retries
                log.exception("could not enqueue periodic job", extra={"job": job.name})
                r.delete(key)
                continue
            enqueued.append(job.name)
    return enqueued


def start_background(r: redis.Redis, interval_s: float = 30.0,
                     stop: Callable[[], bool] = lambda: False) -> threading.Thread:
    def loop() -> None:
        while not stop():
            try:
                tick(r)
            except Exception:  # noqa: BLE001
                log.exception("scheduler tick failed")
            time.sleep(interval_s)
    thread = threading.Thread(target=loop, name="voiceai-scheduler", daemon=True)
    thread.start()
    return thread
