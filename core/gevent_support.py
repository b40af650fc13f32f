"""Cooperative psycopg2 under gevent: without this a slow query blocks every greenlet."""
from __future__ import annotations

import psycopg2
from psycopg2 import extensions


def _gevent_wait_callback(conn, timeout=None):  # pragma: no cover - exercised by the web server
    from gevent.socket import wait_read, wait_write
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            break
        if state == extensions.POLL_READ:
            wait_read(conn.fileno(), timeout=timeout)
        elif state == extensions.POLL_WRITE:
            wait_write(conn.fileno(), timeout=timeout)
        else:
            raise psycopg2.OperationalError(f"bad poll state: {state!r}")


def patch_psycopg2() -> None:
    """Install the gevent wait callback (call once, after monkey.patch_all())."""
    extensions.set_wait_callback(_gevent_wait_callback)
