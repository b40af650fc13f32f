"""Recording storage (local directory and S3 over HTTP), the retention purge and the periodic scheduler.

Real components only: moto's standalone S3 server spoken to over HTTP by boto3 (tests/fake_s3.py),
the test PostgreSQL database, the test Redis DB and an in-process RQ burst worker.
"""
from __future__ import annotations

import datetime as dt
import random
import struct
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis as redis_lib
from botocore.exceptions import ClientError

from core.config import get_settings, set_settings
from core.storage import LocalStorage, S3Storage, make_storage
from tests.fake_s3 import FakeS3

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.timezone.utc)


def wav_bytes(n_samples: int, seed: int = 7) -> bytes:
    """A 16-bit mono 8 kHz WAV with noise samples: binary, every byte value present."""
    data = random.Random(seed).randbytes(n_samples * 2)
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", len(data))
    return header + data


@pytest.fixture(scope="session")
def fake_s3():
    server = FakeS3().start()
    yield server
    server.stop()


@pytest.fixture()
def s3_settings(fake_s3, test_settings):
    return fake_s3.settings(test_settings, fake_s3.create_bucket())


@pytest.fixture()
def payload_file(tmp_path) -> tuple[Path, bytes]:
    payload = wav_bytes(512 * 1024 + 37)  # ~1 MiB, not a multiple of the chunk size
    path = tmp_path / "call.wav"
    path.write_bytes(payload)
    return path, payload


def local_storage(base, root: Path) -> LocalStorage:
    storage = make_storage(replace(base, storage_backend="local", storage_dir=str(root)))
    assert isinstance(storage, LocalStorage)
    return storage


def parts_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


# --- storage backends --------------------------------------------------------------------------------

def _round_trip(storage, key: str, path: Path, payload: bytes) -> None:
    assert storage.size(key) is None
    assert storage.put_file(key, str(path)) == len(payload)
    assert storage.size(key) == len(payload)
    chunks = list(storage.iter_chunks(key, chunk=65536))
    assert len(chunks) == len(payload) // 65536 + 1 and all(len(c) <= 65536 for c in chunks)
    assert b"".join(chunks) == payload
    with storage.open(key) as fh:
        assert fh.read(4) == b"RIFF"
        assert fh.read() == payload[4:]
    storage.delete(key)
    assert storage.size(key) is None
    storage.delete(key)  # deleting a missing object is not an error


def test_s3_backend_round_trip_over_http(fake_s3, s3_settings, payload_file):
    storage = make_storage(s3_settings)
    assert isinstance(storage, S3Storage) and storage.bucket == s3_settings.s3_bucket
    path, payload = payload_file
    key = f"recordings/{uuid.uuid4()}/2026/03/{uuid.uuid4()}.wav"
    _round_trip(storage, key, path, payload)

    # what the S3 server holds is the exact object under the normalised key
    storage.put_file("/" + key.replace("/", "//"), str(path))
    raw = fake_s3.client()
    listed = raw.list_objects_v2(Bucket=s3_settings.s3_bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [(key, len(payload))]
    assert raw.get_object(Bucket=s3_settings.s3_bucket, Key=key)["Body"].read() == payload
    assert storage.size(key + ".missing") is None
    assert storage.size(f"recordings/{uuid.uuid4()}/nothing.wav") is None


def test_s3_size_reports_only_missing_objects_as_none(fake_s3, s3_settings, payload_file):
    storage = make_storage(s3_settings)
    storage.put_file("recordings/p/a.wav", str(payload_file[0]))
    fake_s3.require_auth(True)  # the server now refuses our (unknown) access key: 403, not 404
    try:
        with pytest.raises(ClientError) as exc:
            storage.size("recordings/p/a.wav")
        assert exc.value.response["Error"]["Code"] in ("403", "InvalidAccessKeyId", "AccessDenied")
    finally:
        fake_s3.require_auth(False)
    assert storage.size("recordings/p/a.wav") == len(payload_file[1])


def test_s3_storage_made_from_many_threads(s3_settings, payload_file):
    """The web server builds a storage per request from concurrent greenlets/threads."""
    path, payload = payload_file
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            storage = make_storage(s3_settings)
            key = f"recordings/p/{i}.wav"
            storage.put_file(key, str(path))
            assert storage.size(key) == len(payload)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_local_backend_round_trip_and_atomic_write(test_settings, tmp_path, payload_file):
    root = tmp_path / "storage"
    storage = local_storage(test_settings, root)
    path, payload = payload_file
    key = "recordings/p1/2026/03/c1.wav"
    _round_trip(storage, key, path, payload)

    storage.put_file(key, str(path))
    assert (root / key).read_bytes() == payload and not parts_under(root)
    # overwrite replaces the whole object
    small = tmp_path / "small.wav"
    small.write_bytes(wav_bytes(100, seed=1))
    assert storage.put_file(key, str(small)) == small.stat().st_size
    assert (root / key).read_bytes() == small.read_bytes() and not parts_under(root)
    # a copy that fails half-way (reading /proc/self/mem at offset 0 fails with EIO once the
    # destination exists) leaves the old object intact and no temporary file behind
    with pytest.raises(OSError):
        storage.put_file(key, "/proc/self/mem")
    assert (root / key).read_bytes() == small.read_bytes() and not parts_under(root)
    with pytest.raises(FileNotFoundError):
        storage.put_file(key, str(tmp_path / "no-such-file.wav"))
    assert not parts_under(root)
    # a "directory" is not an object
    assert storage.size("recordings/p1") is None and storage.size("recordings") is None


def test_local_backend_concurrent_writers_of_one_key(test_settings, tmp_path):
    """RECORD_STOP and hangup may both store the same call's recording at once."""
    root = tmp_path / "storage"
    storage = local_storage(test_settings, root)
    sources = []
    for i in range(8):
        p = tmp_path / f"src{i}.wav"
        p.write_bytes(wav_bytes(256 * 1024, seed=i))
        sources.append(p)
    contents = {p.read_bytes() for p in sources}
    for _ in range(5):  # a race, so a few rounds
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(sources))

        def write(p: Path) -> None:
            try:
                barrier.wait()
                storage.put_file("recordings/p/c.wav", str(p))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(p,)) for p in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert (root / "recordings/p/c.wav").read_bytes() in contents  # one whole file, never a mix
        assert not parts_under(root)


BAD_KEYS = ["", "/", "//", ".", "..", "../x", "recordings/../../etc/passwd", "recordings/./x.wav", "a/.."]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_bad_keys_rejected_by_both_backends(backend, test_settings, s3_settings, tmp_path, payload_file):
    root = tmp_path / "storage"
    storage = local_storage(test_settings, root) if backend == "local" else make_storage(s3_settings)
    outside = tmp_path / "x"
    for key in BAD_KEYS:
        with pytest.raises(ValueError):
            storage.put_file(key, str(payload_file[0]))
        with pytest.raises(ValueError):
            storage.open(key)
        with pytest.raises(ValueError):
            storage.size(key)
        with pytest.raises(ValueError):
            storage.delete(key)
        with pytest.raises(ValueError):
            next(iter(storage.iter_chunks(key)))
    assert not outside.exists() and (not root.exists() or not any(root.rglob("*")))
    if backend == "s3":
        assert "Contents" not in storage.client.list_objects_v2(Bucket=storage.bucket)


def test_make_storage_rejects_unknown_backend(test_settings):
    with pytest.raises(ValueError, match="VOICEAI_STORAGE_BACKEND"):
        make_storage(replace(test_settings, storage_backend="ftp"))


# --- retention ---------------------------------------------------------------------------------------

def _project(org, name: str, days: int):
    from core.seed import create_project
    from models.saas import Project
    project = create_project(org, name)
    Project.update(recording_retention_days=days).where(Project.id == project.id).execute()
    return project


def _call(project, started_at: dt.datetime, key: str | None, deleted_at: dt.datetime | None = None):
    from models.calls import Call
    return Call.create(project=project.id, direction="inbound", from_number="79160000001",
                       to_number="74951234567", trace_id=uuid.uuid4().hex, started_at=started_at,
                       ended_at=started_at + dt.timedelta(minutes=3), state="ended", outcome="completed",
                       recording_path=key, recording_size=None if key is None else 1000,
                       recording_deleted_at=deleted_at)


def _key(project, call_no: str, when: dt.datetime) -> str:
    return f"recordings/{project.id}/{when:%Y}/{when:%m}/{call_no}.wav"


class Scenario:
    """Two projects (retention 1 and 90 days) and calls around both cut-offs, stored in ``storage``."""

    def __init__(self, storage, src: Path, now: dt.datetime = NOW, slug: str = "ret") -> None:
        from core.seed import create_org
        org = create_org("Retention " + slug, slug + "-" + uuid.uuid4().hex[:6])
        self.short, self.long = _project(org, "Короткое", 1), _project(org, "Долгое", 90)
        self.storage = storage
        day = dt.timedelta(days=1)
        plan = {  # name: (project, started, stored?, expected to expire)
            "short_old": (self.short, now - 2 * day, True, True),
            "short_just_expired": (self.short, now - day - dt.timedelta(seconds=1), True, True),
            "short_fresh": (self.short, now - dt.timedelta(hours=2), True, False),
            "short_at_cutoff": (self.short, now - day + dt.timedelta(minutes=5), True, False),
            "short_object_missing": (self.short, now - 3 * day, False, True),
            "long_month": (self.long, now - 30 * day, True, False),
            "long_old": (self.long, now - 100 * day, True, True),
            "long_old_no_recording": (self.long, now - 200 * day, None, False),
        }
        self.calls, self.keys, self.expected = {}, {}, set()
        for name, (project, started, stored, expires) in plan.items():
            key = None if stored is None else _key(project, name, started)
            if stored:
                storage.put_file(key, str(src))
            self.calls[name] = _call(project, started, key)
            self.keys[name] = key
            if expires:
                self.expected.add(name)
        # deleted by an earlier run: must not be touched again
        earlier = now - dt.timedelta(days=5)
        self.calls["already_deleted"] = _call(self.short, now - 10 * day, _key(self.short, "already", now),
                                              deleted_at=earlier)
        self.keys["already_deleted"] = _key(self.short, "already", now)
        self.earlier = earlier

    def rows(self) -> dict:
        from models.calls import Call
        return {name: Call.get(Call.id == c.id) for name, c in self.calls.items()}

    def assert_purged(self, at: dt.datetime, not_yet: frozenset = frozenset()) -> None:
        rows = self.rows()
        for name, row in rows.items():
            key = self.keys[name]
            if name == "already_deleted":
                assert row.recording_deleted_at == self.earlier, name
            elif name in self.expected and name not in not_yet:
                assert row.recording_deleted_at == at, name
                assert self.storage.size(key) is None, name
            else:
                assert row.recording_deleted_at is None, name
                if key and name != "short_object_missing":
                    assert self.storage.size(key) is not None, name
            assert row.recording_path == key, name  # the row keeps its metadata


@pytest.fixture(params=["local", "s3"])
def backend_storage(request, test_settings, tmp_path):
    if request.param == "local":
        return local_storage(test_settings, tmp_path / "storage")
    fake_s3 = request.getfixturevalue("fake_s3")
    return make_storage(fake_s3.settings(test_settings, fake_s3.create_bucket()))


def test_purge_deletes_only_expired_recordings(db, backend_storage, payload_file):
    from jobs.retention import purge_recordings
    sc = Scenario(backend_storage, payload_file[0])
    assert purge_recordings(backend_storage, now=NOW) == len(sc.expected) == 4
    sc.assert_purged(NOW)
    # nothing left to do: the second run deletes nothing and changes no row
    assert purge_recordings(backend_storage, now=NOW + dt.timedelta(minutes=1)) == 0
    sc.assert_purged(NOW)
    # a month later the 90-day project's month-old call is still kept, the 1-day project's are all gone
    later = NOW + dt.timedelta(days=30)
    assert purge_recordings(backend_storage, now=later) == 2
    rows = sc.rows()
    assert rows["short_fresh"].recording_deleted_at == later
    assert rows["short_at_cutoff"].recording_deleted_at == later
    assert rows["long_month"].recording_deleted_at is None
    assert backend_storage.size(sc.keys["long_month"]) is not None


def test_purge_accepts_naive_utc_now(db, tmp_path, test_settings, payload_file):
    from jobs.retention import purge_recordings
    storage = local_storage(test_settings, tmp_path / "storage")
    sc = Scenario(storage, payload_file[0])
    # PostgreSQL reads a naive timestamp in the session's time zone, which on a customer's server
    # need not be UTC
    db.execute_sql("SET TIME ZONE 'Europe/Moscow'")
    try:
        assert purge_recordings(storage, now=NOW.replace(tzinfo=None)) == 4
        sc.assert_purged(NOW)
    finally:
        db.execute_sql("RESET TIME ZONE")


def test_purge_skips_a_recording_it_cannot_delete_and_retries_later(db, tmp_path, test_settings, payload_file):
    """A storage failure on one key leaves that row for the next run and does not stop the others."""
    from jobs.retention import purge_recordings
    root = tmp_path / "storage"
    storage = local_storage(test_settings, root)
    sc = Scenario(storage, payload_file[0])
    # the stored object of one expired call is a directory: unlink() fails with an OSError
    blocked = root / sc.keys["long_old"]
    blocked.unlink()
    blocked.mkdir()
    (blocked / "inside").write_bytes(b"x")
    assert purge_recordings(storage, now=NOW) == 3
    rows = sc.rows()
    assert rows["long_old"].recording_deleted_at is None and blocked.is_dir()
    for name in sc.expected - {"long_old"}:
        assert rows[name].recording_deleted_at == NOW, name
    # once the storage works again the next run finishes the job
    (blocked / "inside").unlink()
    blocked.rmdir()
    retry = NOW + dt.timedelta(minutes=1)
    assert purge_recordings(storage, now=retry) == 1
    assert sc.rows()["long_old"].recording_deleted_at == retry


def test_purged_recording_is_no_longer_served_by_the_api(db, fake_s3, s3_settings, app_for, payload_file):
    """GET /api/calls/{id}/recording streams from S3 until the purge, then answers 404."""
    from jobs.retention import purge_recordings
    storage = make_storage(s3_settings)
    sc = Scenario(storage, payload_file[0], slug="api")
    api = app_for(s3_settings)
    owner = api.login_as("owner", {"org": sc.short.org, "project": sc.short})
    old, fresh = sc.calls["short_old"], sc.calls["short_fresh"]
    for call in (old, fresh):
        resp = owner.get(f"/api/calls/{call.id}/recording")
        assert resp.status_code == 200 and resp.mimetype == "audio/wav"
        assert resp.data == payload_file[1] and resp.headers["Content-Length"] == str(len(payload_file[1]))
    purge_recordings(storage, now=NOW)
    assert owner.get(f"/api/calls/{old.id}/recording").status_code == 404
    assert owner.get(f"/api/calls/{old.id}").get_json()["has_recording"] is False
    assert owner.get(f"/api/calls/{fresh.id}/recording").data == payload_file[1]
    assert owner.get(f"/api/calls/{fresh.id}").get_json()["has_recording"] is True


@pytest.fixture()
def rq_redis(redis_client, test_settings):
    """A connection as the worker opens it (RQ needs undecoded responses); the DB is flushed by redis_client."""
    conn = redis_lib.Redis.from_url(test_settings.redis_url)
    yield conn
    conn.close()


@pytest.fixture()
def job_settings(db, test_settings):
    """Install settings for code that reads get_settings() (the RQ job), restoring the session's after."""
    from models.base import database
    installed = []

    def install(settings):
        installed.append(settings)
        set_settings(settings)
        return settings

    yield install
    set_settings(test_settings)
    database.initialize(db)  # the job binds the model proxy to a handle of its own


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_purge_job_runs_in_an_rq_worker(backend, db, rq_redis, job_settings, test_settings, tmp_path,
                                        payload_file, request):
    from rq import Queue, SimpleWorker
    from rq.job import JobStatus

    from jobs.scheduler import tick
    if backend == "local":
        settings = replace(test_settings, storage_backend="local", storage_dir=str(tmp_path / "storage"))
    else:
        fake_s3 = request.getfixturevalue("fake_s3")
        settings = fake_s3.settings(test_settings, fake_s3.create_bucket())
    job_settings(settings)
    assert get_settings() is settings
    # the job takes no arguments and purges as of the real clock
    now = dt.datetime.now(dt.timezone.utc)
    sc = Scenario(make_storage(settings), payload_file[0], now=now, slug="rq-" + backend)

    # the scheduler enqueues the job for this hour, the worker runs it
    assert tick(rq_redis, now=time.time()) == ["purge_recordings"]
    queue = Queue("default", connection=rq_redis)
    (job_id,) = queue.job_ids
    assert SimpleWorker([queue], connection=rq_redis).work(burst=True)
    job = queue.fetch_job(job_id)
    assert job.get_status() == JobStatus.FINISHED, job.latest_result().exc_string
    assert job.return_value() == 4

    from models.base import database
    database.initialize(db)
    rows = sc.rows()
    storage = make_storage(settings)
    for name in sc.expected:
        assert rows[name].recording_deleted_at is not None and storage.size(sc.keys[name]) is None, name
        assert now <= rows[name].recording_deleted_at <= dt.datetime.now(dt.timezone.utc)
    for name in ("short_fresh", "short_at_cutoff", "long_month"):
        assert rows[name].recording_deleted_at is None and storage.size(sc.keys[name]) is not None, name

    # run it again directly through RQ: nothing is left to delete
    again = queue.enqueue("jobs.retention.purge_recordings_job")
    SimpleWorker([queue], connection=rq_redis).work(burst=True)
    again = queue.fetch_job(again.id)
    assert again.get_status() == JobStatus.FINISHED and again.return_value() == 0


# --- scheduler ---------------------------------------------------------------------------------------

HOUR = 3600
T0 = 1_800_000_000.0 + 17  # inside hour period 500000


def _tick_from_workers(test_settings, now: float, workers: int = 8, periodic=None) -> list[list[str]]:
    """``tick`` from several "workers" at once, each with its own Redis connection."""
    from jobs.scheduler import PERIODIC, tick
    results: list[list[str]] = [[] for _ in range(workers)]
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        conn = redis_lib.Redis.from_url(test_settings.redis_url)
        try:
            barrier.wait()
            results[i] = tick(conn, now=now, periodic=PERIODIC if periodic is None else periodic)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_tick_enqueues_each_periodic_job_once_per_period(rq_redis, test_settings):
    from rq import Queue

    from jobs.scheduler import tick
    period = int(T0 // HOUR)
    results = _tick_from_workers(test_settings, T0)
    assert sorted(results, key=len) == [[]] * 7 + [["purge_recordings"]]
    queue = Queue("default", connection=rq_redis)
    assert queue.job_ids == [f"purge_recordings-{period}"]
    job = queue.fetch_job(f"purge_recordings-{period}")
    assert job.func_name == "jobs.retention.purge_recordings_job" and job.timeout == HOUR
    assert 0 < rq_redis.ttl(f"sched:purge_recordings:{period}") <= 2 * HOUR

    # the same worker again, and later in the same period: nothing new
    assert tick(rq_redis, now=T0) == []
    assert tick(rq_redis, now=(period + 1) * HOUR - 0.001) == []
    assert len(queue) == 1

    # the next period: once again, with the next deterministic id
    results = _tick_from_workers(test_settings, (period + 1) * HOUR)
    assert sum(len(r) for r in results) == 1
    assert queue.job_ids == [f"purge_recordings-{period}", f"purge_recordings-{period + 1}"]


def test_tick_with_several_periodic_jobs(rq_redis, test_settings):
    from rq import Queue

    from jobs.scheduler import Periodic, tick
    periodic = [Periodic("every_minute", "jobs.retention.purge_recordings_job", 60, queue="default"),
                Periodic("hourly", "jobs.retention.purge_recordings_job", HOUR, queue="messages")]
    start = int(T0 // HOUR) * HOUR  # the top of an hour
    for second in range(0, 180, 7):  # three minutes of ticks every 7 seconds, from 4 workers each time
        _tick_from_workers(test_settings, start + second, workers=4, periodic=periodic)
    minute = int(start // 60)
    assert Queue("default", connection=rq_redis).job_ids == [f"every_minute-{minute + i}" for i in range(3)]
    assert Queue("messages", connection=rq_redis).job_ids == [f"hourly-{int(start // HOUR)}"]
    assert tick(rq_redis, now=start + 180, periodic=periodic) == ["every_minute"]


def test_tick_releases_the_period_when_enqueueing_fails(rq_redis):
    from rq import Queue

    from jobs.scheduler import Periodic, tick
    # RQ refuses this job id ("bad name-<period>" has a space): enqueue raises
    broken = Periodic("bad name", "jobs.retention.purge_recordings_job", HOUR)
    fine = Periodic("fine", "jobs.retention.purge_recordings_job", HOUR)
    period = int(T0 // HOUR)
    assert tick(rq_redis, now=T0, periodic=[broken, fine]) == ["fine"]
    assert not rq_redis.exists(f"sched:bad name:{period}")  # another tick may try again
    assert rq_redis.exists(f"sched:fine:{period}")
    assert Queue("default", connection=rq_redis).job_ids == [f"fine-{period}"]


def test_background_scheduler_thread(rq_redis):
    """The worker's scheduler thread ticks on the real clock until told to stop."""
    from rq import Queue

    from jobs.scheduler import start_background
    stop = threading.Event()
    first_hour = int(time.time() // HOUR)
    thread = start_background(rq_redis, interval_s=0.05, stop=stop.is_set)
    try:
        queue = Queue("default", connection=rq_redis)
        deadline = time.time() + 10
        while not queue.job_ids and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # several more ticks
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    hours = range(first_hour, int(time.time() // HOUR) + 1)  # the hour may turn during the test
    assert queue.job_ids == [f"purge_recordings-{h}" for h in hours]
