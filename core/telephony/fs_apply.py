"""Applying the telephony configuration in the database to FreeSWITCH.

FreeSWITCH configuration is global to a node, so every change re-renders the whole generated set
(all projects' gateways, trunk ACL, numbers, operator routes) into the ``voiceai_generated``
directories under VOICEAI_FS_CONF_DIR and then asks esl_app, through the telephony command queue,
to reload only what changed: ``reloadxml`` for dialplan, ``reloadacl`` for the ACL, ``killgw`` for
changed or removed gateways and ``sofia profile external rescan`` to (re)start gateways.
Administrators' own files are never touched (core.telephony.fs_files).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import redis

from core.config import Settings
from core.security.crypto import decrypt_secret
from core.telephony.command_queue import CommandQueue, CommandType, TelephonyCommand
from core.telephony.config_types import GatewaySpec, NumberRoute, OperatorRouteSpec
from core.telephony.fs_files import sync_generated
from core.telephony.render import (gateway_filename, number_filename, operator_extension, render_acl,
                                   render_gateway, render_number, render_operator_routes)
from core.tracing import current_trace_id
from models.saas import Project
from models.telephony import OperatorRoute, PhoneNumber, SipConnection

log = logging.getLogger("voiceai.telephony.apply")

# Where each kind of generated file goes under VOICEAI_FS_CONF_DIR (docs/telephony.md, section 3).
LAYOUT = {
    "gateways": "sip_profiles/external/voiceai_generated",
    "acl": "autoload_configs/voiceai_acl/voiceai_generated",
    "numbers": "dialplan/public/voiceai_generated",
    "operators": "dialplan/voiceai_operators/voiceai_generated",
}
PASSWORD_CONTEXT = "sip_connections.password_encrypted"


@dataclass
class ApplyResult:
    changed_gateways: list[str] = field(default_factory=list)
    removed_gateways: list[str] = field(default_factory=list)
    dialplan_changed: bool = False
    acl_changed: bool = False
    commands: list[str] = field(default_factory=list)  # FreeSWITCH commands queued
    command_id: str | None = None  # telephony command carrying them (wait on it for the result)
    errors: dict[str, str] = field(default_factory=dict)  # object -> Russian reason it was skipped

    def to_dict(self) -> dict:
        return {"changed_gateways": self.changed_gateways, "removed_gateways": self.removed_gateways,
                "dialplan_changed": self.dialplan_changed, "acl_changed": self.acl_changed,
                "commands": self.commands, "command_id": self.command_id, "errors": self.errors}


def gateway_spec(conn: SipConnection) -> GatewaySpec:
    password = decrypt_secret(conn.password_encrypted, PASSWORD_CONTEXT) if conn.password_encrypted else None
    return GatewaySpec(name=conn.gateway_name, host=conn.provider_host, port=conn.port, transport=conn.transport,
                       login=conn.login, password=password, register=conn.auth_mode == "register",
                       caller_id=conn.caller_id, realm=conn.realm, expire_s=conn.register_expires_s,
                       connection_id=str(conn.id), allowed_ips=tuple(conn.allowed_ips_json or ()),
                       auth_username=conn.auth_username, from_user=conn.from_user,
                       from_domain=conn.from_domain, outbound_proxy=conn.outbound_proxy)


def operator_spec(route: OperatorRoute) -> OperatorRouteSpec:
    gateway = None
    if route.sip_connection_id:
        conn = SipConnection.get_or_none(SipConnection.id == route.sip_connection_id)
        gateway = conn.gateway_name if conn else None
    return OperatorRouteSpec(route_id=str(route.id), name=route.name, kind=route.kind,
                             targets=tuple(t.strip() for t in route.target.split(",") if t.strip()),
                             gateway_name=gateway, ring_timeout_s=route.ring_timeout_s,
                             ring_strategy=route.ring_strategy, caller_id=route.caller_id)


def number_route(number: PhoneNumber, settings: Settings, project_tz: str) -> NumberRoute:
    sounds = Path(settings.fs_sounds_dir)
    custom_msg = sounds / f"after_hours_{number.id}.wav"
    return NumberRoute(
        number_id=str(number.id), project_id=str(number.project_id), e164=number.e164_number,
        agent_id=str(number.agent_id) if number.agent_id else None,
        gateway_name=number.sip_connection.gateway_name if number.sip_connection_id else None,
        schedule=number.schedule_json or None, timezone=number.timezone or project_tz,
        recording_enabled=number.recording_enabled, after_hours_action=number.after_hours_action,
        after_hours_message_file=str(custom_msg if custom_msg.exists() else sounds / "after_hours_ru.wav"),
        operator_route_extension=operator_extension(str(number.operator_route_id)) if number.operator_route_id else None,
        audio_ws_url=f"ws://{settings.audio_ws_host}:{settings.audio_ws_port}/audio",
        recording_notice_file=str(sounds / "recording_notice_ru.wav"))


def render_all(settings: Settings) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """{layout key: {filename: content}} for everything enabled, plus per-object render errors."""
    files: dict[str, dict[str, str]] = {k: {} for k in LAYOUT}
    errors: dict[str, str] = {}
    specs = []
    for conn in SipConnection.select().where(SipConnection.status != "disabled"):
        try:
            spec = gateway_spec(conn)
            files["gateways"][gateway_filename(spec)] = render_gateway(spec)
            specs.append(spec)
        except ValueError as exc:
            errors[f"sip_connection:{conn.id}"] = str(exc)
    files["acl"]["voiceai_trunks.xml"] = render_acl(specs)
    tz = {p.id: p.timezone for p in Project.select(Project.id, Project.timezone)}
    for number in PhoneNumber.select(PhoneNumber, SipConnection).join(SipConnection).where(
            PhoneNumber.status != "disabled"):
        try:
            route = number_route(number, settings, tz.get(number.project_id, "Europe/Moscow"))
            files["numbers"][number_filename(route)] = render_number(route)
        except ValueError as exc:
            errors[f"phone_number:{number.id}"] = str(exc)
    routes = []
    for route in OperatorRoute.select().where(OperatorRoute.enabled == True):  # noqa: E712
        try:
            routes.append(operator_spec(route))
        except ValueError as exc:
            errors[f"operator_route:{route.id}"] = str(exc)
    files["operators"]["operator_routes.xml"] = render_operator_routes(routes)
    return files, errors


def apply_telephony(r: redis.Redis, settings: Settings) -> ApplyResult:
    """Write the generated files and queue the reloads FreeSWITCH needs for what changed."""
    conf = Path(settings.freeswitch_conf_dir)
    if not conf.is_dir():
        raise FileNotFoundError(f"FreeSWITCH configuration directory {conf} does not exist "
                                "(install FreeSWITCH and freeswitch_conf/install.sh, or set VOICEAI_FS_CONF_DIR)")
    files, errors = render_all(settings)
    result = ApplyResult(errors=errors)
    for key, rel in LAYOUT.items():
        directory = conf / rel
        directory.mkdir(parents=True, exist_ok=True)
        sync = sync_generated(directory, files[key])
        if key == "gateways":
            result.changed_gateways = [n.removesuffix(".xml") for n in sync.written]
            result.removed_gateways = [n.removesuffix(".xml") for n in sync.removed]
        elif key == "acl":
            result.acl_changed = sync.changed
        elif sync.changed:
            result.dialplan_changed = True
    commands = []
    if result.dialplan_changed or result.changed_gateways or result.removed_gateways or result.acl_changed:
        commands.append("reloadxml")
    if result.acl_changed:
        commands.append("reloadacl")
    for name in result.removed_gateways + result.changed_gateways:
        commands.append(f"sofia profile external killgw {name}")
    if result.changed_gateways:
        commands.append("sofia profile external rescan")
    if commands:
        cmd = TelephonyCommand(type=CommandType.FS_API.value, args={"commands": commands},
                               trace_id=current_trace_id())
        CommandQueue(r, settings.fs_node).submit(cmd)
        result.command_id = cmd.id
    result.commands = commands
    if errors:
        log.warning("some telephony objects could not be rendered", extra={"errors": errors})
    return result
