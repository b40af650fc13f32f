"""Recording retention: delete recordings older than each project's ``recording_retention_days``.

Runs as an RQ job (scheduled hourly by the worker's scheduler); the row keeps its metadata and gets
``recording_deleted_at`` so the Inbox can say the recording expired rather than pretend it never
existed.
"""
from __future__ import annotations

import datetime as dt
import logging

from core.config import get_settings
from core.storage import Storage, make_storage
from models.base import utcnow
from models.calls import Call
from models.saas import Project

log = logging.getLogger("voiceai.jobs.retention")


def purge_recordings(storage: Storage | None = None, now: dt.datetime | None = None) -> int:
    """Delete expired recordings of every project; returns how many were removed."""
    storage = storage or make_storage(get_settings())
    now = now or utcnow()
    if now.tzinfo is None:  # a naive "now" would be read in the database session's time zone
        now = now.replace(tzinfo=dt.timezone.utc)
    removed = 0
    for project in Project.select(Project.id, Project.recording_retention_days):
        cutoff = now - dt.timedelta(days=project.recording_retention_days)
        expired = (Call.select(Call.id, Call.recording_path)
                   .where((Call.project == project.id) & Call.recording_path.is_null(False)
                          & Call.recording_deleted_at.is_null() & (Call.started_at < cutoff)))
        for call in expired:
            try:
                storage.delete(call.recording_path)
            except Exception:  # noqa: BLE001 - try again on the next run
                log.exception("could not delete recording", extra={"call_id": str(call.id)})
                continue
            # A concurrent run (a job overrunning its period) may have marked it meanwhile.
            removed += (Call.update(recording_deleted_at=now)
                        .where((Call.id == call.id) & Call.recording_deleted_at.is_null()).execute())
    if removed:
        log.info("expired recordings deleted", extra={"count": removed})
    return removed


def purge_recordings_job() -> int:
    """RQ entry point (binds the database itself: job functions take no objects)."""
    from models.base import bind_database
    db = bind_database(get_settings().database_url)
    with db.connection_context():
        return purge_recordings()
