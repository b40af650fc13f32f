"""Talking to an agent from the browser: talk tokens from the API, the audio server's /browser socket.

The end-to-end test plays the browser's part over a real WebSocket: it streams Festival speech as
16 kHz L16 frames in real time (silence in between, as a microphone would), receives the agent's
speech and JSON notices, interrupts the agent and hangs up; esl_app runs the same voice loop as for
a phone call (VAD, Whisper, scripted replies, Festival).
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from pathlib import Path

import pytest

from core.audio import read_wav, resample
from core.calls.browser import TOKEN_TYPE
from core.security.tokens import issue_scoped_token
from core.events.bus import read_since
from models.saas import AuditLog
from models.calls import Call, CallEvent, Transcript
from tests.support.telephony import make_telephony_tenant, wait_until
from tests.test_voice_e2e import AGENT_CONFIG, CALLER_1, CALLER_2, REPLY_1, festival_speech, similarity  # noqa: F401

RATE = 16000
RATES_JSON = ('{"telephony_per_min": "1.50", "stt_per_min": "0.60", "llm_per_1k_tokens": "0.10", '
              '"tts_per_1k_chars": "0.30"}')
FRAME = RATE * 2 // 50  # 20 ms of L16


class BrowserClient:
    """A browser tab's voice socket: a paced microphone thread plus a receiving thread."""

    def __init__(self, url: str) -> None:
        import simple_websocket
        self.ws = simple_websocket.Client.connect(url)
        self.notices: list[dict] = []
        self.audio_bytes = 0
        self.audio_after_clear = 0
        self.mic: queue.Queue[bytes] = queue.Queue()
        self.closed = threading.Event()
        self._threads: list[threading.Thread] = []

    def hello(self, token: str, rate: int = RATE) -> None:
        self.ws.send(json.dumps({"token": token, "sample_rate": rate}))
        t = threading.Thread(target=self._receive, daemon=True)
        t.start()
        self._threads.append(t)

    def start_microphone(self) -> None:
        t = threading.Thread(target=self._microphone, daemon=True)
        t.start()
        self._threads.append(t)

    def say(self, wav_path: str) -> None:
        pcm, rate = read_wav(wav_path)
        pcm = resample(pcm, rate, RATE)
        for i in range(0, len(pcm) - FRAME + 1, FRAME):
            self.mic.put(pcm[i:i + FRAME])

    def notice(self, kind: str, **match) -> dict | None:
        for n in list(self.notices):
            if n.get("type") == kind and all(n.get(k) == v for k, v in match.items()):
                return n
        return None

    def send_json(self, payload: dict) -> None:
        self.ws.send(json.dumps(payload))

    def close(self) -> None:
        self.closed.set()
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass

    def _microphone(self) -> None:
        start = time.monotonic()
        n = 0
        while not self.closed.is_set():
            try:
                frame = self.mic.get_nowait()
            except queue.Empty:
                frame = b"\x00\x00" * (FRAME // 2)
            try:
                self.ws.send(frame)
            except Exception:  # noqa: BLE001
                return
            n += 1
            delay = start + n * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _receive(self) -> None:
        cleared = False
        while not self.closed.is_set():
            try:
                msg = self.ws.receive(timeout=0.5)
            except Exception:  # noqa: BLE001 - closed by the server
                self.closed.set()
                return
            if msg is None:
                continue
            if isinstance(msg, bytes):
                self.audio_bytes += len(msg)
                if cleared:
                    self.audio_after_clear += len(msg)
                continue
            data = json.loads(msg)
            if data.get("type") == "clear":
                cleared = True
            self.notices.append(data)


def _ok(resp, status: int = 201) -> dict:
    assert resp.status_code == status, resp.get_json()
    return resp.get_json()


def _status(resp) -> int:
    return resp.status_code


def _talk_token(app_clients, tenant, **body) -> dict:
    client = app_clients.login_as("owner", tenant)
    return _ok(client.post(f"/api/agents/{tenant['agent'].id}/talk", json=body))


# -- the API --------------------------------------------------------------------------------------

def test_talk_token_rbac_tenancy_and_audit(db, app_for, test_settings):
    from core.security.tokens import decode_scoped_token
    t = make_telephony_tenant("talkapi", recording=False)
    clients = app_for(test_settings)
    owner = clients.login_as("owner", t)
    body = _ok(owner.post(f"/api/agents/{t['agent'].id}/talk", json={}))
    claims = decode_scoped_token(test_settings.secret_key, body["token"], TOKEN_TYPE)
    assert claims["agent_version_id"] == str(t["version"].id) and claims["project_id"] == str(t["project"].id)
    assert body["version"] == 1 and body["ws_url"].endswith(f":{test_settings.audio_ws_port}/browser")
    assert AuditLog.select().where((AuditLog.action == "agent.talk") & (AuditLog.entity_id == str(t["agent"].id))).exists()
    # A talk token is not an access token and cannot open the API.
    assert _status(owner.with_(token=body["token"]).get("/api/projects")) == 401
    # A version that does not exist, an agent of another project, a role without agents.edit.
    assert _status(owner.post(f"/api/agents/{t['agent'].id}/talk", json={"version": 7})) == 404
    stranger = clients.stranger().with_(project_id=str(t["project"].id))
    assert _status(stranger.post(f"/api/agents/{t['agent'].id}/talk", json={})) == 404
    assert _status(clients.login_as("analyst", t).post(f"/api/agents/{t['agent'].id}/talk", json={})) == 403


def test_public_audio_url_setting(db, app_for, test_settings):
    t = make_telephony_tenant("talkurl", recording=False)
    settings = dataclasses.replace(test_settings, audio_public_url="wss://voice.example.ru/")
    body = _ok(app_for(settings).login_as("owner", t).post(f"/api/agents/{t['agent'].id}/talk", json={}))
    assert body["ws_url"] == "wss://voice.example.ru/browser"


# -- end to end -------------------------------------------------------------------------------------

@pytest.fixture()
def voice_rig(rig_factory):
    return rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                       models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())),
                       default_rates=RATES_JSON)


def test_browser_conversation_barge_in_and_hangup(voice_rig, app_for, festival_speech, redis_client):
    rig = voice_rig
    t = make_telephony_tenant("talk", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    token = _talk_token(app_for(rig.settings), t)
    url = f"ws://127.0.0.1:{rig.settings.audio_ws_port}/browser"
    wait_until(lambda: _port_open(rig.settings.audio_ws_port), timeout=60, message="audio server up")
    client = BrowserClient(url)
    try:
        client.hello(token["token"])
        ready = wait_until(lambda: client.notice("ready"), timeout=30, message="ready notice")
        assert ready["sample_rate"] == RATE
        call = Call.get_by_id(ready["call_id"])
        assert call.is_test and call.metadata_json["channel"] == "browser" and call.state == "in_progress"
        assert call.agent_version_id == t["version"].id
        client.start_microphone()

        # The greeting arrives as audio and as a transcript notice.
        wait_until(lambda: client.notice("transcript", speaker="agent"), timeout=60, message="greeting")
        wait_until(lambda: client.audio_bytes > RATE, timeout=30, message="greeting audio")

        # The caller speaks; the transcript and the agent's reply come back.
        client.say(festival_speech["caller1"])
        heard = wait_until(lambda: client.notice("transcript", speaker="caller"), timeout=90, message="caller text")
        assert similarity(heard["text"], CALLER_1) >= 0.8, heard["text"]
        assert 0 < heard["confidence"] <= 1
        before_reply = client.audio_bytes
        wait_until(lambda: client.audio_bytes > before_reply + RATE, timeout=60, message="reply audio")

        # Interrupting the reply: the page is told to drop buffered audio, the dialog keeps what was heard.
        client.say(festival_speech["caller2"])
        wait_until(lambda: client.notice("clear"), timeout=30, message="clear on barge-in")
        wait_until(lambda: CallEvent.select().where((CallEvent.call == call.id) & (CallEvent.type == "barge_in")).exists(),
                   timeout=10, message="barge-in event")
        reply = wait_until(lambda: next((n for n in client.notices if n.get("type") == "transcript"
                                         and n.get("speaker") == "agent" and n.get("interrupted")), None),
                           timeout=60, message="interrupted reply transcript")
        assert similarity(reply["text"], REPLY_1) >= 0.9
        assert reply["heard"] is not None and len(reply["heard"]) < len(reply["text"])

        # Hanging up from the page ends the call like a phone hang-up.
        client.send_json({"type": "hangup"})
        ended = wait_until(lambda: (lambda c: c if c.state == "ended" else None)(Call.get_by_id(call.id)),
                           timeout=30, message="call ended")
        assert ended.outcome == "completed" and ended.ended_by == "caller" and ended.duration_s >= 1
        texts = [tr.text for tr in Transcript.select().where(Transcript.call == call.id)]
        assert any(similarity(x, CALLER_1) >= 0.8 for x in texts)
        types = wait_until(lambda: (lambda ts: ts if "call.ended" in ts else None)(
            [e["type"] for _id, e in read_since(redis_client, t["project"].id)]), timeout=10, message="call.ended event")
        assert "call.started" in types
        # Priced by what the engines did; no trunk minutes on a browser line.
        from models.billing import CostBreakdown
        usage = ended.metadata_json["usage"]
        assert usage["stt_seconds"] > 2 and usage["tts_chars"] > len(REPLY_1) // 2
        cost = wait_until(lambda: CostBreakdown.get_or_none((CostBreakdown.entity_type == "call")
                                                            & (CostBreakdown.entity_id == call.id)),
                          timeout=10, message="call priced")
        assert cost.stt_cost > 0 and cost.tts_cost > 0 and cost.telephony_cost == 0
        assert Call.get_by_id(call.id).cost_total == cost.total_cost
    finally:
        client.close()


def test_browser_socket_refuses_bad_and_reused_tokens(voice_rig, test_settings):
    rig = voice_rig
    t = make_telephony_tenant("talkbad", recording=False)
    wait_until(lambda: _port_open(rig.settings.audio_ws_port), timeout=60, message="audio server up")
    url = f"ws://127.0.0.1:{rig.settings.audio_ws_port}/browser"

    def attempt(token: str, rate: int = RATE) -> dict:
        client = BrowserClient(url)
        try:
            client.hello(token, rate)
            return wait_until(lambda: client.notice("error") or client.notice("ready"), timeout=30,
                              message="answer to hello")
        finally:
            client.close()

    claims = {"project_id": str(t["project"].id), "agent_id": str(t["agent"].id),
              "agent_version_id": str(t["version"].id), "user_id": None}
    forged, _ = issue_scoped_token("not-the-secret-but-long-enough-for-hs256", TOKEN_TYPE, claims, 60)
    assert attempt(forged)["error"]["code"] == "AUTH_TOKEN_INVALID"
    expired, _ = issue_scoped_token(rig.settings.secret_key, TOKEN_TYPE, claims, 60, now=time.time() - 600)
    err = attempt(expired)["error"]
    assert err["code"] == "AUTH_TOKEN_EXPIRED" and err["human_title"] == "Сессия истекла"
    wrong_type, _ = issue_scoped_token(rig.settings.secret_key, "realtime", claims, 60)
    assert attempt(wrong_type)["error"]["code"] == "AUTH_TOKEN_INVALID"
    bad_rate, _ = issue_scoped_token(rig.settings.secret_key, TOKEN_TYPE, claims, 60)
    assert attempt(bad_rate, rate=44100)["error"]["code"] == "BAD_REQUEST"

    good, _ = issue_scoped_token(rig.settings.secret_key, TOKEN_TYPE, claims, 60)
    first = attempt(good)
    assert first["type"] == "ready"
    reused = attempt(good)
    assert reused["error"]["code"] == "AUTH_TOKEN_INVALID"
    # Only the accepted session became a call.
    assert Call.select().where((Call.project == t["project"].id) & (Call.is_test == True)).count() == 1  # noqa: E712


def _port_open(port: int) -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_streaming_stt_feeds_partials_during_the_turn(rig_factory, app_for, festival_speech):
    """With Vosk the caller is recognized while speaking: partials reach the endpointer, the final
    result is ready at the end of the turn (the Korean model stands in for a Russian one here)."""
    models_dir = os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve()))
    if not (Path(models_dir) / "vosk-ko").exists():
        pytest.fail("the vosk-ko model is not installed (run: voiceai models install vosk-ko)")
    rig = rig_factory(voice=True, stt_engine="vosk", llm_engine="scripted", tts_engine="festival",
                      models_dir=models_dir)
    t = make_telephony_tenant("talkvosk", recording=False)
    config = dict(AGENT_CONFIG, voice={"silence_reprompt_s": 30, "low_confidence": 0.0,
                                       "stt_hints": ["Улыбка"]})
    t["version"].config_json = config
    t["version"].save()
    token = _talk_token(app_for(rig.settings), t)
    wait_until(lambda: _port_open(rig.settings.audio_ws_port), timeout=60, message="audio server up")
    client = BrowserClient(f"ws://127.0.0.1:{rig.settings.audio_ws_port}/browser")
    try:
        client.hello(token["token"])
        ready = wait_until(lambda: client.notice("ready"), timeout=30, message="ready notice")
        client.start_microphone()
        wait_until(lambda: client.notice("transcript", speaker="agent"), timeout=60, message="greeting")
        client.say(festival_speech["caller1"])
        caller = wait_until(lambda: client.notice("transcript", speaker="caller"), timeout=90, message="caller text")
        assert caller["text"] and 0 < caller["confidence"] <= 1

        def timing():
            ev = (CallEvent.select().where((CallEvent.call == ready["call_id"]) & (CallEvent.type == "turn_timing"))
                  .first())
            return ev.payload_json if ev else None
        payload = wait_until(timing, timeout=60, message="turn timing")
        assert payload["compute_ms"]["stt_partials"] >= 1, payload
    finally:
        client.close()


def test_capacity_overflow_refuses_clearly(rig_factory, app_for, festival_speech):
    """Past VOICEAI_MAX_VOICE_CALLS a new conversation hears "all lines are busy" and ends,
    with a call issue, instead of degrading the conversations already running."""
    from models.calls import CallIssue
    models_dir = os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve()))
    rig = rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                      models_dir=models_dir, max_voice_calls=1)
    t = make_telephony_tenant("talkcap", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    clients = app_for(rig.settings)
    wait_until(lambda: _port_open(rig.settings.audio_ws_port), timeout=60, message="audio server up")
    url = f"ws://127.0.0.1:{rig.settings.audio_ws_port}/browser"
    first, second = BrowserClient(url), BrowserClient(url)
    try:
        first.hello(_talk_token(clients, t)["token"])
        wait_until(lambda: first.notice("ready"), timeout=30, message="first ready")
        first.start_microphone()
        wait_until(lambda: first.notice("transcript", speaker="agent"), timeout=60, message="first greeting")

        second.hello(_talk_token(clients, t)["token"])
        ready = wait_until(lambda: second.notice("ready"), timeout=30, message="second ready")
        second.start_microphone()
        wait_until(lambda: second.notice("hangup"), timeout=60, message="overflow hang-up")
        assert second.audio_bytes > RATE, "the caller heard why"
        issue = CallIssue.get(CallIssue.call == ready["call_id"])
        assert issue.code == "VOICE_CAPACITY_REACHED" and issue.details_json["max_calls"] == 1
        assert CallEvent.select().where((CallEvent.call == ready["call_id"]) & (CallEvent.type == "overloaded")).exists()
        # The running conversation is untouched and still answers.
        assert not first.notice("hangup")
        first.say(festival_speech["caller1"])
        wait_until(lambda: first.notice("transcript", speaker="caller"), timeout=90, message="first still served")
    finally:
        first.close()
        second.close()
