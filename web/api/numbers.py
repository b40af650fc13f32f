"""Numbers API: SIP connections (trunks), phone numbers (DIDs) and operator routes.

Every change re-renders the FreeSWITCH configuration and asks esl_app to reload it
(core.telephony.fs_apply); the response says what was applied. Secrets (the trunk password) are
stored encrypted and never returned. ``/check`` and ``/test-call`` answer in words a customer can
act on, with SIP_CONNECT_FAILED / TEST_CALL_FAILED when something is wrong.
"""
from __future__ import annotations

import secrets
import uuid
from typing import Any

from flask import g

from core.errors import AppError, NotFound, ValidationFailed
from core.security.crypto import decrypt_secret, encrypt_secret
from core.telephony.command_queue import CommandQueue, CommandType, TelephonyCommand
from core.telephony.e164 import normalize_e164
from core.telephony.fs_apply import PASSWORD_CONTEXT, apply_telephony, gateway_spec, operator_spec
from core.telephony.outbound import OutboundRequest, place_call
from core.telephony.render import render_gateway, render_operator_routes, validate_allowed_ips
from core.telephony.config_types import SpecError
from core.telephony.schedule import validate_schedule
from core.telephony.trunk_check import TrunkParams, check_trunk
from models.agents import Agent
from models.base import utcnow
from models.calls import Call
from models.telephony import OperatorRoute, PhoneNumber, SipConnection
from web import audit
from web.api import schemas as S
from web.api.pagination import PAGE_QUERY, paginate
from web.api.registry import ApiGroup
from web.app import commit_now, get_redis, settings

group = ApiGroup("numbers", "Numbers")

HOST = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[A-Za-z0-9.-]+$",
        "x-message-ru": "Адрес провайдера: доменное имя или IP без схемы и порта (пример: sip.example.ru)"}
E164_IN = {"type": "string", "minLength": 5, "maxLength": 32}
SIP_CONN_FIELDS = {
    "name": S.NAME, "provider_host": HOST,
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "transport": {"type": "string", "enum": ["udp", "tcp", "tls"]},
    "auth_mode": {"type": "string", "enum": ["register", "ip"]},
    "login": {"type": ["string", "null"], "maxLength": 200},
    "password": {"type": ["string", "null"], "maxLength": 200},
    "auth_username": {"type": ["string", "null"], "maxLength": 200},
    "realm": {"type": ["string", "null"], "maxLength": 255},
    "caller_id": {"type": ["string", "null"], "maxLength": 32},
    "allowed_ips": {"type": "array", "maxItems": 50, "items": {"type": "string"}},
    "max_concurrent_calls": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000},
    "register_expires_s": {"type": "integer", "minimum": 60, "maximum": 86400},
    "enabled": {"type": "boolean"},
}
SIP_CONN_CREATE = S.obj(["name", "provider_host"], SIP_CONN_FIELDS)
SIP_CONN_UPDATE = {**S.obj([], SIP_CONN_FIELDS), "minProperties": 1}
NUMBER_FIELDS = {
    "e164_number": E164_IN, "label": {"type": "string", "maxLength": 200},
    "sip_connection_id": {"type": "string", "format": "uuid"},
    "agent_id": {"type": ["string", "null"], "format": "uuid"},
    "schedule": {"type": ["object", "null"]},
    "timezone": {"type": ["string", "null"], "format": "timezone"},
    "after_hours_action": {"type": "string", "enum": ["operator", "message", "hangup"]},
    "after_hours_message": {"type": ["string", "null"], "maxLength": 1000},
    "recording_enabled": {"type": "boolean"},
    "recording_notice_text": {"type": ["string", "null"], "maxLength": 1000},
    "operator_route_id": {"type": ["string", "null"], "format": "uuid"},
    "enabled": {"type": "boolean"},
}
NUMBER_CREATE = S.obj(["e164_number", "sip_connection_id"], NUMBER_FIELDS)
NUMBER_UPDATE = {**S.obj([], {k: v for k, v in NUMBER_FIELDS.items() if k != "e164_number"}), "minProperties": 1}
ROUTE_FIELDS = {
    "name": S.NAME, "kind": {"type": "string", "enum": ["sip_extension", "ring_group", "external_number"]},
    "target": {"type": "string", "minLength": 1, "maxLength": 500},
    "sip_connection_id": {"type": ["string", "null"], "format": "uuid"},
    "ring_timeout_s": {"type": "integer", "minimum": 5, "maximum": 600},
    "ring_strategy": {"type": "string", "enum": ["simultaneous", "sequential"]},
    "fallback_action": {"type": "string", "enum": ["back_to_agent", "callback_task", "voicemail", "hangup"]},
    "fallback_route_id": {"type": ["string", "null"], "format": "uuid"},
    "whisper_enabled": {"type": "boolean"},
    "caller_id": {"type": ["string", "null"], "maxLength": 32},
    "enabled": {"type": "boolean"},
}
ROUTE_CREATE = S.obj(["name", "kind", "target"], ROUTE_FIELDS)
ROUTE_UPDATE = {**S.obj([], ROUTE_FIELDS), "minProperties": 1}
TEST_CALL = S.obj(["to"], {"to": E164_IN, "timeout_s": {"type": "integer", "minimum": 5, "maximum": 60}})

S.COMPONENTS.update({
    "SipConnection": S.obj(["id", "name", "provider_host", "port", "transport", "auth_mode", "status",
                            "gateway_name", "has_password"], {
        "id": S.UUID, "project_id": S.UUID, "name": {"type": "string"}, "provider_host": {"type": "string"},
        "port": {"type": "integer"}, "transport": {"type": "string"}, "auth_mode": {"type": "string"},
        "login": {"type": ["string", "null"]}, "auth_username": {"type": ["string", "null"]},
        "realm": {"type": ["string", "null"]}, "caller_id": {"type": ["string", "null"]},
        "allowed_ips": {"type": "array", "items": {"type": "string"}}, "gateway_name": {"type": "string"},
        "has_password": {"type": "boolean"}, "status": {"type": "string"},
        "max_concurrent_calls": {"type": ["integer", "null"]}, "register_expires_s": {"type": "integer"},
        "last_check_at": S.TS_NULL, "last_check": {"type": "object"}, "created_at": S.TS,
        "applied": {"type": "object"}}),
    "PhoneNumber": S.obj(["id", "e164_number", "sip_connection_id", "recording_enabled", "status"], {
        "id": S.UUID, "project_id": S.UUID, "e164_number": {"type": "string"}, "label": {"type": "string"},
        "sip_connection_id": S.UUID, "agent_id": {"type": ["string", "null"]},
        "schedule": {"type": "object"}, "timezone": {"type": ["string", "null"]},
        "after_hours_action": {"type": "string"}, "after_hours_message": {"type": ["string", "null"]},
        "recording_enabled": {"type": "boolean"}, "recording_notice_text": {"type": ["string", "null"]},
        "operator_route_id": {"type": ["string", "null"]}, "status": {"type": "string"}, "created_at": S.TS,
        "applied": {"type": "object"}}),
    "OperatorRoute": S.obj(["id", "name", "kind", "target", "ring_timeout_s", "fallback_action"], {
        "id": S.UUID, "project_id": S.UUID, "name": {"type": "string"}, "kind": {"type": "string"},
        "target": {"type": "string"}, "sip_connection_id": {"type": ["string", "null"]},
        "ring_timeout_s": {"type": "integer"}, "ring_strategy": {"type": "string"},
        "fallback_action": {"type": "string"}, "fallback_route_id": {"type": ["string", "null"]},
        "whisper_enabled": {"type": "boolean"}, "caller_id": {"type": ["string", "null"]},
        "enabled": {"type": "boolean"}, "created_at": S.TS, "applied": {"type": "object"}}),
    "TrunkCheck": {"type": "object", "required": ["ok", "steps", "reason_ru"], "additionalProperties": True,
                   "properties": {"ok": {"type": "boolean"}, "steps": {"type": "array"},
                                  "reason_ru": {"type": "string"}}},
    "TestCall": S.obj(["ok", "call_id"], {"ok": {"type": "boolean"}, "call_id": S.UUID,
                                          "reason_ru": {"type": "string"}, "outcome": {"type": "string"}},
                      additional=True),
})




def serialize_conn(c: SipConnection) -> dict:
    return {"id": str(c.id), "project_id": str(c.project_id), "name": c.name, "provider_host": c.provider_host,
            "port": c.port, "transport": c.transport, "auth_mode": c.auth_mode, "login": c.login,
            "auth_username": c.auth_username, "realm": c.realm, "caller_id": c.caller_id,
            "allowed_ips": list(c.allowed_ips_json or []), "gateway_name": c.gateway_name,
            "has_password": bool(c.password_encrypted), "status": c.status,
            "max_concurrent_calls": c.max_concurrent_calls, "register_expires_s": c.register_expires_s,
            "last_check_at": S.iso(c.last_check_at), "last_check": c.last_check_result_json or {},
            "created_at": c.created_at.isoformat()}


def serialize_number(n: PhoneNumber) -> dict:
    return {"id": str(n.id), "project_id": str(n.project_id), "e164_number": n.e164_number, "label": n.label,
            "sip_connection_id": str(n.sip_connection_id), "agent_id": S.sid(n.agent_id),
            "schedule": n.schedule_json or {}, "timezone": n.timezone, "after_hours_action": n.after_hours_action,
            "after_hours_message": n.after_hours_message, "recording_enabled": n.recording_enabled,
            "recording_notice_text": n.recording_notice_text, "operator_route_id": S.sid(n.operator_route_id),
            "status": n.status, "created_at": n.created_at.isoformat()}


def serialize_route(r: OperatorRoute) -> dict:
    return {"id": str(r.id), "project_id": str(r.project_id), "name": r.name, "kind": r.kind, "target": r.target,
            "sip_connection_id": S.sid(r.sip_connection_id), "ring_timeout_s": r.ring_timeout_s,
            "ring_strategy": r.ring_strategy, "fallback_action": r.fallback_action,
            "fallback_route_id": S.sid(r.fallback_route_id), "whisper_enabled": r.whisper_enabled,
            "caller_id": r.caller_id, "enabled": r.enabled, "created_at": r.created_at.isoformat()}


def _get(model, raw_id: str, entity: str):
    try:
        oid = uuid.UUID(str(raw_id))
    except ValueError:
        raise NotFound(entity, raw_id)
    row = model.for_project(g.project.id).where(model.id == oid).first()
    if row is None:
        raise NotFound(entity, raw_id)
    return row


def _ref(model, raw_id: Any, field: str, entity: str):
    """A referenced row of the same project, or a field error (never another tenant's row)."""
    if raw_id in (None, ""):
        return None
    row = model.for_project(g.project.id).where(model.id == uuid.UUID(str(raw_id))).first()
    if row is None:
        raise ValidationFailed({field: f"{entity} не найден в этом проекте"})
    return row


def _e164(raw: str, field: str) -> str:
    try:
        return normalize_e164(raw)
    except ValueError as exc:
        raise ValidationFailed({field: str(exc)})


def _apply() -> dict:
    """Re-render FreeSWITCH config; a broken FreeSWITCH directory must not lose the saved change."""
    try:
        return apply_telephony(get_redis(), settings()).to_dict()
    except FileNotFoundError:
        return {"error": f"Каталог конфигурации FreeSWITCH {settings().freeswitch_conf_dir} не найден: "
                         "изменения сохранены и будут применены, когда FreeSWITCH будет установлен"}
    except OSError as exc:
        return {"error": f"Не удалось записать конфигурацию FreeSWITCH: {exc.strerror or exc}"}


# ---- SIP connections ----------------------------------------------------------------------------

def _conn_fields(body: dict, conn: SipConnection | None) -> dict:
    errors = validate_allowed_ips(body.get("allowed_ips"))
    data: dict[str, Any] = {}
    for key in ("name", "provider_host", "port", "transport", "auth_mode", "login", "auth_username", "realm",
                "max_concurrent_calls", "register_expires_s"):
        if key in body:
            data[key] = body[key]
    if "allowed_ips" in body:
        data["allowed_ips_json"] = body["allowed_ips"]
    if body.get("caller_id"):
        try:
            data["caller_id"] = normalize_e164(body["caller_id"])
        except ValueError as exc:
            errors["caller_id"] = str(exc)
    elif "caller_id" in body:
        data["caller_id"] = None
    if "password" in body:
        data["password_encrypted"] = encrypt_secret(body["password"], PASSWORD_CONTEXT) if body["password"] else None
    if "enabled" in body:
        data["status"] = "new" if body["enabled"] else "disabled"
    mode = data.get("auth_mode", conn.auth_mode if conn else "register")
    login = data.get("login", conn.login if conn else None)
    has_pw = bool(data.get("password_encrypted", conn.password_encrypted if conn else None))
    if mode == "register" and not login:
        errors["login"] = "Для регистрации у провайдера нужен логин"
    if mode == "register" and not has_pw:
        errors["password"] = "Для регистрации у провайдера нужен пароль"
    if errors:
        raise ValidationFailed(errors)
    return data


def _render_check(conn: SipConnection) -> None:
    try:
        render_gateway(gateway_spec(conn))
    except SpecError as exc:
        field = {"host": "provider_host", "name": "name"}.get(exc.field, exc.field)
        raise ValidationFailed({field: exc.message})


@group.route("/sip-connections", ["POST"], permission="numbers.manage", body=SIP_CONN_CREATE,
             responses={201: S.ref("SipConnection"), 422: None}, summary="Подключить SIP-транк провайдера")
def create_connection():
    data = _conn_fields(g.body, None)
    conn = SipConnection(project=g.project.id, gateway_name=f"voiceai_{secrets.token_hex(6)}",
                         created_by=g.principal.id if g.principal.kind == "user" else None, **data)
    _render_check(conn)
    conn.save(force_insert=True)
    out = serialize_conn(conn)
    audit.record("sip_connection.create", "sip_connection", conn.id, after=out, project_id=g.project.id)
    return {**out, "applied": _apply()}, 201


@group.route("/sip-connections", ["GET"], permission="numbers.read", responses={200: S.page_of("SipConnection")},
             query=PAGE_QUERY, summary="SIP-подключения проекта")
def list_connections():
    return paginate(SipConnection.for_project(g.project.id), SipConnection.created_at, SipConnection.id,
                    serialize_conn)


@group.route("/sip-connections/<conn_id>", ["GET"], permission="numbers.read",
             responses={200: S.ref("SipConnection")}, summary="SIP-подключение")
def get_connection(conn_id: str):
    return serialize_conn(_get(SipConnection, conn_id, "sip_connection"))


@group.route("/sip-connections/<conn_id>", ["PATCH"], permission="numbers.manage", body=SIP_CONN_UPDATE,
             responses={200: S.ref("SipConnection")}, summary="Изменить SIP-подключение")
def update_connection(conn_id: str):
    conn = _get(SipConnection, conn_id, "sip_connection")
    before = serialize_conn(conn)
    for key, value in _conn_fields(g.body, conn).items():
        setattr(conn, key, value)
    _render_check(conn)
    conn.save()
    after = serialize_conn(conn)
    if "password" in g.body:
        before["password"], after["password"] = "old", "new"  # masked in the audit row
    audit.record("sip_connection.update", "sip_connection", conn.id, before=before, after=after,
                 project_id=g.project.id)
    after.pop("password", None)
    return {**after, "applied": _apply()}


@group.route("/sip-connections/<conn_id>", ["DELETE"], permission="numbers.manage",
             responses={200: S.ref("Ok"), 409: None}, summary="Удалить SIP-подключение")
def delete_connection(conn_id: str):
    conn = _get(SipConnection, conn_id, "sip_connection")
    used = PhoneNumber.select().where(PhoneNumber.sip_connection == conn.id).count()
    if used:
        raise AppError("CONFLICT", {"reason": f"К подключению привязано номеров: {used}. Сначала перенесите или "
                                              "удалите номера."})
    before = serialize_conn(conn)
    conn.delete_instance()
    audit.record("sip_connection.delete", "sip_connection", conn.id, before=before, project_id=g.project.id)
    _apply()
    return {"ok": True}


def _gateway_status(conn: SipConnection) -> str | None:
    """``sofia status gateway <name>`` through esl_app; None when esl_app/FreeSWITCH is not answering."""
    queue = CommandQueue(get_redis(), settings().fs_node)
    cmd = TelephonyCommand(type=CommandType.FS_API.value, project_id=str(conn.project_id), trace_id=g.trace_id,
                           args={"command": f"sofia status gateway {conn.gateway_name}"})
    queue.submit(cmd)
    result = queue.wait_result(cmd.id, 5)
    return result.get("body") if result and result.get("body") is not None else None


@group.route("/sip-connections/<conn_id>/check", ["POST"], permission="numbers.test_call",
             responses={200: S.ref("TrunkCheck"), 502: None},
             summary="Проверить подключение: DNS, доступность, регистрация, состояние шлюза")
def check_connection(conn_id: str):
    conn = _get(SipConnection, conn_id, "sip_connection")
    password = decrypt_secret(conn.password_encrypted, PASSWORD_CONTEXT) if conn.password_encrypted else None
    status_text = _gateway_status(conn)
    params = TrunkParams.from_sip_connection(conn, password)
    report = check_trunk(params, gateway_status=status_text)
    result = report.to_dict()
    if status_text is None:
        result["freeswitch"] = "Телефонный модуль (FreeSWITCH) не ответил: состояние шлюза не проверено"
    SipConnection.update(status="ok" if report.ok else "failed", last_check_at=utcnow(),
                         last_check_result_json=result, last_error_code=report.error_code,
                         updated_at=utcnow()).where(SipConnection.id == conn.id).execute()
    audit.record("sip_connection.check", "sip_connection", conn.id, after={"ok": report.ok,
                                                                           "reason": report.reason_ru},
                 project_id=g.project.id)
    if not report.ok:
        g.commit_despite_error = True  # keep the recorded check result
        raise AppError(report.error_code or "SIP_CONNECT_FAILED",
                       {"reason": report.reason_ru, "how_to_fix": report.how_to_fix_ru, "steps": result["steps"]})
    return result


@group.route("/sip-connections/<conn_id>/test-call", ["POST"], permission="numbers.test_call", body=TEST_CALL,
             responses={200: S.ref("TestCall"), 502: None},
             summary="Тест-звонок через подключение: звонит на номер и проигрывает фразу")
def test_call(conn_id: str):
    conn = _get(SipConnection, conn_id, "sip_connection")
    to = _e164(g.body["to"], "to")
    timeout = int(g.body.get("timeout_s", 30))
    phrase = f"{settings().fs_sounds_dir.rstrip('/')}/test_call_ru.wav"
    call, cmd = place_call(get_redis(), OutboundRequest(
        project_id=g.project.id, to_e164=to, sip_connection=conn, timeout_s=timeout, is_test=True,
        app=f"&playback({phrase})", initiated_by=g.principal.id if g.principal.kind == "user" else None),
        node=settings().fs_node, before_submit=commit_now)
    result = CommandQueue(get_redis(), settings().fs_node).wait_result(cmd.id, timeout + 15)
    audit.record("sip_connection.test_call", "call", call.id, after={"to": to, "result": (result or {}).get("outcome")},
                 project_id=g.project.id)
    if result is None:
        g.commit_despite_error = True
        raise AppError("TEST_CALL_FAILED", {"call_id": str(call.id),
                                            "reason": "Телефонный модуль (FreeSWITCH) не ответил вовремя"})
    if not result.get("ok"):
        g.commit_despite_error = True
        raise AppError("TEST_CALL_FAILED", {"call_id": str(call.id), "outcome": result.get("outcome"),
                                            "reason": result.get("reason_ru") or result.get("detail"),
                                            "sip_reply": result.get("reply")})
    return {"ok": True, "call_id": str(call.id), "outcome": "answered",
            "reason_ru": "Тест-звонок прошёл: абонент ответил и услышал фразу"}


# ---- phone numbers --------------------------------------------------------------------------------

def _number_fields(body: dict) -> dict:
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if "schedule" in body and body["schedule"]:
        errors.update(validate_schedule(body["schedule"], prefix="schedule"))
        data["schedule_json"] = body["schedule"]
    elif "schedule" in body:
        data["schedule_json"] = {}
    for key in ("label", "timezone", "after_hours_action", "after_hours_message", "recording_enabled",
                "recording_notice_text"):
        if key in body:
            data[key] = body[key]
    if "sip_connection_id" in body:
        data["sip_connection"] = _ref(SipConnection, body["sip_connection_id"], "sip_connection_id",
                                      "SIP-подключение").id
    if "agent_id" in body:
        agent = _ref(Agent, body["agent_id"], "agent_id", "Агент")
        data["agent"] = agent.id if agent else None
    if "operator_route_id" in body:
        route = _ref(OperatorRoute, body["operator_route_id"], "operator_route_id", "Маршрут оператора")
        data["operator_route"] = route.id if route else None
    if "enabled" in body:
        data["status"] = "active" if body["enabled"] else "disabled"
    if errors:
        raise ValidationFailed(errors)
    return data


def _check_after_hours(n: PhoneNumber) -> None:
    if n.schedule_json and n.after_hours_action == "operator" and not n.operator_route_id:
        raise ValidationFailed({"operator_route_id": "Для перевода на оператора в нерабочее время выберите маршрут"})


@group.route("/phone-numbers", ["POST"], permission="numbers.manage", body=NUMBER_CREATE,
             responses={201: S.ref("PhoneNumber"), 409: None, 422: None},
             summary="Подключить номер: агент, расписание, запись разговоров")
def create_number():
    e164 = _e164(g.body["e164_number"], "e164_number")
    if PhoneNumber.select().where(PhoneNumber.e164_number == e164).exists():
        raise AppError("CONFLICT", {"fields": {"e164_number": "Этот номер уже подключён"}})
    number = PhoneNumber(project=g.project.id, e164_number=e164, **_number_fields(g.body))
    _check_after_hours(number)
    number.save(force_insert=True)
    out = serialize_number(number)
    audit.record("phone_number.create", "phone_number", number.id, after=out, project_id=g.project.id)
    return {**out, "applied": _apply()}, 201


@group.route("/phone-numbers", ["GET"], permission="numbers.read", responses={200: S.page_of("PhoneNumber")},
             query=PAGE_QUERY, summary="Номера проекта")
def list_numbers():
    return paginate(PhoneNumber.for_project(g.project.id), PhoneNumber.created_at, PhoneNumber.id, serialize_number)


@group.route("/phone-numbers/<number_id>", ["GET"], permission="numbers.read",
             responses={200: S.ref("PhoneNumber")}, summary="Номер")
def get_number(number_id: str):
    return serialize_number(_get(PhoneNumber, number_id, "phone_number"))


@group.route("/phone-numbers/<number_id>", ["PATCH"], permission="numbers.manage", body=NUMBER_UPDATE,
             responses={200: S.ref("PhoneNumber")}, summary="Изменить номер")
def update_number(number_id: str):
    number = _get(PhoneNumber, number_id, "phone_number")
    before = serialize_number(number)
    for key, value in _number_fields(g.body).items():
        setattr(number, key, value)
    _check_after_hours(number)
    number.save()
    after = serialize_number(number)
    audit.record("phone_number.update", "phone_number", number.id, before=before, after=after,
                 project_id=g.project.id)
    return {**after, "applied": _apply()}


@group.route("/phone-numbers/<number_id>", ["DELETE"], permission="numbers.manage",
             responses={200: S.ref("Ok")}, summary="Отключить и удалить номер")
def delete_number(number_id: str):
    number = _get(PhoneNumber, number_id, "phone_number")
    before = serialize_number(number)
    Call.update(phone_number=None).where(Call.phone_number == number.id).execute()
    number.delete_instance()
    audit.record("phone_number.delete", "phone_number", number.id, before=before, project_id=g.project.id)
    _apply()
    return {"ok": True}


# ---- operator routes --------------------------------------------------------------------------------

def _route_fields(body: dict, route: OperatorRoute | None) -> dict:
    data: dict[str, Any] = {k: body[k] for k in ("name", "kind", "target", "ring_timeout_s", "ring_strategy",
                                                 "fallback_action", "whisper_enabled", "enabled") if k in body}
    if "sip_connection_id" in body:
        conn = _ref(SipConnection, body["sip_connection_id"], "sip_connection_id", "SIP-подключение")
        data["sip_connection"] = conn.id if conn else None
    if "fallback_route_id" in body:
        fb = _ref(OperatorRoute, body["fallback_route_id"], "fallback_route_id", "Резервный маршрут")
        if fb is not None and route is not None and fb.id == route.id:
            raise ValidationFailed({"fallback_route_id": "Маршрут не может быть резервным сам для себя"})
        data["fallback_route"] = fb.id if fb else None
    if body.get("caller_id"):
        data["caller_id"] = _e164(body["caller_id"], "caller_id")
    kind = data.get("kind", route.kind if route else None)
    if kind == "external_number":
        targets = [t.strip() for t in str(data.get("target", route.target if route else "")).split(",")]
        data["target"] = ",".join(_e164(t, "target") for t in targets if t)
        if not data.get("sip_connection", route.sip_connection_id if route else None):
            raise ValidationFailed({"sip_connection_id": "Для внешнего номера выберите SIP-подключение"})
    return data


def _route_render_check(route: OperatorRoute) -> None:
    try:
        render_operator_routes([operator_spec(route)])
    except SpecError as exc:
        raise ValidationFailed({"target" if exc.field == "targets" else exc.field: exc.message})


@group.route("/operator-routes", ["POST"], permission="numbers.manage", body=ROUTE_CREATE,
             responses={201: S.ref("OperatorRoute"), 422: None},
             summary="Маршрут оператора: SIP-номер, группа или внешний номер")
def create_route():
    route = OperatorRoute(project=g.project.id, **_route_fields(g.body, None))
    _route_render_check(route)
    route.save(force_insert=True)
    out = serialize_route(route)
    audit.record("operator_route.create", "operator_route", route.id, after=out, project_id=g.project.id)
    return {**out, "applied": _apply()}, 201


@group.route("/operator-routes", ["GET"], permission="numbers.read", responses={200: S.page_of("OperatorRoute")},
             query=PAGE_QUERY, summary="Маршруты операторов")
def list_routes():
    return paginate(OperatorRoute.for_project(g.project.id), OperatorRoute.created_at, OperatorRoute.id,
                    serialize_route)


@group.route("/operator-routes/<route_id>", ["PATCH"], permission="numbers.manage", body=ROUTE_UPDATE,
             responses={200: S.ref("OperatorRoute")}, summary="Изменить маршрут оператора")
def update_route(route_id: str):
    route = _get(OperatorRoute, route_id, "operator_route")
    before = serialize_route(route)
    for key, value in _route_fields(g.body, route).items():
        setattr(route, key, value)
    _route_render_check(route)
    route.save()
    after = serialize_route(route)
    audit.record("operator_route.update", "operator_route", route.id, before=before, after=after,
                 project_id=g.project.id)
    return {**after, "applied": _apply()}


@group.route("/operator-routes/<route_id>", ["DELETE"], permission="numbers.manage",
             responses={200: S.ref("Ok")}, summary="Удалить маршрут оператора")
def delete_route(route_id: str):
    route = _get(OperatorRoute, route_id, "operator_route")
    before = serialize_route(route)
    route.delete_instance()
    audit.record("operator_route.delete", "operator_route", route.id, before=before, project_id=g.project.id)
    _apply()
    return {"ok": True}


# ---- routing rules -------------------------------------------------------------------------------

RULE_FIELDS = {
    "phone_number_id": {"type": ["string", "null"], "format": "uuid"},
    "priority": {"type": "integer", "minimum": 0, "maximum": 10000},
    "name": {"type": "string", "maxLength": 200},
    "match": {"type": "object"},
    "action": {"type": "string", "enum": ["agent", "operator", "hangup", "message"]},
    "agent_id": {"type": ["string", "null"], "format": "uuid"},
    "operator_route_id": {"type": ["string", "null"], "format": "uuid"},
    "message_text": {"type": ["string", "null"], "maxLength": 1000},
    "enabled": {"type": "boolean"},
}
RULE_CREATE = S.obj(["action"], RULE_FIELDS)
RULE_UPDATE = {**S.obj([], RULE_FIELDS), "minProperties": 1}
S.COMPONENTS["RoutingRule"] = S.obj(["id", "priority", "action", "match", "enabled"], {
    "id": S.UUID, "project_id": S.UUID, "phone_number_id": {"type": ["string", "null"]},
    "priority": {"type": "integer"}, "name": {"type": "string"}, "match": {"type": "object"},
    "action": {"type": "string"}, "agent_id": {"type": ["string", "null"]},
    "operator_route_id": {"type": ["string", "null"]}, "message_text": {"type": ["string", "null"]},
    "enabled": {"type": "boolean"}, "created_at": S.TS, "prompt": {"type": ["string", "null"]}})


def serialize_rule(r) -> dict:  # type: ignore[no-untyped-def]
    return {"id": str(r.id), "project_id": str(r.project_id), "phone_number_id": S.sid(r.phone_number_id),
            "priority": r.priority, "name": r.name, "match": r.match_json or {}, "action": r.action,
            "agent_id": S.sid(r.agent_id), "operator_route_id": S.sid(r.operator_route_id),
            "message_text": r.message_text, "enabled": r.enabled, "created_at": r.created_at.isoformat()}


def _rule_fields(body: dict, rule) -> dict:  # type: ignore[no-untyped-def]
    from core.telephony.routing import validate_match
    data: dict[str, Any] = {k: body[k] for k in ("priority", "name", "action", "message_text", "enabled") if k in body}
    errors: dict[str, str] = {}
    if "match" in body:
        errors.update(validate_match(body["match"]))
        data["match_json"] = body["match"]
    if "phone_number_id" in body:
        n = _ref(PhoneNumber, body["phone_number_id"], "phone_number_id", "Номер")
        data["phone_number"] = n.id if n else None
    if "agent_id" in body:
        a = _ref(Agent, body["agent_id"], "agent_id", "Агент")
        data["agent"] = a.id if a else None
    if "operator_route_id" in body:
        o = _ref(OperatorRoute, body["operator_route_id"], "operator_route_id", "Маршрут оператора")
        data["operator_route"] = o.id if o else None
    action = data.get("action", rule.action if rule else "agent")
    pick = lambda key: data.get(key, getattr(rule, f"{key}_id", None) if rule else None)  # noqa: E731
    if action == "agent" and not pick("agent"):
        errors["agent_id"] = "Выберите агента для этого правила"
    if action == "operator" and not pick("operator_route"):
        errors["operator_route_id"] = "Выберите маршрут оператора для этого правила"
    if action == "message" and not data.get("message_text", rule.message_text if rule else None):
        errors["message_text"] = "Напишите сообщение, которое услышит клиент"
    if errors:
        raise ValidationFailed(errors)
    return data


def _rule_prompt(rule) -> str | None:  # type: ignore[no-untyped-def]
    """Speak the rule's message once now, so FreeSWITCH can play it without synthesis at call time."""
    if rule.action != "message" or not rule.message_text:
        return None
    from pathlib import Path
    from core.engines.text_norm_ru import normalize
    from core.telephony.prompts import PromptSynthesisError, synthesize
    target = Path(settings().fs_sounds_dir) / f"routing_{rule.id}.wav"
    try:
        synthesize(normalize(rule.message_text), target)
    except (PromptSynthesisError, OSError) as exc:
        return f"Сообщение не озвучено: {exc}"
    return str(target)


@group.route("/routing-rules", ["POST"], permission="numbers.manage", body=RULE_CREATE,
             responses={201: S.ref("RoutingRule"), 422: None},
             summary="Правило маршрутизации: по номеру звонящего и времени — агент, оператор или сообщение")
def create_rule():
    from models.telephony import RoutingRule
    rule = RoutingRule(project=g.project.id, **_rule_fields(g.body, None))
    rule.save(force_insert=True)
    out = serialize_rule(rule)
    audit.record("routing_rule.create", "routing_rule", rule.id, after=out, project_id=g.project.id)
    return {**out, "prompt": _rule_prompt(rule)}, 201


@group.route("/routing-rules", ["GET"], permission="numbers.read", responses={200: S.page_of("RoutingRule")},
             query=PAGE_QUERY, summary="Правила маршрутизации проекта")
def list_rules():
    from models.telephony import RoutingRule
    return paginate(RoutingRule.for_project(g.project.id), RoutingRule.created_at, RoutingRule.id, serialize_rule)


@group.route("/routing-rules/<rule_id>", ["PATCH"], permission="numbers.manage", body=RULE_UPDATE,
             responses={200: S.ref("RoutingRule")}, summary="Изменить правило маршрутизации")
def update_rule(rule_id: str):
    from models.telephony import RoutingRule
    rule = _get(RoutingRule, rule_id, "routing_rule")
    before = serialize_rule(rule)
    for key, value in _rule_fields(g.body, rule).items():
        setattr(rule, key, value)
    rule.save()
    after = serialize_rule(rule)
    audit.record("routing_rule.update", "routing_rule", rule.id, before=before, after=after, project_id=g.project.id)
    return {**after, "prompt": _rule_prompt(rule)}


@group.route("/routing-rules/<rule_id>", ["DELETE"], permission="numbers.manage",
             responses={200: S.ref("Ok")}, summary="Удалить правило маршрутизации")
def delete_rule(rule_id: str):
    from models.telephony import RoutingRule
    rule = _get(RoutingRule, rule_id, "routing_rule")
    before = serialize_rule(rule)
    rule.delete_instance()
    audit.record("routing_rule.delete", "routing_rule", rule.id, before=before, project_id=g.project.id)
    return {"ok": True}
