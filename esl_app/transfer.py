"""Operator transfer: blind or attended (whisper), with a fallback when nobody answers.

esl_app keeps control of the caller's channel the whole time: it rings the operator route with its
own ``originate`` (the operator leg carries ``voiceai_parent_call_uuid`` so its events reach the
caller's worker), whispers the handoff summary to the operator when the transfer is attended, then
bridges the two legs. If the operator leg fails or does not answer within the route's ring timeout,
the route's fallback runs: another route, back to the agent (with an optional apology), or a
callback task in the CRM.
"""
from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from gevent.event import Event

from core.calls.store import CallRecorder
from core.events.bus import publish
from core.events.schema import make_event
from core.telephony.causes import originate_error_outcome
from core.telephony.fs_apply import operator_spec
from core.telephony.render import dial_string
from esl_app.esl import FsEvent
from models.base import utcnow
from models.calls import Call, HandoffPacket
from models.crm import CrmTask
from models.telephony import OperatorRoute

if TYPE_CHECKING:
    from esl_app.runtime import EslRuntime

log = logging.getLogger("voiceai.esl.transfer")

HOLD_TONE = "tone_stream://%(1000,4000,425);loops=-1"  # Russian ringback cadence while the operator rings
MAX_FALLBACK_DEPTH = 3


class Transfers:
    def __init__(self, runtime: "EslRuntime") -> None:
        self.runtime = runtime

    def _domain(self) -> str:
        """The SIP domain operator phones register in (FreeSWITCH's global ``domain``).

        Asked every time: an originate from the API has no channel to expand ``${domain_name}`` on.
        """
        domain = self.runtime.fs.api("global_getvar domain").strip()
        return domain if domain and not domain.startswith("-ERR") else "127.0.0.1"

    def transfer(self, args: dict[str, Any]) -> dict[str, Any]:
        call = Call.get_by_id(uuid.UUID(str(args["call_id"])))
        worker = self.runtime.calls.worker_for_call(str(call.id))
        if worker is None or call.ended_at is not None:
            return {"ok": False, "error": "call_not_live", "detail": "Звонок уже завершён"}
        route = OperatorRoute.get_or_none((OperatorRoute.id == uuid.UUID(str(args["operator_route_id"])))
                                          & (OperatorRoute.project == call.project_id))
        if route is None:
            return {"ok": False, "error": "route_not_found"}
        packet = None
        if args.get("handoff_packet_id"):
            packet = HandoffPacket.get_or_none((HandoffPacket.id == uuid.UUID(str(args["handoff_packet_id"])))
                                               & (HandoffPacket.call == call.id))
        recorder = CallRecorder(call, self.runtime.redis)
        return self._try_route(worker, recorder, call, route, packet, args, depth=0)

    def _try_route(self, worker, recorder: CallRecorder, call: Call, route: OperatorRoute,
                   packet: HandoffPacket | None, args: dict[str, Any], depth: int) -> dict[str, Any]:
        fs = self.runtime.fs
        mode = args.get("mode") or ("attended" if route.whisper_enabled else "blind")
        spec = operator_spec(route)
        target = dial_string(spec, domain=self._domain())
        now = utcnow()
        recorder.persist({"state": "transferring", "human_status": "Перевод на оператора"})
        recorder.add_event("transfer_started", now, "Перевод на оператора",
                           {"route": route.name, "mode": mode, "target": target})
        recorder.publish("call.state_changed", now, {"state": "transferring", "human_status": "Перевод на оператора",
                                                     "route": route.name})
        if packet is not None:
            packet.operator_route = route.id
            packet.target = target
            packet.transfer_mode = mode
            packet.status = "delivered"
            packet.delivered_at = now
            packet.save()
            self._publish_handoff(call, packet, route)

        fs.api(f"uuid_broadcast {worker.fs_uuid} {HOLD_TONE} aleg")
        op_uuid = str(uuid.uuid4())
        answered = Event()
        whisper_done = Event()

        def listen(event: FsEvent) -> None:
            if event.uuid != op_uuid:
                return
            if event.name == "CHANNEL_ANSWER":
                answered.set()
            elif event.name == "PLAYBACK_STOP":
                whisper_done.set()
            elif event.name == "CHANNEL_HANGUP_COMPLETE":
                whisper_done.set()

        worker.listeners.append(listen)
        try:
            variables = ",".join([
                f"origination_uuid={op_uuid}", f"voiceai_parent_call_uuid={worker.fs_uuid}",
                f"originate_timeout={int(route.ring_timeout_s)}", "ignore_early_media=true",
                f"origination_caller_id_number={(call.from_number or '0').lstrip('+') or '0'}",
                f"voiceai_project_id={call.project_id}", f"voiceai_operator_for_call={call.id}"])
            reply = fs.bgapi(f"originate {{{variables}}}{target} &park()",
                             timeout_s=int(route.ring_timeout_s) + 15).strip()
            if not reply.startswith("+OK"):
                info = originate_error_outcome(reply)
                return self._fallback(worker, recorder, call, route, packet, args, depth,
                                      reason=info.title, reply=reply)
            if packet is not None:
                packet.status = "accepted"
                packet.accepted_at = utcnow()
                packet.save()
            whisper = args.get("whisper_file")
            if mode == "attended" and whisper:
                fs.api(f"uuid_broadcast {op_uuid} {whisper} aleg")
                whisper_done.wait(timeout=float(args.get("whisper_max_s", 30)))
            if fs.api(f"uuid_exists {op_uuid}").strip() != "true":
                return self._fallback(worker, recorder, call, route, packet, args, depth,
                                      reason="Оператор положил трубку до соединения", reply="")
            fs.api(f"uuid_break {worker.fs_uuid} all")
            bridged = fs.api(f"uuid_bridge {worker.fs_uuid} {op_uuid}").strip()
            if not bridged.startswith("+OK"):
                fs.api(f"uuid_kill {op_uuid}")
                return self._fallback(worker, recorder, call, route, packet, args, depth,
                                      reason="Не удалось соединить с оператором", reply=bridged)
            meta = dict(call.metadata_json or {})
            meta.update({"transferred_to": route.name, "operator_leg": op_uuid})
            recorder.persist({"metadata_json": meta})
            worker.tracker.transferred = True
            recorder.add_event("transfer_connected", utcnow(), "Соединено с оператором",
                               {"route": route.name, "operator_leg": op_uuid, "mode": mode})
            return {"ok": True, "operator_leg": op_uuid, "route": route.name, "mode": mode}
        finally:
            worker.listeners.remove(listen)

    def _fallback(self, worker, recorder: CallRecorder, call: Call, route: OperatorRoute,
                  packet: HandoffPacket | None, args: dict[str, Any], depth: int, reason: str,
                  reply: str) -> dict[str, Any]:
        fs = self.runtime.fs
        now = utcnow()
        recorder.add_event("operator_unavailable", now, f"Оператор не ответил: {reason}",
                           {"route": route.name, "reply": reply})
        if route.fallback_route_id and depth < MAX_FALLBACK_DEPTH:
            nxt = OperatorRoute.get_or_none(OperatorRoute.id == route.fallback_route_id)
            if nxt is not None and nxt.enabled:
                return self._try_route(worker, recorder, call, nxt, packet, args, depth + 1)
        fs.api(f"uuid_break {worker.fs_uuid} all")
        action = route.fallback_action
        if packet is not None:
            packet.status = "failed"
            packet.fallback_action = action
            packet.save()
        result: dict[str, Any] = {"ok": False, "error": "operator_unavailable", "reason_ru": reason,
                                  "fallback": action}
        if action == "callback_task":
            task = CrmTask.create(project=call.project_id, call=call.id, kind="call",
                                  title=f"Перезвонить {call.from_number}",
                                  description=(packet.summary if packet else "") or reason,
                                  due_at=utcnow())
            result["callback_task_id"] = str(task.id)
            meta = dict(call.metadata_json or {})
            meta["callback_task_id"] = str(task.id)
            recorder.persist({"metadata_json": meta})
        elif action == "hangup":
            fs.api(f"uuid_kill {worker.fs_uuid} NORMAL_CLEARING")
        apology = args.get("apology_file")
        if apology and action in ("back_to_agent", "callback_task"):
            fs.api(f"uuid_broadcast {worker.fs_uuid} {apology} aleg")
        if action != "hangup":
            recorder.persist({"state": "in_progress", "human_status": "Разговор с агентом"})
            recorder.publish("call.state_changed", utcnow(), {"state": "in_progress",
                                                               "human_status": "Разговор с агентом",
                                                               "fallback": action})
        return result

    def _publish_handoff(self, call: Call, packet: HandoffPacket, route: OperatorRoute) -> None:
        try:
            publish(self.runtime.redis, make_event("handoff.requested", call.project_id, "call", call.id, {
                "handoff_packet_id": str(packet.id), "reason": packet.reason, "reason_text": packet.reason_text,
                "caller": packet.caller_json, "collected": packet.collected_json, "summary": packet.summary,
                "transcript_excerpt": packet.transcript_excerpt, "crm_links": packet.crm_links_json,
                "route": route.name, "from_number": call.from_number}))
        except Exception:  # noqa: BLE001
            log.exception("handoff publish failed")
