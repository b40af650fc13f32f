"""A phone call to an Agent Studio agent, end to end: the simulator's caller speaks Russian, esl_app
runs the voice loop with the dialog runtime (the clinic template in its scripted mode), the caller
asks for a person, and the handoff packet travels with the transfer to the operator.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from core.agent.templates import get_template
from models.calls import Call, HandoffPacket, Transcript
from tests.support.speech import festival_wavs
from tests.support.telephony import make_telephony_tenant, wait_until

SAY_SERVICE = "Я хочу записаться к стоматологу."
SAY_OPERATOR = "Соедините меня с оператором, пожалуйста."


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, str]:
    return festival_wavs(tmp_path_factory.mktemp("agent_speech"), {"service": SAY_SERVICE, "operator": SAY_OPERATOR})


def test_studio_agent_collects_then_hands_over_with_the_packet(rig_factory, speech):
    rig = rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                      models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())))
    t = make_telephony_tenant("agentcall", recording=False, operator_target="1001", whisper=True)
    config = copy.deepcopy(get_template("appointment_clinic")["config"])
    config["llm"] = {**config.get("llm", {}), "engine": "scripted"}
    config["voice"] = {"silence_reprompt_s": 30}
    t["version"].config_json = config
    t["version"].save()
    rig.apply()
    rig.sim.set_behavior("user/1001@*", outcome="answer", ring_ms=300)

    # The caller waits for the greeting (with the first question), then answers it.
    call = rig.sim.inbound_call(caller="79161234567", destination="74951234567", audio=[9000, speech["service"]])
    row = rig.call_row(call.uuid, state="in_progress", timeout=30)

    def agent_lines() -> list[str]:
        return [x.text for x in Transcript.select().where((Transcript.call == row.id) & (Transcript.speaker == "agent"))
                .order_by(Transcript.ts_start_ms)]
    greeting = wait_until(lambda: agent_lines() or None, timeout=60, message="greeting")[0]
    assert "Клиника «Здоровье»" in greeting and "специалисту" in greeting
    # The choice is understood and the next field is asked for.
    wait_until(lambda: any("день и время" in x for x in agent_lines()), timeout=120, message="next question")

    # A caller asked to repeat says it again (under load Whisper's confidence can dip below the threshold).
    packet = None
    for _attempt in range(3):
        call.play_audio(speech["operator"])
        try:
            packet = wait_until(lambda: HandoffPacket.get_or_none(HandoffPacket.call == row.id), timeout=60,
                                message="handoff packet")
            break
        except AssertionError:
            continue
    said = [(x.speaker, x.text, x.stt_confidence) for x in Transcript.select().where(Transcript.call == row.id)
            .order_by(Transcript.ts_start_ms)]
    assert packet is not None, f"no handoff packet; transcript: {said}"
    assert packet.reason == "caller_request"
    assert packet.collected_json["service"]["value"] == "dentist"
    assert packet.caller_json["phone"] == "79161234567"
    assert "стоматолог" in packet.transcript_excerpt.lower()
    # Delivered with the transfer: the operator answered and the caller is with them.
    rig.call_row(call.uuid, state="with_operator", timeout=60)
    packet = HandoffPacket.get_by_id(packet.id)
    assert packet.status == "accepted" and packet.operator_route_id == t["route"].id
    popped = [e for e in rig.events(row.project_id) if e["type"] == "handoff.requested"]
    assert popped and popped[0]["payload"]["collected"]["service"]["value"] == "dentist"

    call.hangup()
    ended = wait_until(lambda: (lambda c: c if c.ended_at and c.extracted_json else None)(Call.get_by_id(row.id)),
                       timeout=60, message="call finished by the runtime")
    assert ended.outcome == "transferred"
    assert ended.extracted_json == {"service": "dentist"}
    assert "Стоматолог" in ended.summary and "оператор" in ended.summary.lower()
    assert ended.metadata_json["agent"]["escalation"]["reason"] == "caller_request"
