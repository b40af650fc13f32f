"""Call recording: started on answer when the number asks for it, moved to storage when it stops.

FreeSWITCH writes the WAV (``uuid_record``) into VOICEAI_FS_RECORDINGS_DIR; when the recording
stops (or the call ends) esl_app copies it to storage under ``recordings/<project>/<yyyy>/<mm>/
<call_id>.wav`` off the gevent loop, records the key and size on the call, and deletes the local
file. The recording is then reachable only through the authorised API.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import gevent

from core.calls.store import CallRecorder
from core.storage import Storage
from models.base import database, utcnow
from models.calls import Call

if TYPE_CHECKING:
    from esl_app.calls import CallWorker
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.recordings")


def recording_key(call: Call) -> str:
    started = call.started_at or utcnow()
    return f"recordings/{call.project_id}/{started:%Y}/{started:%m}/{call.id}.wav"


class Recordings:
    def __init__(self, runtime: "EslRuntime", storage: Storage, fs_dir: str) -> None:
        self.runtime = runtime
        self.storage = storage
        self.fs_dir = fs_dir

    def local_path(self, call: Call) -> str:
        return str(Path(self.fs_dir) / str(call.project_id) / f"{call.id}.wav")

    def start(self, worker: "CallWorker", recorder: CallRecorder) -> None:
        call = worker.call
        path = self.local_path(call)
        reply = self.runtime.fs.api(f"uuid_record {worker.fs_uuid} start {path}")
        if reply.startswith("-ERR"):
            log.error("recording did not start", extra={"call_id": str(call.id), "reply": reply.strip()})
            recorder.add_event("recording_failed", utcnow(), "Запись не началась", {"reply": reply.strip()})
            return
        meta = dict(call.metadata_json or {})
        meta.update({"recording_started": True, "recording_local_path": path})
        recorder.persist({"metadata_json": meta})
        recorder.add_event("recording_started", utcnow(), "Идёт запись разговора", {})

    def finish(self, worker: "CallWorker", recorder: CallRecorder, path: str | None) -> None:
        call = worker.call
        local = path or (call.metadata_json or {}).get("recording_local_path") or self.local_path(call)
        if call.recording_path:  # already stored (RECORD_STOP and hangup both report it)
            return
        if not os.path.exists(local):
            log.warning("recording file not found", extra={"call_id": str(call.id), "path": local})
            return
        key = recording_key(call)
        size = gevent.get_hub().threadpool.apply(self.storage.put_file, (key, local))
        recorder.persist({"recording_path": key, "recording_size": size})
        recorder.add_event("recording_stored", utcnow(), "Запись сохранена", {"size": size})
        try:
            os.unlink(local)
        except OSError:
            log.warning("could not delete local recording", extra={"path": local})
