"""Sliding-window counters in Redis for API rate limits and login throttling.

A fixed window lets a client send twice the limit around a window boundary and resets a blocked
client early; a per-key log of hit times (sorted set) counts exactly the last ``window_s`` seconds.
Refused hits are not logged, so a client that backs off gets in again as soon as old hits age out.
"""
from __future__ import annotations

import time
import uuid

import redis


def hit(r: redis.Redis, key: str, limit: int, window_s: int) -> tuple[bool, int]:
    """Count one hit; (allowed, seconds until a slot frees up)."""
    now = time.time()
    full_key = f"rl:{key}"
    member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"
    pipe = r.pipeline()
    pipe.zremrangebyscore(full_key, 0, now - window_s)
    pipe.zadd(full_key, {member: now})
    pipe.zcard(full_key)
    pipe.expire(full_key, window_s + 1)
    count = pipe.execute()[2]
    if count <= limit:
        return True, 0
    r.zrem(full_key, member)
    oldest = r.zrange(full_key, 0, 0, withscores=True)
    retry_after = int(oldest[0][1] + window_s - now) + 1 if oldest else window_s
    return False, max(1, retry_after)
