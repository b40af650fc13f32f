"""Telephony end to end: a real esl_app process against the FreeSWITCH simulator over real ESL.

Inbound calls routed by DID and recorded, after-hours routing, outbound outcomes, operator transfer
with the handoff packet, esl_app killed mid-call, FreeSWITCH connection dropped, DTMF both ways,
graceful drain.
"""
from __future__ import annotations

import array
import datetime as dt
import math
import time
import wave
from pathlib import Path

import pytest

from core.events.bus import read_since
from core.telephony.command_queue import CommandQueue, CommandType, TelephonyCommand
from core.telephony.fs_apply import apply_telephony
from core.telephony.outbound import OutboundRequest, place_call
from models.calls import Call, CallEvent, HandoffPacket
from models.crm import CrmTask
from tests.support.telephony import EslProcess, make_telephony_tenant, tone_wav, wait_until


def test_inbound_call_routed_by_did_and_recorded(rig, app_for):
    t = make_telephony_tenant("inb", recording=True)
    rig.apply()
    assert (rig.dirs.conf / "dialplan/public/voiceai_generated").is_dir()
    call = rig.sim.inbound_call(caller="79161234567", destination="74951234567",
                                audio=[tone_wav(rig.tmp / "caller.wav")])
    row = rig.call_row(call.uuid, state="in_progress")
    assert row.direction == "inbound" and row.from_number == "79161234567" and row.to_number == "74951234567"
    assert row.phone_number_id == t["number"].id and row.agent_id == t["agent"].id
    assert row.agent_version_id == t["version"].id  # the published version at call start
    assert row.trace_id and row.answered_at is not None
    wait_until(lambda: call.recordings, message="recording started in FreeSWITCH")
    time.sleep(1.0)
    call.hangup("NORMAL_CLEARING")
    row = rig.call_row(call.uuid, ended=True)
    assert row.outcome == "completed" and row.hangup_cause == "NORMAL_CLEARING"
    assert row.hangup_cause_text and row.state == "ended" and row.duration_s >= 1
    row = wait_until(lambda: Call.get(Call.id == row.id) if Call.get(Call.id == row.id).recording_path else None,
                     message="recording stored")
    assert row.recording_path.startswith(f"recordings/{t['project'].id}/") and row.recording_size > 1000
    types = [e.type for e in CallEvent.select().where(CallEvent.call == row.id).order_by(CallEvent.seq)]
    assert types[0] == "answered" and "recording_started" in types and "ended" in types and "recording_stored" in types
    realtime = [e["type"] for e in rig.events(t["project"].id)]
    assert realtime[0] == "call.started" and "call.state_changed" in realtime and realtime[-1] == "call.ended"
    ended = rig.events(t["project"].id)[-1]
    assert ended["entity"] == {"type": "call", "id": str(row.id)} and ended["payload"]["outcome"] == "completed"
    assert ended["ts"].endswith("Z")

    # the recording is reachable only through an authorised API call
    api = app_for(rig.settings)
    owner = api.login_as("owner", t)
    resp = owner.get(f"/api/calls/{row.id}/recording")
    assert resp.status_code == 200 and resp.mimetype == "audio/wav" and resp.data[:4] == b"RIFF"
    card = owner.get(f"/api/calls/{row.id}").get_json()
    assert card["has_recording"] and card["outcome"] == "completed"
    billing = api.login_as("billing_manager", t)
    assert billing.get(f"/api/calls/{row.id}/recording").status_code == 403
    stranger = api.stranger()
    assert stranger.get(f"/api/calls/{row.id}/recording", headers={"X-Project-Id": str(t["project"].id)}).status_code == 404


@pytest.mark.sim_only
def test_after_hours_routing_hangs_up_and_logs_the_call(rig):
    schedule = {"timezone": "Europe/Moscow", "windows": [{"days": [1, 2, 3, 4, 5], "from": "09:00", "to": "18:00"}]}
    t = make_telephony_tenant("ah", recording=False, schedule=schedule, after_hours_action="hangup")
    rig.apply()
    msk = dt.timezone(dt.timedelta(hours=3))
    rig.sim.now = lambda: dt.datetime(2026, 11, 28, 23, 30, tzinfo=msk)  # Saturday night
    night = rig.sim.inbound_call(caller="79160000001", destination="74951234567")
    night.wait_hangup(timeout=10)
    assert "CHANNEL_PARK" not in night.event_names()
    rig.sim.now = lambda: dt.datetime(2026, 11, 25, 11, 0, tzinfo=msk)  # Wednesday morning
    day = rig.sim.inbound_call(caller="79160000002", destination="74951234567")
    day.wait_for("CHANNEL_PARK", timeout=10)
    row = rig.call_row(day.uuid, state="in_progress")
    assert row.phone_number_id == t["number"].id
    day.hangup()
    rig.call_row(day.uuid, ended=True)


@pytest.mark.parametrize("behavior,outcome,cause", [
    ("busy", "busy", "USER_BUSY"),
    ("no_answer", "no_answer", "NO_ANSWER"),
    ("failed", "failed", "NORMAL_TEMPORARY_FAILURE"),
    ("rejected", "rejected", "CALL_REJECTED"),
])
def test_outbound_originate_outcomes(rig, behavior, outcome, cause):
    t = make_telephony_tenant(f"out{behavior.replace('_', '')}", recording=False)
    rig.apply()
    rig.sim.set_behavior("79990001122", outcome=behavior, ring_ms=200)
    call, cmd = place_call(rig.redis, OutboundRequest(project_id=t["project"].id, to_e164="+79990001122",
                                                      sip_connection=t["conn"], timeout_s=2))
    result = CommandQueue(rig.redis).wait_result(cmd.id, 20)
    assert result["ok"] is False and result["outcome"] == outcome
    row = wait_until(lambda: (lambda r: r if r.ended_at else None)(Call.get_by_id(call.id)), message="ended row")
    assert row.outcome == outcome and row.hangup_cause == cause and row.hangup_cause_text
    # submitting the same command again never dials twice
    assert CommandQueue(rig.redis).submit(cmd) is False


def test_outbound_answered_then_remote_hangup(rig):
    t = make_telephony_tenant("outok", recording=False)
    rig.apply()
    rig.sim.set_behavior("79990002233", outcome="answer", ring_ms=200, hangup_after_ms=1500)
    call, cmd = place_call(rig.redis, OutboundRequest(project_id=t["project"].id, to_e164="+79990002233",
                                                      sip_connection=t["conn"], timeout_s=5))
    result = CommandQueue(rig.redis).wait_result(cmd.id, 20)
    assert result["ok"] is True and result["outcome"] == "answered"
    row = wait_until(lambda: (lambda r: r if r.ended_at else None)(Call.get_by_id(call.id)), message="ended row")
    assert row.outcome == "completed" and row.answered_at is not None and row.direction == "outbound"
    sim_call = rig.sim.get_call(row.fs_uuid)
    assert sim_call.variables.get("voiceai_call_id") == str(call.id)


def test_unknown_gateway_fails_cleanly(rig):
    t = make_telephony_tenant("outgw", recording=False)
    t["conn"].gateway_name = "voiceai_missing"
    call, cmd = place_call(rig.redis, OutboundRequest(project_id=t["project"].id, to_e164="+79990003344",
                                                      sip_connection=t["conn"], timeout_s=2))
    result = CommandQueue(rig.redis).wait_result(cmd.id, 20)
    assert result["ok"] is False and result["outcome"] == "failed"
    row = wait_until(lambda: (lambda r: r if r.ended_at else None)(Call.get_by_id(call.id)), message="ended row")
    assert row.outcome == "failed" and row.hangup_cause_text


def _transfer(rig, call_row, route, packet=None, mode=None) -> dict:
    args = {"call_id": str(call_row.id), "operator_route_id": str(route.id)}
    if packet is not None:
        args["handoff_packet_id"] = str(packet.id)
    if mode:
        args["mode"] = mode
    if mode == "attended" or (mode is None and route.whisper_enabled):
        args["whisper_file"] = "tone_stream://%(300,100,600);loops=2"
    cmd = TelephonyCommand(type=CommandType.TRANSFER.value, project_id=str(call_row.project_id), args=args)
    CommandQueue(rig.redis).submit(cmd)
    return CommandQueue(rig.redis).wait_result(cmd.id, 30)


def test_attended_transfer_to_operator_with_handoff_packet(rig):
    t = make_telephony_tenant("xfer", recording=False, operator_target="1001", whisper=True)
    rig.apply()
    rig.sim.set_behavior("user/1001@*", outcome="answer", ring_ms=300)
    call = rig.sim.inbound_call(caller="79161112233", destination="74951234567")
    row = rig.call_row(call.uuid, state="in_progress")
    packet = HandoffPacket.create(project=row.project_id, call=row.id, reason="caller_request",
                                  reason_text="Клиент попросил оператора", summary="Запись к стоматологу на пятницу",
                                  collected_json={"name": "Иван"}, caller_json={"phone": "+79161112233"})
    result = _transfer(rig, row, t["route"], packet)
    assert result["ok"] is True and result["mode"] == "attended", (result.get("reason_ru"), result)
    op_leg = result["operator_leg"]
    op_call = rig.sim.get_call(op_leg)
    assert any(p.path.startswith("tone_stream://%(300,100,600)") for p in op_call.heard)  # whisper heard
    rig.call_row(call.uuid, state="with_operator")
    packet = HandoffPacket.get_by_id(packet.id)
    assert packet.status == "accepted" and packet.target and packet.transfer_mode == "attended"
    popped = [e for e in rig.events(row.project_id) if e["type"] == "handoff.requested"]
    assert popped and popped[0]["payload"]["summary"] == "Запись к стоматологу на пятницу"
    call.hangup()
    row = rig.call_row(call.uuid, ended=True)
    assert row.outcome == "transferred"


def test_blind_transfer_bridges_without_whisper(rig):
    t = make_telephony_tenant("blind", recording=False, operator_target="1003", whisper=False)
    rig.apply()
    rig.sim.set_behavior("user/1003", outcome="answer", ring_ms=200)
    call = rig.sim.inbound_call(caller="79162223344", destination="74951234567")
    row = rig.call_row(call.uuid, state="in_progress")
    result = _transfer(rig, row, t["route"])
    assert result["ok"] is True and result["mode"] == "blind"
    op_call = rig.sim.get_call(result["operator_leg"])
    assert not any(p.path.startswith("tone_stream://%(300") for p in op_call.heard)  # no whisper
    assert op_call.variables.get("voiceai_parent_call_uuid") == call.uuid
    rig.call_row(call.uuid, state="with_operator")
    op_call.hangup()  # the operator ends the conversation
    call.wait_hangup(timeout=10)
    assert rig.call_row(call.uuid, ended=True).outcome == "transferred"


def test_operator_no_answer_falls_back_to_callback_task(rig):
    t = make_telephony_tenant("xfail", recording=False, operator_target="1002", ring_timeout_s=5,
                              fallback_action="callback_task", whisper=False)
    rig.apply()
    rig.sim.set_behavior("user/1002@*", outcome="no_answer")
    call = rig.sim.inbound_call(caller="79165554433", destination="74951234567")
    row = rig.call_row(call.uuid, state="in_progress")
    packet = HandoffPacket.create(project=row.project_id, call=row.id, reason="policy", summary="Жалоба")
    result = _transfer(rig, row, t["route"], packet)
    assert result["ok"] is False and result["fallback"] == "callback_task"
    task = CrmTask.get_by_id(result["callback_task_id"])
    assert task.call_id == row.id and "79165554433" in task.title and task.description == "Жалоба"
    assert HandoffPacket.get_by_id(packet.id).status == "failed"
    assert call.alive  # the caller stays with the agent
    rig.call_row(call.uuid, state="in_progress")
    call.hangup()
    assert rig.call_row(call.uuid, ended=True).outcome == "completed"


def test_esl_app_killed_mid_call_is_completed_after_restart(rig):
    make_telephony_tenant("kill", recording=False)
    rig.apply()
    call = rig.sim.inbound_call(caller="79160001111", destination="74951234567")
    row = rig.call_row(call.uuid, state="in_progress")
    rig.esl.kill()
    time.sleep(0.3)
    call.send_dtmf("1")  # events while nobody listens are lost; the row must still be right
    rig.esl = EslProcess(rig.settings, rig.tmp / "esl2.log").start()
    rig.esl.wait_log("re-attached live calls")
    call.hangup()
    row = rig.call_row(call.uuid, ended=True)
    assert row.outcome == "completed" and row.hangup_cause == "NORMAL_CLEARING"


def test_call_that_ends_while_esl_app_is_down_is_closed(rig):
    make_telephony_tenant("gone", recording=False)
    rig.apply()
    call = rig.sim.inbound_call(caller="79160002222", destination="74951234567")
    rig.call_row(call.uuid, state="in_progress")
    rig.esl.kill()
    call.hangup()
    rig.esl = EslProcess(rig.settings, rig.tmp / "esl2.log").start()
    row = rig.call_row(call.uuid, ended=True)
    assert row.hangup_cause == "UNKNOWN_WHILE_DETACHED" and row.outcome == "completed"


@pytest.mark.sim_only
def test_freeswitch_connection_dropped_and_restored(rig):
    make_telephony_tenant("drop", recording=False)
    rig.apply()
    call = rig.sim.inbound_call(caller="79160003333", destination="74951234567")
    row = rig.call_row(call.uuid, state="in_progress")
    before = len(rig.esl.logs())
    rig.sim.restart(down_s=1.5)
    rig.esl.wait_log("lost the FreeSWITCH connection", after=before)
    rig.esl.wait_log("re-attached live calls", after=before)
    call.send_dtmf("7")
    wait_until(lambda: CallEvent.select().where((CallEvent.call == row.id) & (CallEvent.type == "dtmf")).exists(),
               message="DTMF after reconnect")
    call.hangup()
    assert rig.call_row(call.uuid, ended=True).outcome == "completed"


def test_dtmf_in_and_out(rig):
    make_telephony_tenant("dtmf", recording=False)
    rig.apply()
    call = rig.sim.inbound_call(caller="79160004444", destination="74951234567")
    row = rig.call_row(call.uuid, state="in_progress")
    call.send_dtmf("5#")

    def dtmf_digits():
        return [e.payload_json["digit"] for e in CallEvent.select().where(
            (CallEvent.call == row.id) & (CallEvent.type == "dtmf")).order_by(CallEvent.seq)]
    digits = wait_until(lambda: (lambda d: d if len(d) >= 2 else None)(dtmf_digits()), message="two DTMF events")
    assert digits == ["5", "#"]
    cmd = TelephonyCommand(type=CommandType.SEND_DTMF.value, project_id=str(row.project_id),
                           args={"call_id": str(row.id), "digits": "12"})
    CommandQueue(rig.redis).submit(cmd)
    assert CommandQueue(rig.redis).wait_result(cmd.id, 10)["ok"] is True
    wait_until(lambda: "".join(call.received_dtmf) == "12" or None, message="DTMF received by caller")
    call.hangup()


def test_graceful_drain_waits_for_live_calls(rig):
    make_telephony_tenant("drain", recording=False)
    rig.apply()
    call = rig.sim.inbound_call(caller="79160005555", destination="74951234567")
    rig.call_row(call.uuid, state="in_progress")
    rig.esl.proc.send_signal(15)  # SIGTERM
    rig.esl.wait_log("draining")
    time.sleep(1.0)
    assert rig.esl.proc.poll() is None  # still serving the live call
    call.hangup()
    assert rig.esl.proc.wait(20) == 0
    assert rig.call_row(call.uuid, ended=True).outcome == "completed"
