"""Fan-out of per-project event streams inside one web process.

One ``ProjectFeed`` per project with subscribers in this process: a single reader greenlet does a
blocking ``XREAD`` on ``events:<project>`` (in slices shorter than the Redis socket timeout), turns
each entry into a ready ``Frame`` once, and appends it to the feed's ring. Each subscriber owns a
cursor into the ring, so its pending frames (``ring[cursor:head]``) are its bounded queue: a
subscriber more than ``max_lag`` frames behind is cut off (its socket closed) and resumes by its last
event id, so a slow client never holds the others back and nothing is lost. Subscribers that are up
to date share one joined chunk per tick, so a tick costs one ``sendall`` per client, not one JSON
encoding or frame per client.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterator

import gevent
import redis
from gevent.event import Event

from core.events import bus
from web.realtime.frames import Frame, build_frame, reset_frame

log = logging.getLogger("voiceai.realtime")
PAGE = 500          # replay page size (XRANGE COUNT)
LINGER_S = 5.0      # keep a feed's reader this long after its last subscriber left


class Subscription:
    """One client's place in a feed: its cursor, resume filter and state."""

    def __init__(self, feed: "ProjectFeed", cursor: int, on_overflow: Callable[[], None] | None) -> None:
        self.feed = feed
        self.cursor = cursor
        self.skip_until: tuple[int, int] | None = None   # frames up to this id were replayed already
        self.on_overflow = on_overflow
        self.closed = False
        self.reason: str | None = None

    def replay(self, last_event_id: str | None) -> Iterator[list[Frame]]:
        """Pages of what the client missed after ``last_event_id`` (a reset notice when it cannot).

        Called right after subscribing: the live ring only carries frames newer than the feed's
        read position at that moment, and the replay reads the stored stream up to its end, so
        together they cover everything; ``skip_until`` drops the overlap.
        """
        if last_event_id is None:
            return
        feed = self.feed
        state = bus.stream_state(feed.hub.redis, feed.project_id)
        if bus.resume_gap(last_event_id, state):
            reason = "ahead" if _ahead(last_event_id, state) else "expired"
            last_event_id = state.last_id
            yield [reset_frame(feed.project_id, last_event_id, reason)]
        while not self.closed:
            rows = bus.read_since(feed.hub.redis, feed.project_id, last_event_id, count=PAGE)
            frames = [f for f in (feed.frame_of(eid, ev) for eid, ev in rows) if f is not None]
            if rows:
                last_event_id = rows[-1][0]
                self.skip_until = bus.parse_id(last_event_id)
            if frames:
                yield frames
            if len(rows) < PAGE:
                return

    def take(self, kind: str) -> bytes:
        """Every pending frame of this client as one chunk (``kind``: "ws" or "sse")."""
        feed = self.feed
        head = feed.head
        if self.closed or self.cursor >= head:
            return b""
        start = self.cursor
        if self.skip_until is not None:
            frames, base = feed.frames, feed.base
            while start < head and frames[start - base].key <= self.skip_until:
                start += 1
            if start < head:
                self.skip_until = None
        self.cursor = head
        return feed.chunk(start, head, kind) if start < head else b""

    def wait(self, timeout: float) -> None:
        """Until the feed has something new (or ``timeout``)."""
        if not self.closed and self.cursor >= self.feed.head:
            self.feed.changed.wait(timeout)

    def overflow(self) -> None:
        self.close("overflow")
        if self.on_overflow is not None:
            try:
                self.on_overflow()
            except Exception:  # noqa: BLE001 - the socket may already be gone
                log.debug("closing an overflowed subscriber failed", exc_info=True)

    def close(self, reason: str = "closed") -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            self.feed.subs.discard(self)


def _ahead(last_event_id: str, state: bus.StreamState) -> bool:
    try:
        return bus.parse_id(last_event_id) > bus.parse_id(state.last_id)
    except ValueError:
        return False


class ProjectFeed:
    """The ring of ready frames of one project and the greenlet that fills it from Redis."""

    def __init__(self, hub: "Hub", project_id: str, position: str) -> None:
        self.hub = hub
        self.project_id = project_id
        self.key = bus.stream_key(project_id)
        self.position = position          # last stream id read into the ring
        self.frames: list[Frame] = []
        self.base = 0                     # ring index of frames[0]
        self.subs: set[Subscription] = set()
        self.changed = Event()
        self._chunks: dict[tuple[int, int, str], bytes] = {}
        self.greenlet: gevent.Greenlet | None = None
        self.redis_errors = 0

    @property
    def head(self) -> int:
        return self.base + len(self.frames)

    def subscribe(self, on_overflow: Callable[[], None] | None = None) -> Subscription:
        sub = Subscription(self, self.head, on_overflow)
        self.subs.add(sub)
        return sub

    def chunk(self, start: int, end: int, kind: str) -> bytes:
        key = (start, end, kind)
        data = self._chunks.get(key)
        if data is None:
            frames = self.frames[start - self.base:end - self.base]
            data = b"".join(f.ws for f in frames) if kind == "ws" else b"".join(f.sse for f in frames)
            self._chunks[key] = data
        return data

    def frame_of(self, event_id: str, event: Any) -> Frame | None:
        """The frame of one stored entry; entries of another project never pass (producer bug)."""
        if not isinstance(event, dict) or str(event.get("project_id")) != self.project_id:
            log.error("event of another project in a project stream",
                      extra={"stream": self.key, "event_id": event_id})
            return None
        return build_frame(event_id, event)

    def wake(self) -> None:
        ev, self.changed = self.changed, Event()
        ev.set()

    def append(self, frames: list[Frame], reset: bool = False) -> None:
        if not frames:
            return
        self.frames.extend(frames)
        self._chunks.clear()
        head, max_lag = self.head, self.hub.max_lag
        for sub in list(self.subs):
            if reset:
                sub.skip_until = None
            if head - sub.cursor > max_lag:
                log.info("realtime subscriber too slow, disconnected", extra={"project_id": self.project_id})
                sub.overflow()
        if len(self.frames) > max_lag:
            cut = len(self.frames) - max_lag
            del self.frames[:cut]
            self.base += cut
        self.wake()

    def start(self) -> None:
        self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        hub, r = self.hub, self.hub.redis
        backoff, idle_since, recovering = 0.2, None, False
        while True:
            if self.subs:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > LINGER_S:
                hub.feeds.pop(self.project_id, None)   # no yield between the check and the pop
                return
            try:
                if recovering:
                    self._check_continuity()
                    recovering = False
                resp = r.xread({self.key: self.position}, count=hub.batch_count, block=hub.block_ms)
                backoff = 0.2
            except redis.RedisError as exc:
                self.redis_errors += 1
                recovering = True
                log.warning("realtime reader: Redis unavailable, retrying",
                            extra={"project_id": self.project_id, "error": str(exc), "retry_in_s": backoff})
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:  # noqa: BLE001 - never let one bad entry kill the feed
                log.exception("realtime reader failed", extra={"project_id": self.project_id})
                gevent.sleep(1.0)
                continue
            if not resp:
                recovering = True   # an idle slice: cheap check that Redis did not lose the stream
                continue
            entries = resp[0][1]
            frames = []
            for eid, fields in entries:
                raw = fields.get("event")
                try:
                    frame = self.frame_of(eid, json.loads(raw) if raw else None)
                except ValueError:
                    log.error("undecodable realtime event", extra={"stream": self.key, "event_id": eid})
                    frame = None
                if frame is not None:
                    frames.append(frame)
            self.position = entries[-1][0]
            self.append(frames)
            if hub.batch_interval_s > 0:
                gevent.sleep(hub.batch_interval_s)  # let a burst accumulate: one chunk per tick

    def _check_continuity(self) -> None:
        """After an outage or an idle slice: if the stream went back in time, tell everyone.

        Everything now in the stream was written after the loss, so the feed rereads it from the
        start and the reset notice carries "0-0" as the resume point.
        """
        state = bus.stream_state(self.hub.redis, self.project_id)
        if bus.parse_id(state.last_id) < bus.parse_id(self.position):
            log.warning("realtime stream lost by Redis; subscribers get stream.reset",
                        extra={"project_id": self.project_id, "was": self.position, "now": state.last_id})
            self.position = "0-0"
            self.append([reset_frame(self.project_id, "0-0", "lost")], reset=True)


class Hub:
    """All feeds of this process (one per project with subscribers)."""

    def __init__(self, redis_client: redis.Redis, max_lag: int = 2000, block_ms: int = 2000,
                 batch_count: int = 1000, batch_interval_s: float = 0.01) -> None:
        self.redis = redis_client
        self.max_lag = max_lag
        self.block_ms = min(block_ms, 3000)    # below redis-py's socket timeouts
        # One read never exceeds a fraction of the allowed lag: a burst must not cut off clients that
        # are keeping up (their lag is counted in frames appended since their last write).
        self.batch_count = max(1, min(batch_count, max_lag // 4))
        self.batch_interval_s = batch_interval_s
        self.feeds: dict[str, ProjectFeed] = {}

    def subscribe(self, project_id: str, on_overflow: Callable[[], None] | None = None) -> Subscription:
        """Register a subscriber (live from the feed's read position); starts the feed if needed."""
        project_id = str(project_id)
        feed = self.feeds.get(project_id)
        if feed is None:
            position = bus.stream_state(self.redis, project_id).last_id   # yields: look again after
            feed = self.feeds.get(project_id)
            if feed is None:
                feed = ProjectFeed(self, project_id, position)
                self.feeds[project_id] = feed
                feed.start()
        return feed.subscribe(on_overflow)
