"""Fixed-window counters in Redis for API rate limits and login throttling."""
from __future__ import annotations

import time

import redis


def hit(r: redis.Redis, key: str, limit: int, window_s: int) -> tuple[bool, int]:
    """Count one hit; (allowed, seconds until the window resets)."""
    window = int(time.time()) // window_s
    full_key = f"rl:{key}:{window}"
    pipe = r.pipeline()
    pipe.incr(full_key)
    pipe.expire(full_key, window_s + 1)
    count = pipe.execute()[0]
    retry_after = window_s - int(time.time()) % window_s
    return count <= limit, retry_after
