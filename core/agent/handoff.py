"""The operator handoff packet: stored from a session, then delivered by the telephony layer.

When ``AgentSession.escalation`` is set, the voice loop calls ``create_packet(session)`` and passes
``transfer_args(session, packet, fallback_route_id)`` to ``esl_app.transfer.Transfers.transfer``,
which marks the packet delivered/accepted/failed, publishes ``handoff.requested`` with its contents
and, for an attended transfer, plays ``whisper_text(packet)`` (synthesized) to the operator.
"""
from __future__ import annotations

import uuid
from typing import Any

from models.calls import HandoffPacket
from models.telephony import OperatorRoute


def _route_id(project_id: uuid.UUID, raw: str | None) -> uuid.UUID | None:
    """The escalation's route when it still exists in the project (a deleted route is not an error here)."""
    if not raw:
        return None
    try:
        rid = uuid.UUID(str(raw))
    except ValueError:
        return None
    exists = OperatorRoute.select().where((OperatorRoute.id == rid) & (OperatorRoute.project == project_id)).exists()
    return rid if exists else None


def create_packet(session: Any, call_id: uuid.UUID | None = None) -> HandoffPacket:
    """Write the ``handoff_packets`` row of the session's escalation (status pending)."""
    ctx = session.ctx
    call = call_id or ctx.call_id
    if call is None:
        raise ValueError("a handoff packet belongs to a call; the playground shows the packet without storing it")
    data = session.handoff_packet()
    return HandoffPacket.create(
        project=ctx.project_id, call=call, reason=data["reason"][:100], reason_text=data["reason_text"],
        caller_json=data["caller"], collected_json=data["collected"], summary=data["summary"],
        transcript_excerpt=data["transcript_excerpt"], crm_links_json=data["crm_links"],
        operator_route=_route_id(ctx.project_id, data["operator_route_id"]), trace_id=ctx.trace_id)


def transfer_args(packet: HandoffPacket, fallback_route_id: str | None = None) -> dict[str, Any] | None:
    """Arguments of ``Transfers.transfer``: the packet's route, else the number's; None when neither."""
    route = str(packet.operator_route_id) if packet.operator_route_id else fallback_route_id
    if not route:
        return None
    return {"call_id": str(packet.call_id), "operator_route_id": route, "handoff_packet_id": str(packet.id)}


def whisper_text(packet: HandoffPacket) -> str:
    """What an attended transfer says to the operator before bridging (short, for TTS)."""
    caller = packet.caller_json or {}
    who = caller.get("name") or caller.get("phone") or "клиент"
    parts = [f"Перевод от голосового помощника. {who}."]
    if packet.reason_text:
        parts.append(f"Причина: {packet.reason_text.rstrip('.')}.")
    collected = packet.collected_json or {}
    if collected:
        parts.append(" ".join(f"{v['label']}: {v['value']}." for v in collected.values()
                              if isinstance(v, dict) and "label" in v))
    return " ".join(parts)
