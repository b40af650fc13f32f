"""Outbound calls with an agent, end to end: the answered leg streams its audio to esl_app, the agent
greets and converses; on campaign calls answering-machine detection decides first (a machine's long
greeting is hung up on, a person's short "Алло?" gets the agent's greeting).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.telephony.command_queue import CommandQueue
from core.telephony.outbound import OutboundRequest, place_call, prepare_call
from models.calls import Call, CallEvent, Transcript
from models.campaigns import Campaign
from tests.support.speech import festival_wavs
from tests.support.telephony import make_telephony_tenant, wait_until
from tests.test_voice_e2e import AGENT_CONFIG, CALLER_1, REPLY_1, festival_speech, similarity  # noqa: F401

MACHINE = ("Здравствуйте, вы позвонили в компанию Ромашка. К сожалению, сейчас никто не может ответить "
           "на ваш звонок. Пожалуйста, оставьте сообщение после звукового сигнала, и мы обязательно перезвоним.")


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[str, str]:
    return festival_wavs(tmp_path_factory.mktemp("outbound_speech"), {"machine": MACHINE, "hello": "Алло?"})


@pytest.fixture()
def voice_rig(rig_factory):
    return rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                       models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())))


def _agent_lines(call_id) -> list[str]:
    return [t.text for t in Transcript.select().where((Transcript.call == call_id) & (Transcript.speaker == "agent"))
            .order_by(Transcript.ts_start_ms)]


def test_outbound_call_the_agent_greets_and_converses(voice_rig, festival_speech):
    rig = voice_rig
    t = make_telephony_tenant("outvoice", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    rig.apply()
    rig.sim.set_behavior("79990004455", outcome="answer", ring_ms=200, answer_audio=[3500, festival_speech["caller1"]])
    call, cmd = place_call(rig.redis, OutboundRequest(project_id=t["project"].id, to_e164="+79990004455",
                                                      sip_connection=t["conn"], agent_id=t["agent"].id,
                                                      agent_version_id=t["version"].id, timeout_s=10))
    assert cmd.args["agent"] is True
    assert CommandQueue(rig.redis).wait_result(cmd.id, 30)["ok"] is True
    # The callee hears the greeting, and what they say is recognised and answered.
    greeting = wait_until(lambda: _agent_lines(call.id) or None, timeout=60, message="greeting")[0]
    assert greeting == AGENT_CONFIG["greeting"]
    caller = wait_until(lambda: Transcript.get_or_none((Transcript.call == call.id) & (Transcript.speaker == "caller")),
                        timeout=90, message="callee transcript")
    assert similarity(caller.text, CALLER_1) >= 0.8, caller.text
    wait_until(lambda: any(similarity(x, REPLY_1) >= 0.9 for x in _agent_lines(call.id)), timeout=60,
               message="agent reply")
    leg = rig.sim.get_call(call.fs_uuid)
    assert any("/tts/" in p.path for p in leg.heard), "the callee heard the agent"
    leg.hangup()
    wait_until(lambda: Call.get_by_id(call.id).ended_at, timeout=30, message="call ended")


def _campaign_call(rig, t, number: str, policy: str = "hangup") -> Call:
    campaign = Campaign.create(project=t["project"].id, name="Напоминания", purpose="reminder", agent=t["agent"].id,
                               sip_connection=t["conn"].id, schedule_json={}, limits_json={}, status="running")
    call, cmd = prepare_call(OutboundRequest(project_id=t["project"].id, to_e164=number, sip_connection=t["conn"],
                                             agent_id=t["agent"].id, agent_version_id=t["version"].id, timeout_s=10,
                                             campaign_id=campaign.id), rig.settings.fs_node)
    Call.update(metadata_json={"amd": {"enabled": True, "policy": policy}}).where(Call.id == call.id).execute()
    CommandQueue(rig.redis).submit(cmd)
    return Call.get_by_id(call.id)


def test_amd_hangs_up_on_a_machine_and_greets_a_person(voice_rig, answers):
    rig = voice_rig
    t = make_telephony_tenant("outamd", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    rig.apply()
    rig.sim.set_behavior("79990005566", outcome="answer", ring_ms=200, answer_audio=[300, answers["machine"]])
    rig.sim.set_behavior("79990006677", outcome="answer", ring_ms=200, answer_audio=[300, answers["hello"]])

    machine = _campaign_call(rig, t, "+79990005566")
    ended = wait_until(lambda: (lambda c: c if c.ended_at else None)(Call.get_by_id(machine.id)), timeout=60,
                       message="machine call hung up")
    assert ended.metadata_json["amd"]["result"] == "machine"
    assert CallEvent.select().where((CallEvent.call == machine.id) & (CallEvent.type == "amd")).exists()
    assert _agent_lines(machine.id) == [], "the agent never spoke to the answering machine"
    assert not any("/tts/" in p.path for p in rig.sim.get_call(machine.fs_uuid).heard)

    person = _campaign_call(rig, t, "+79990006677")
    greeting = wait_until(lambda: _agent_lines(person.id) or None, timeout=60, message="greeting after AMD")[0]
    assert greeting == AGENT_CONFIG["greeting"]
    row = Call.get_by_id(person.id)
    assert row.metadata_json["amd"]["result"] == "human" and row.ended_at is None
    # The short "Алло?" AMD listened to was not taken as a question for the agent.
    assert Transcript.select().where((Transcript.call == person.id) & (Transcript.speaker == "caller")).count() == 0
    rig.sim.get_call(person.fs_uuid).hangup()
