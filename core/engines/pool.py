"""A bounded pool of native threads for inference, usable from gevent code.

Model inference (STT, LLM, TTS) holds the GIL only partly and blocks for hundreds of milliseconds:
it must never run on the gevent loop. ``InferencePool.run(fn, ...)`` executes in a native thread and
lets the calling greenlet wait cooperatively; ``stream(gen_fn, ...)`` runs a generator (LLM tokens)
in a thread and yields its items to the greenlet as they come. ``saturated`` tells admission
control when new calls should be refused instead of degrading everyone.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class InferencePool:
    def __init__(self, size: int = 2, max_queue: int = 64) -> None:
        from gevent.threadpool import ThreadPool

        from core.engines.native import remember_main_hub
        remember_main_hub()
        self.size = size
        self.max_queue = max_queue
        self._pool = ThreadPool(size)
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def saturated(self) -> bool:
        return self._pending >= self.max_queue

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run in a native thread; the calling greenlet yields until the result is ready."""
        with self._lock:
            self._pending += 1
        try:
            return self._pool.apply(fn, args, kwargs)
        finally:
            with self._lock:
                self._pending -= 1

    def stream(self, gen_fn: Callable[..., Iterator[T]], *args: Any, cancel: threading.Event | None = None,
               **kwargs: Any) -> Iterator[T]:
        """Iterate a generator running in a native thread (items cross via a gevent-safe queue).

        Setting ``cancel`` stops the producer at its next item (barge-in drops pending generation).
        """
        import collections

        import gevent
        import gevent.event
        hub = gevent.get_hub()
        items: collections.deque = collections.deque()  # append/popleft are atomic across threads
        wake = hub.loop.async_()
        waiter = gevent.event.Event()
        wake.start(waiter.set)
        stop = threading.Event()  # the consumer went away: stop producing (not the caller's cancel)

        def produce() -> None:
            try:
                for item in gen_fn(*args, **kwargs):
                    if stop.is_set() or (cancel is not None and cancel.is_set()):
                        break
                    items.append((item, None))
                    wake.send()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                items.append((_DONE, exc))
                wake.send()
                return
            items.append((_DONE, None))
            wake.send()

        with self._lock:
            self._pending += 1
        self._pool.spawn(produce)
        try:
            while True:
                while not items:
                    waiter.clear()
                    if not items:
                        waiter.wait(timeout=0.5)
                item, exc = items.popleft()
                if item is _DONE:
                    if exc is not None:
                        raise exc
                    return
                yield item
        finally:
            stop.set()
            wake.stop()
            with self._lock:
                self._pending -= 1
