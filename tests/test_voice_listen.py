"""Live listen-in: a supervisor's page hears a running phone call (caller and agent) over /listen."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from models.calls import Call
from models.saas import AuditLog
from tests.support.telephony import make_telephony_tenant, wait_until
from tests.test_voice_e2e import AGENT_CONFIG, festival_speech  # noqa: F401


class ListenClient:
    def __init__(self, url: str, token: str) -> None:
        import simple_websocket
        self.ws = simple_websocket.Client.connect(url)
        self.ws.send(json.dumps({"token": token}))
        self.notices: list[dict] = []
        self.bytes = {0: 0, 1: 0}
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                msg = self.ws.receive(timeout=0.5)
            except Exception:  # noqa: BLE001 - closed by the server
                self.done.set()
                return
            if msg is None:
                continue
            if isinstance(msg, bytes):
                self.bytes[msg[0]] = self.bytes.get(msg[0], 0) + len(msg) - 1
            else:
                self.notices.append(json.loads(msg))

    def notice(self, kind: str) -> dict | None:
        return next((n for n in self.notices if n.get("type") == kind), None)

    def close(self) -> None:
        self.done.set()
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass


def test_supervisor_listens_to_a_running_call(rig_factory, app_for, festival_speech):
    rig = rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                      models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())))
    t = make_telephony_tenant("listen", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    rig.apply()
    clients = app_for(rig.settings)
    supervisor = clients.login_as("supervisor", t)
    call = rig.sim.inbound_call(caller="79161234567", destination="74951234567",
                                audio=[3500, festival_speech["caller1"], 8000])
    row = rig.call_row(call.uuid, state="in_progress", timeout=30)

    # Who may listen: calls.listen in this project only.
    assert clients.login_as("billing_manager", t).post(f"/api/calls/{row.id}/listen").status_code == 403
    assert clients.stranger().with_(project_id=str(t["project"].id)).post(
        f"/api/calls/{row.id}/listen").status_code == 404
    resp = supervisor.post(f"/api/calls/{row.id}/listen")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["ws_url"].endswith(f":{rig.settings.audio_ws_port}/listen")
    assert AuditLog.select().where((AuditLog.action == "call.listen") & (AuditLog.entity_id == str(row.id))).exists()

    listener = ListenClient(f"ws://127.0.0.1:{rig.settings.audio_ws_port}/listen", body["token"])
    try:
        ready = wait_until(lambda: listener.notice("ready"), timeout=30, message="ready")
        assert ready["call_id"] == str(row.id) and ready["sample_rate"] == 8000
        # Both sides are heard: the caller's speech (fork frames) and the agent's reply.
        wait_until(lambda: listener.bytes[0] > 8000 * 2 * 3, timeout=60, message="caller audio")
        wait_until(lambda: listener.bytes[1] > 8000 * 2, timeout=90, message="agent audio")
        call.hangup()
        ended = wait_until(lambda: listener.notice("ended"), timeout=30, message="ended notice")
        assert ended["dropped_frames"] == 0
    finally:
        listener.close()

    # One token, one page; an ended call has nothing to listen to (its recording is on the call page).
    again = ListenClient(f"ws://127.0.0.1:{rig.settings.audio_ws_port}/listen", body["token"])
    try:
        err = wait_until(lambda: again.notice("error"), timeout=30, message="reused token refused")
        assert err["error"]["code"] == "AUTH_TOKEN_INVALID"
    finally:
        again.close()
    wait_until(lambda: Call.get_by_id(row.id).ended_at, timeout=30, message="call ended")
    resp = supervisor.post(f"/api/calls/{row.id}/listen")
    assert resp.status_code == 409 and "запись" in resp.get_json()["error"]["details"]["reason"]
