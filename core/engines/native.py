"""Starting programs from the inference pool's native threads in a gevent process.

Engines run in native threads. In a monkey-patched process ``subprocess`` belongs to gevent, whose
child watchers exist only on the main loop, so starting a program from a pool thread fails
("child watchers are only available on the default loop"). These helpers hand the start to the
main loop and block the calling native thread until it is done; outside gevent (tests, CLI) they
are the plain stdlib calls.
"""
from __future__ import annotations

import subprocess
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")
_main_hub: Any = None


def remember_main_hub() -> None:
    """Call once from the main thread of a gevent process (the inference pool does)."""
    global _main_hub
    import gevent
    if threading.current_thread() is threading.main_thread():
        _main_hub = gevent.get_hub()


def _needs_trampoline() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return (monkey.is_module_patched("subprocess") and _main_hub is not None
            and threading.current_thread() is not threading.main_thread())


def on_main_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in a greenlet of the main loop; the calling native thread waits for its result."""
    import gevent
    from gevent import monkey
    lock = monkey.get_original("_thread", "allocate_lock")()
    lock.acquire()
    box: dict[str, Any] = {}

    def job() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            box["error"] = exc
        finally:
            lock.release()

    _main_hub.loop.run_callback_threadsafe(lambda: gevent.spawn(job))
    lock.acquire()
    if "error" in box:
        raise box["error"]
    return box["value"]


def popen(args: Any, **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` that works from any thread of a gevent process."""
    if _needs_trampoline():
        return on_main_loop(subprocess.Popen, args, **kwargs)
    return subprocess.Popen(args, **kwargs)


def run(args: Any, timeout: float | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` with captured output, from any thread of a gevent process."""
    kwargs.setdefault("capture_output", True)
    if _needs_trampoline():
        return on_main_loop(subprocess.run, args, timeout=timeout, **kwargs)
    return subprocess.run(args, timeout=timeout, **kwargs)


def tcp_connect(host: str, port: int, timeout: float | None = None) -> Any:
    """A blocking TCP client socket that any native thread may use.

    gevent's sockets belong to the hub of the thread that made them; a connection kept across
    calls (the Festival server's) is used by whichever pool thread runs next, so it must be a
    plain OS socket.
    """
    import socket as _socket
    cls = _socket.socket
    try:
        from gevent import monkey
        if monkey.is_module_patched("socket"):
            cls = monkey.get_original("socket", "socket")
    except ImportError:
        pass
    sock = cls(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
