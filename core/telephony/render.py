"""Render FreeSWITCH configuration from plain specs: gateways, the trunk ACL, number routes,
operator routes.

Templates are files (``freeswitch_conf/templates/*.xml.j2`` and ``dialplan/templates/*.xml.j2``)
rendered by Jinja2 with XML autoescaping and ``StrictUndefined``, so a missing variable is an error
and not an empty attribute. Every value is validated before it reaches a template: besides XML
escaping (which the template engine does), FreeSWITCH itself expands ``${...}`` in dialplan data and
``$${...}`` anywhere in a file at ``reloadxml``, so ids, paths and URLs are restricted to characters
that cannot form those sequences, and a password containing ``$${`` is refused.

The output is the file body only; ``core.telephony.fs_files`` adds the "generated" marker and
writes it atomically. Where each file goes is documented in ``docs/telephony.md``.
"""
from __future__ import annotations

import ipaddress
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from core.telephony import schedule as sched
from core.telephony.config_types import GatewaySpec, NumberRoute, OperatorRouteSpec, SpecError

__all__ = ["render_gateway", "render_acl", "render_number", "render_operator_routes",
           "dial_string", "operator_extension", "number_filename", "gateway_filename",
           "validate_allowed_ips", "TEMPLATE_DIRS", "ACL_LIST_NAME", "OPERATORS_CONTEXT"]

_REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = (_REPO_ROOT / "dialplan" / "templates", _REPO_ROOT / "freeswitch_conf" / "templates")
ACL_LIST_NAME = "voiceai_trunks"
OPERATORS_CONTEXT = "voiceai_operators"

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")     # ids, extensions, gateway names
_GATEWAY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
_EXT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TZ_RE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")
# Playback paths: absolute, no expansion/quoting/separator characters of the dialplan.
_PATH_RE = re.compile(r"^/[^\s${}\"'<>|;,`\\]{1,1000}$")
_WS_URL_RE = re.compile(r"^wss?://[^\s${}\"'<>|;,`\\]{1,500}$")
_SIP_CRED_FORBIDDEN = ("$${", "\n", "\r", "\x00")
_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}


def _xml_attr(value: Any) -> Markup:
    """Escape for an XML attribute with named entities (``&quot;`` as FreeSWITCH configs use)."""
    if isinstance(value, Markup):
        return value
    text = str(value)
    return Markup("".join(_XML_ESCAPES.get(ch, ch) for ch in text))


def _finalize(value: Any) -> Any:
    if value is None:
        raise ValueError("None reached a FreeSWITCH template")
    return _xml_attr(value)


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader([str(d) for d in TEMPLATE_DIRS]),
        autoescape=True, undefined=StrictUndefined, finalize=_finalize,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _render(template: str, **ctx: Any) -> str:
    return _env().get_template(template).render(**ctx)


# ---- validation helpers ----

def _token(value: Any, field: str, what: str = "идентификатор") -> str:
    text = "" if value is None else str(value)
    if not _TOKEN_RE.match(text):
        raise SpecError(field, f"Недопустимый {what} «{text}»: разрешены латинские буквы, цифры, "
                               "«_», «-», «.», «:»")
    return text


def _gateway_name(value: Any, field: str = "name") -> str:
    text = "" if value is None else str(value)
    if not _GATEWAY_RE.match(text):
        raise SpecError(field, f"Недопустимое имя шлюза «{text}»: разрешены латинские буквы, цифры, "
                               "«_», «-», «.» (до 64 символов)")
    return text


def _host(value: Any, field: str = "host") -> str:
    text = ("" if value is None else str(value)).strip()
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
        return f"[{ip}]" if ip.version == 6 else str(ip)
    except ValueError:
        pass
    if not _HOST_RE.match(text):
        raise SpecError(field, f"Некорректный адрес «{text}»: укажите доменное имя или IP-адрес "
                               "провайдера без «sip:» и порта")
    return text.lower()


def _sip_text(value: Any, field: str, label: str, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise SpecError(field, f"Укажите {label}")
        return None
    text = str(value)
    if any(bad in text for bad in _SIP_CRED_FORBIDDEN):
        raise SpecError(field, f"{label[0].upper() + label[1:]} содержит недопустимые символы "
                               "(перевод строки или «$${»)")
    if len(text) > 255:
        raise SpecError(field, f"{label[0].upper() + label[1:]}: не длиннее 255 символов")
    return text


def _e164(value: Any, field: str) -> str:
    text = "" if value is None else str(value)
    if not _E164_RE.match(text):
        raise SpecError(field, f"Ожидается номер в формате E.164 (+74951234567), получено «{text}»")
    return text


def _path(value: Any, field: str, label: str) -> str:
    text = "" if value is None else str(value)
    if not _PATH_RE.match(text):
        raise SpecError(field, f"{label}: нужен абсолютный путь к звуковому файлу без пробелов, "
                               "кавычек и символов $ { } , ;")
    return text


# ---- gateways and ACL ----

def gateway_filename(spec: GatewaySpec) -> str:
    """File name of a gateway in ``sip_profiles/external/voiceai_generated/``."""
    return f"{_gateway_name(spec.name)}.xml"


def render_gateway(spec: GatewaySpec) -> str:
    """A ``<include><gateway>`` file for the ``external`` SIP profile.

    Registering trunks need login and password; IP-authenticated ones (``register=False``) get
    ``register=false`` and a placeholder password, because sofia refuses a gateway without one.
    """
    name = _gateway_name(spec.name)
    host = _host(spec.host)
    if not isinstance(spec.port, int) or isinstance(spec.port, bool) or not 1 <= spec.port <= 65535:
        raise SpecError("port", "Порт — число от 1 до 65535")
    transport = str(spec.transport or "").lower()
    if transport not in ("udp", "tcp", "tls"):
        raise SpecError("transport", "Транспорт: udp, tcp или tls")
    login = _sip_text(spec.login, "login", "логин", required=spec.register)
    password = _sip_text(spec.password, "password", "пароль", required=spec.register)
    auth_username = _sip_text(spec.auth_username, "auth_username", "имя для авторизации", False)
    realm = _host(spec.realm, "realm") if spec.realm else host
    from_user = _sip_text(spec.from_user, "from_user", "from-user", False)
    from_domain = _host(spec.from_domain, "from_domain") if spec.from_domain else None
    outbound_proxy = _host(spec.outbound_proxy, "outbound_proxy") if spec.outbound_proxy else None
    if spec.register and not (60 <= int(spec.expire_s) <= 86400):
        raise SpecError("expire_s", "Период регистрации — от 60 до 86400 секунд")
    if spec.ping_s is not None and not (5 <= int(spec.ping_s) <= 3600):
        raise SpecError("ping_s", "Период проверки (OPTIONS) — от 5 до 3600 секунд")
    if spec.caller_id:
        _e164(spec.caller_id, "caller_id")
    connection_id = _token(spec.connection_id, "connection_id")
    return _render("gateway.xml.j2", name=name, register=bool(spec.register), transport=transport,
                   username=login or "voiceai", password=password or "ip-auth-unused",
                   realm=realm, proxy=f"{host}:{spec.port}", auth_username=auth_username,
                   from_user=from_user, from_domain=from_domain, outbound_proxy=outbound_proxy,
                   expire_s=int(spec.expire_s), ping_s=spec.ping_s, caller_id=spec.caller_id,
                   connection_id=connection_id)


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    text = ("" if value is None else str(value)).strip()
    net = ipaddress.ip_network(text, strict=False)  # ValueError on garbage
    if (net.version == 4 and net.prefixlen < 8) or (net.version == 6 and net.prefixlen < 32):
        raise ValueError("too broad")
    return net


def validate_allowed_ips(values: Any, prefix: str = "allowed_ips") -> dict[str, str]:
    """Field errors of a list of provider IPs/CIDRs (``{"allowed_ips.1": "…"}``) for the API."""
    if values is None:
        return {}
    if not isinstance(values, (list, tuple)):
        return {prefix: "Ожидается список IP-адресов или подсетей"}
    errors: dict[str, str] = {}
    for i, value in enumerate(values):
        try:
            _network(value)
        except ValueError:
            errors[f"{prefix}.{i}"] = (f"«{value}» — не IP-адрес или подсеть (пример: 203.0.113.10 "
                                       "или 203.0.113.0/24); слишком широкие диапазоны (шире /8) "
                                       "не допускаются")
    return errors


def render_acl(connections: Iterable[GatewaySpec]) -> str:
    """The ``voiceai_trunks`` network list: one allow node per provider IP/CIDR, default deny.

    Sources: every connection's ``allowed_ips`` plus its ``host`` when that is an IP literal
    (a registering trunk's calls come from its registrar). Duplicates are dropped; an invalid or
    overly broad entry raises :class:`SpecError` instead of silently opening the profile.
    """
    seen: set[str] = set()
    nodes: list[dict[str, str]] = []
    for spec in connections:
        candidates = list(spec.allowed_ips or ())
        try:
            candidates.append(str(ipaddress.ip_address(str(spec.host).strip("[]"))))
        except ValueError:
            pass
        for value in candidates:
            try:
                net = _network(value)
            except ValueError:
                raise SpecError("allowed_ips", f"«{value}» — не IP-адрес или подсеть (пример: "
                                "203.0.113.10 или 203.0.113.0/24), либо диапазон шире /8") from None
            cidr = net.with_prefixlen
            if cidr not in seen:
                seen.add(cidr)
                nodes.append({"cidr": cidr})
    return _render("acl_trunks.xml.j2", nodes=nodes)


# ---- number routes ----

def number_filename(route: NumberRoute) -> str:
    """File name of a number's route in ``dialplan/public/voiceai_generated/``."""
    return f"number_{_token(route.number_id, 'number_id')}.xml"


def _audio_fork_data(route: NumberRoute) -> str:
    url = str(route.audio_ws_url or "")
    if not _WS_URL_RE.match(url):
        raise SpecError("audio_ws_url", f"Некорректный адрес аудиопотока «{url}»: ожидается ws:// или "
                                        "wss:// без пробелов и символов $ { }")
    if route.sample_rate not in ("8k", "16k"):
        raise SpecError("sample_rate", "Частота: 8k или 16k")
    return "api_on_answer=" + audio_fork_command("${uuid}", url, route.sample_rate,
                                                 {"callId": "${uuid}", "projectId": route.project_id,
                                                  "numberId": route.number_id})


def audio_fork_command(channel: str, url: str, sample_rate: str, meta: dict[str, str]) -> str:
    """``uuid_audio_fork <channel> start <ws url> mono <8k|16k> voiceai <metadata>``: what starts the
    call's audio stream to esl_app on answer (inbound dialplan and outbound originate alike)."""
    # No spaces: mod_audio_fork splits its arguments on spaces, the metadata must be one argument.
    return f"uuid_audio_fork {channel} start {url} mono {sample_rate} voiceai {json.dumps(meta, separators=(',', ':'))}"


def render_number(route: NumberRoute) -> str:
    """The ``public``-context dialplan of one number: variables, holidays, open windows, after hours.

    In hours the call gets ``api_on_answer`` = ``uuid_audio_fork ... start <ws> mono <rate> voiceai
    {"callId":...}``, is answered, hears the recording notice when recording is on, and is parked
    for the app. After hours (and on holidays): ``operator`` transfers to the operator route,
    ``message`` plays the message and hangs up, ``hangup`` hangs up (after the message if one is
    set). Without a schedule (or ``always_open``) only the in-hours flow is rendered.
    """
    number_id = _token(route.number_id, "number_id")
    project_id = _token(route.project_id, "project_id")
    agent_id = _token(route.agent_id, "agent_id") if route.agent_id else ""
    e164 = _e164(route.e164, "e164")
    tz = route.timezone or sched.DEFAULT_TIMEZONE
    if route.schedule and route.schedule.get("timezone"):
        tz = route.schedule["timezone"]
    if not _TZ_RE.match(str(tz)):
        raise SpecError("timezone", f"Некорректный часовой пояс «{tz}»")
    try:
        parsed = sched.parse_schedule(route.schedule, default_timezone=tz)
    except sched.ScheduleError as exc:
        raise SpecError("schedule", "; ".join(f"{k}: {v}" for k, v in exc.fields.items())) from None
    action = route.after_hours_action
    if action not in ("operator", "message", "hangup"):
        raise SpecError("after_hours_action", "Действие в нерабочее время: operator, message или hangup")
    operator_ext = None
    message_file = None
    windows = sched.fs_conditions(parsed)
    if windows:  # after-hours flow only exists with a schedule
        if action == "operator":
            if not route.operator_route_extension:
                raise SpecError("operator_route_extension",
                                "Для перевода на оператора в нерабочее время выберите маршрут оператора")
            operator_ext = _token(route.operator_route_extension, "operator_route_extension",
                                  "маршрут оператора")
        if route.after_hours_message_file:
            message_file = _path(route.after_hours_message_file, "after_hours_message_file",
                                 "Сообщение в нерабочее время")
        elif action == "message":
            raise SpecError("after_hours_message_file",
                            "Для действия «сообщение» нужен звуковой файл сообщения")
    notice_file = None
    if route.recording_enabled and route.recording_notice_file:
        notice_file = _path(route.recording_notice_file, "recording_notice_file",
                            "Уведомление о записи")
    variables = [
        ("voiceai_project_id", project_id),
        ("voiceai_number_id", number_id),
        ("voiceai_agent_id", agent_id),
        ("voiceai_trace_id", "${uuid}"),
        ("timezone", tz),
        ("voiceai_recording", "true" if route.recording_enabled else "false"),
    ]
    if route.gateway_name:
        variables.append(("voiceai_gateway", _gateway_name(route.gateway_name, "gateway_name")))
    digits = e164[1:]
    return _render("number.xml.j2", prefix=f"voiceai_num_{number_id}",
                   expression=f"^\\+?{digits}$", variables=variables,
                   holidays=sched.fs_holiday_conditions(parsed) if windows else [],
                   windows=windows, audio_fork=_audio_fork_data(route), notice_file=notice_file,
                   action=action, operator_extension=operator_ext, message_file=message_file)


# ---- operator routes ----

def operator_extension(route_id: str) -> str:
    """Destination of an operator route in the ``voiceai_operators`` context."""
    return f"voiceai_op_{_token(route_id, 'route_id')}"


def dial_string(route: OperatorRouteSpec, domain: str | None = None) -> str:
    """FreeSWITCH dial string of an operator route, for ``bridge`` or the app's ``originate``.

    ``sip_extension``: ``user/101@<domain>``; ``ring_group``: the extensions joined with ``,``
    (ring all at once) or ``|`` (one after another, ``ring_strategy="sequential"``);
    ``external_number``: ``sofia/gateway/<gw>/<+E.164>``. ``domain`` defaults to
    ``${domain_name}`` (expanded on the channel); the app originating without a channel must pass
    the FreeSWITCH domain explicitly.
    """
    dom = "${domain_name}" if domain is None else _host(domain, "domain")
    targets = [str(t).strip() for t in (route.targets or ()) if str(t).strip()]
    if not targets:
        raise SpecError("targets", "Укажите хотя бы один номер или внутренний номер оператора")
    leg_vars = ""
    if route.caller_id:
        leg_vars = f"[origination_caller_id_number={_e164(route.caller_id, 'caller_id')}]"
    if route.kind == "sip_extension":
        if len(targets) != 1:
            raise SpecError("targets", "Для внутреннего номера укажите ровно один номер")
        legs = [f"user/{_ext(targets[0])}@{dom}"]
    elif route.kind == "ring_group":
        legs = [f"user/{_ext(t)}@{dom}" for t in targets]
    elif route.kind == "external_number":
        gw = _gateway_name(route.gateway_name, "gateway_name")
        legs = [f"sofia/gateway/{gw}/{_e164(t, 'targets')}" for t in targets]
    else:
        raise SpecError("kind", "Тип маршрута: sip_extension, ring_group или external_number")
    if route.ring_strategy not in ("simultaneous", "sequential"):
        raise SpecError("ring_strategy", "Стратегия: simultaneous или sequential")
    sep = "|" if route.ring_strategy == "sequential" else ","
    return sep.join(leg_vars + leg for leg in legs)


def _ext(value: str) -> str:
    if not _EXT_RE.match(value):
        raise SpecError("targets", f"Недопустимый внутренний номер «{value}»")
    return value


def render_operator_routes(routes: Iterable[OperatorRouteSpec]) -> str:
    """The ``voiceai_operators`` context body: one ``voiceai_op_<id>`` extension per route.

    Each bridges its dial string with ``call_timeout`` = the route's ring timeout,
    ``continue_on_fail`` and ``hangup_after_bridge``; when nobody answers the call is transferred
    to ``voiceai_operator_fallback``, which sets ``voiceai_operator_fallback=true`` (and the
    failure cause) and parks it so the app takes over. All routes of all projects go in one file.
    """
    items = []
    seen: set[str] = set()
    for r in routes:
        ext = operator_extension(r.route_id)
        if ext in seen:
            raise SpecError("route_id", f"Маршрут {r.route_id} указан дважды")
        seen.add(ext)
        timeout = int(r.ring_timeout_s)
        if not 5 <= timeout <= 600:
            raise SpecError("ring_timeout_s", "Время дозвона до оператора — от 5 до 600 секунд")
        items.append({"extension": ext, "route_id": r.route_id, "timeout": timeout,
                      "dial_string": dial_string(r)})
    return _render("operator_routes.xml.j2", routes=items)
