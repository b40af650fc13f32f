"""Pacing: how many calls the dialer may start now (token bucket for calls per minute, capacity
left under the concurrency limit, daily caps). Pure: the dialer keeps the state and the clock.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``capacity`` saved up (the largest burst)."""

    rate_per_s: float
    capacity: float
    tokens: float = 0.0
    updated: float = 0.0

    def refill(self, now: float) -> None:
        if self.updated == 0.0:
            self.tokens, self.updated = min(self.capacity, 1.0), now
            return
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
            self.updated = now

    def available(self, now: float) -> int:
        self.refill(now)
        return int(self.tokens + 1e-9)

    def take(self, n: int, now: float) -> None:
        self.refill(now)
        self.tokens -= n


# Seconds of calls a bucket may save up: a dialer tick delayed by a slow query or a restarted worker
# catches up instead of losing those calls, while any 60-second window stays within 105 % of the
# calls-per-minute limit (60 s of tokens plus 3 s saved).
BURST_S = 3.0


def bucket_for(calls_per_minute: float, burst_s: float = BURST_S) -> TokenBucket:
    """A bucket whose burst is ``burst_s`` seconds of calls (at least one call)."""
    rate = calls_per_minute / 60.0
    return TokenBucket(rate_per_s=rate, capacity=max(1.0, rate * burst_s))


def dial_slots(tokens: int, max_concurrent: int, live: int, daily_left: int | None,
               project_daily_left: int | None, batch: int = 50) -> int:
    """Calls to start now: the smallest of every limit (never negative)."""
    n = min(tokens, max_concurrent - live, batch)
    for cap in (daily_left, project_daily_left):
        if cap is not None:
            n = min(n, cap)
    return max(0, n)
