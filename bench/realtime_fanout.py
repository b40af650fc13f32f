"""Realtime fan-out: delivery latency and loss with many WebSocket subscribers on one project.

Starts a real ``voiceai-web`` (gevent) on a free port against a throw-away database, opens N
WebSocket subscribers (token from ``GET /api/realtime/token``, handshake by websocket-client, frames
read straight off the socket) spread over a few client processes so the client side is not the
bottleneck, then publishes R events/s for D seconds into the project's stream through
``core.events.bus.publish``. Each event carries its publish time; each subscriber records the
receive time. A subscriber the gateway cuts off reconnects with its last event id, as the cabinet
does. Prints p50/p95/p99 of publish-to-receive latency over all (subscriber, event) pairs and the
events lost (expected - received, summed over subscribers); the last line is one JSON object.

Run: ``.venv/bin/python bench/realtime_fanout.py [--subscribers 200] [--rate 500] [--duration 30]``
(needs PostgreSQL and Redis as ``scripts/run`` sets them up; honours VOICEAI_DATABASE_URL/REDIS_URL).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import socket
import struct
import subprocess
import sys
import time
import uuid
from array import array
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(values, p: float) -> float:
    if not len(values):
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ------------------------------------------------------------------ client processes

class Sub:
    """One subscriber: a WebSocket whose frames are parsed in bulk from the raw socket."""

    def __init__(self, base: str, access: str, project_id: str, total: int) -> None:
        self.base, self.access, self.project_id = base, access, project_id
        self.seen = bytearray(total)
        self.count = 0
        self.last_id: str | None = None
        self.buf = b""
        self.reconnects = 0
        self.ws = None
        self.sock: socket.socket | None = None

    def connect(self) -> socket.socket:
        import requests
        import websocket
        tok = requests.get(self.base + "/api/realtime/token", timeout=30,
                           headers={"Authorization": f"Bearer {self.access}", "X-Project-Id": self.project_id}).json()
        url = self.base.replace("http://", "ws://") + tok["stream_url"]
        if self.last_id:
            url += f"&last_event_id={self.last_id}"
        self.ws = websocket.create_connection(url, timeout=30, skip_utf8_validation=True)
        self.sock = self.ws.sock
        self.sock.setblocking(False)
        self.buf = b""
        return self.sock

    def feed(self, data: bytes, now: float, lat: array) -> None:
        buf = self.buf + data
        i, n_buf = 0, len(buf)
        while n_buf - i >= 2:
            op, n = buf[i] & 0x0F, buf[i + 1] & 0x7F
            h = 2
            if n == 126:
                if n_buf - i < 4:
                    break
                n, h = struct.unpack_from("!H", buf, i + 2)[0], 4
            elif n == 127:
                if n_buf - i < 10:
                    break
                n, h = struct.unpack_from("!Q", buf, i + 2)[0], 10
            if n_buf - i - h < n:
                break
            if op == 1:
                self._event(buf[i + h:i + h + n], now, lat)
            i += h + n
        self.buf = buf[i:]

    def _event(self, frame: bytes, now: float, lat: array) -> None:
        # Frames are compact JSON; pick the three fields without decoding the whole event.
        k = frame.find(b'"bench_seq":')
        if k < 0:
            return   # a stream.reset notice (none expected here)
        seq = int(frame[k + 12:frame.find(b",", k)])
        k = frame.find(b'"bench_t":')
        end = k + 10
        while frame[end] not in b",}":
            end += 1
        sent = float(frame[k + 10:end])
        k = frame.find(b'"id":"') + 6
        self.last_id = frame[k:frame.find(b'"', k)].decode()
        if not self.seen[seq]:
            self.seen[seq] = 1
            self.count += 1
            lat.append((now - sent) * 1000.0)


def client_main(idx: int, n: int, base: str, access: str, project_id: str, total: int,
                ready: mp.Queue, results: mp.Queue, done: mp.Event) -> None:
    subs = [Sub(base, access, project_id, total) for _ in range(n)]
    sel = selectors.DefaultSelector()
    for s in subs:
        sel.register(s.connect(), selectors.EVENT_READ, s)
    ready.put(idx)
    lat = array("d")
    finished_at = None
    while True:
        if done.is_set() and finished_at is None:
            finished_at = time.monotonic()
        if all(s.count >= total for s in subs) or (finished_at and time.monotonic() - finished_at > 20):
            break
        for key, _ in sel.select(timeout=0.2):
            s: Sub = key.data
            try:
                data = s.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            now = time.time()
            if data:
                s.feed(data, now, lat)
                continue
            sel.unregister(s.sock)   # cut off (too slow) or closed: resume from the last id
            s.sock.close()
            s.reconnects += 1
            sel.register(s.connect(), selectors.EVENT_READ, s)
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    results.put({"idx": idx, "lat": lat.tobytes(), "counts": [s.count for s in subs],
                 "reconnects": sum(s.reconnects for s in subs), "cpu_s": ru.ru_utime + ru.ru_stime})


# ------------------------------------------------------------------ set-up

def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _admin_conn(url: str):
    import psycopg2
    p = urlparse(url)
    conn = psycopg2.connect(host=p.hostname, port=p.port or 5432, user=p.username or "postgres",
                            password=p.password, dbname="postgres")
    conn.autocommit = True
    return conn


def make_database(base_url: str) -> str:
    p = urlparse(base_url)
    name = f"voiceai_bench_{os.getpid()}"
    with _admin_conn(base_url).cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    return p._replace(path="/" + name).geturl()


def drop_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    with _admin_conn(url).cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s AND pid<>pg_backend_pid()",
                    (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--rate", type=int, default=500, help="events per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of publishing")
    ap.add_argument("--procs", type=int, default=4, help="client processes")
    args = ap.parse_args()

    from core.config import Settings, set_settings
    from core.security.crypto import generate_key, reset_keyring
    env_settings = Settings.from_env()
    db_url = make_database(env_settings.database_url)
    settings = Settings.from_env(overrides={"database_url": db_url, "secret_key": uuid.uuid4().hex * 2,
                                            "encryption_keys": generate_key()})
    set_settings(settings)
    reset_keyring()
    web = None
    try:
        from core.seed import create_org, create_project, create_user, sync_roles
        from models.base import bind_database
        from models.migrate import migrate
        db = bind_database(db_url)
        migrate(db, log=lambda *_: None)
        with db.connection_context():
            sync_roles()
            org = create_org("Bench", "bench")
            project = create_project(org, "Нагрузка")
            create_user(org, "operator@bench.test", "Passw0rd-operator", "operator")
        db.close()
        project_id = str(project.id)

        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEAI_")}
        env.update({"VOICEAI_DATABASE_URL": db_url, "VOICEAI_REDIS_URL": settings.redis_url,
                    "VOICEAI_SECRET_KEY": settings.secret_key, "VOICEAI_ENCRYPTION_KEYS": settings.encryption_keys,
                    "VOICEAI_HTTP_HOST": "127.0.0.1", "VOICEAI_HTTP_PORT": str(port), "VOICEAI_LOG_LEVEL": "WARNING",
                    "VOICEAI_API_RATE_LIMIT": "1000000"})
        web = subprocess.Popen([str(Path(sys.executable).parent / "voiceai-web")], env=env, cwd=str(ROOT))
        base = f"http://127.0.0.1:{port}"
        import requests
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("web server did not start")
            time.sleep(0.2)
        access = requests.post(base + "/api/auth/login", timeout=10, json={
            "email": "operator@bench.test", "password": "Passw0rd-operator"}).json()["access_token"]

        total = int(args.rate * args.duration)
        ctx = mp.get_context("spawn")
        ready, results, done = ctx.Queue(), ctx.Queue(), ctx.Event()
        per = [args.subscribers // args.procs + (1 if i < args.subscribers % args.procs else 0)
               for i in range(args.procs)]
        procs = [ctx.Process(target=client_main, args=(i, n, base, access, project_id, total, ready, results, done))
                 for i, n in enumerate(per) if n]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        print(f"{args.subscribers} subscribers connected in {len(procs)} client processes; "
              f"publishing {args.rate}/s for {args.duration:.0f} s", flush=True)

        import redis
        from core.events.bus import publish, stream_key
        from core.events.schema import make_event
        r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        call_id = uuid.uuid4()
        web_cpu0, pub_cpu0 = _proc_cpu_s(web.pid), sum(os.times()[:2])
        t0 = time.monotonic()
        behind = 0
        for seq in range(total):
            due = t0 + seq / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.05:
                behind += 1
            publish(r, make_event("call.state_changed", project_id, "call", call_id, {
                "human_status": "Агент отвечает", "state": "in_progress", "direction": "inbound",
                "from_number": "+79990001122", "to_number": "+74950001122", "cost_so_far": 0.12,
                "bench_seq": seq, "bench_t": time.time()}))
        publish_s = time.monotonic() - t0
        pub_cpu = sum(os.times()[:2]) - pub_cpu0
        done.set()
        outs = [results.get(timeout=120) for _ in procs]
        web_cpu = _proc_cpu_s(web.pid) - web_cpu0
        for p in procs:
            p.join(timeout=30)
        r.delete(stream_key(project_id))

        lat = array("d")
        counts, reconnects = [], 0
        for o in outs:
            chunk = array("d")
            chunk.frombytes(o["lat"])
            lat.extend(chunk)
            counts += o["counts"]
            reconnects += o["reconnects"]
        lost = sum(total - c for c in counts)
        summary = {"p50_ms": round(pct(lat, 50), 1), "p95_ms": round(pct(lat, 95), 1),
                   "p99_ms": round(pct(lat, 99), 1), "lost": lost, "subscribers": len(counts)}
        print(f"published {total} events in {publish_s:.1f} s ({total / publish_s:.0f}/s; {behind} sent >50 ms late)")
        print(f"deliveries {len(lat)} of {total * len(counts)} expected; reconnects {reconnects}")
        print(f"latency ms: p50 {summary['p50_ms']}  p95 {summary['p95_ms']}  p99 {summary['p99_ms']}  "
              f"max {round(max(lat), 1) if lat else 'n/a'}")
        print(f"CPU seconds while publishing and draining: web {web_cpu:.1f}, clients "
              f"{sum(o['cpu_s'] for o in outs):.1f} (incl. connecting), publisher {pub_cpu:.1f}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"lost events: {lost}")
        print(json.dumps(summary))
        return 0 if lost == 0 else 1
    finally:
        if web is not None:
            web.terminate()
            try:
                web.wait(timeout=15)
            except subprocess.TimeoutExpired:
                web.kill()
        drop_database(db_url)


if __name__ == "__main__":
    raise SystemExit(main())
