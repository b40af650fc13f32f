"""«Проверить подключение»: a step-by-step check of a SIP trunk with a human answer in Russian.

Used by ``POST /sip-connections/{id}/check`` and by admins from a shell (``scripts.trunk_check``),
so it takes plain parameters (``TrunkParams``), not a model row, and never raises for a trunk
problem: every outcome is a ``TrunkCheckReport``.

Steps: DNS -> SIP OPTIONS -> REGISTER with the customer's credentials (register mode) -> an
optional reading of FreeSWITCH's ``sofia status gateway <name>`` output given by the caller.
The verdict distinguishes the four answers a customer can act on: wrong address (DNS), trunk
unreachable (silence, closed port), wrong login/password (registration rejected), and success.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import CATALOG
from core.telephony import sip_probe
from core.telephony.sip_probe import ProbeResult, ResolveError

ERROR_CODE = "SIP_CONNECT_FAILED"

STEP_TITLES = {
    "dns": "Поиск адреса (DNS)",
    "options": "Доступность SIP-сервера (OPTIONS)",
    "register": "Регистрация (логин и пароль)",
    "gateway": "Состояние шлюза в FreeSWITCH",
}


@dataclass
class TrunkParams:
    """What the check needs to know about a trunk; the password is plaintext (decrypted by the caller)."""

    host: str
    port: int = sip_probe.DEFAULT_PORT
    transport: str = "udp"
    login: str | None = None
    password: str | None = None
    auth_mode: str = "register"  # "register" | "ip"
    auth_username: str | None = None  # when the provider's auth name differs from the login
    realm: str | None = None
    domain: str | None = None  # registrar domain (FreeSWITCH from-domain); default: realm or host

    @classmethod
    def from_sip_connection(cls, conn: Any, password: str | None) -> "TrunkParams":
        """Build from a ``models.telephony.SipConnection`` row and its decrypted password."""
        return cls(host=conn.provider_host, port=conn.port or sip_probe.DEFAULT_PORT,
                   transport=conn.transport or "udp", login=conn.login, password=password,
                   auth_mode=conn.auth_mode or "register", auth_username=conn.auth_username,
                   realm=conn.realm, domain=conn.from_domain)


@dataclass
class CheckStep:
    """One line of the check as the customer sees it."""

    name: str            # dns | options | register | gateway
    ok: bool
    detail_ru: str
    duration_ms: float
    status: str = "ok"   # ok | warning | failed  (warning: not fatal, still ok=True)
    title_ru: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrunkCheckReport:
    """The verdict: ``ok``, the steps, and one Russian sentence with what to do about it."""

    ok: bool
    steps: list[CheckStep]
    error_code: str | None
    reason_ru: str
    how_to_fix_ru: list[str]
    host: str = ""
    port: int = sip_probe.DEFAULT_PORT
    transport: str = "udp"
    auth_mode: str = "register"
    latency_ms: float | None = None
    sip_status: int | None = None
    server_header: str | None = None
    gateway: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready shape for the API and ``sip_connections.last_check_result_json``."""
        return {
            "ok": self.ok,
            "error_code": self.error_code,
            "error_title_ru": CATALOG[self.error_code].human_title if self.error_code else None,
            "reason_ru": self.reason_ru,
            "how_to_fix_ru": list(self.how_to_fix_ru),
            "steps": [s.to_dict() for s in self.steps],
            "host": self.host, "port": self.port, "transport": self.transport,
            "auth_mode": self.auth_mode, "latency_ms": self.latency_ms,
            "sip_status": self.sip_status, "server": self.server_header, "gateway": self.gateway,
        }


# ---------------------------------------------------------------------------------------------
# FreeSWITCH `sofia status gateway <name>`

@dataclass
class GatewayStatus:
    """Parsed ``sofia status gateway <name>`` text (mod_sofia's ``cmd_status``).

    The command prints ``Key<padding>\\tValue`` lines between two ``=====`` rules: Name, Profile,
    Scheme, Realm, Username, Password (yes/no), From, Contact, Exten, To, Proxy, Context, Expires,
    Freq, Ping, PingFreq, PingTime, PingState (min/count/max), State, Status (``UP``/``DOWN``,
    `` (ping)`` appended while an OPTIONS ping is in flight), Uptime (``Ns``), CallsIN, CallsOUT,
    FailedCallsIN, FailedCallsOUT; or just ``Invalid Gateway!`` for an unknown name. The text form
    has no "last SIP response" field (that only travels in ``sofia::gateway_state`` events).
    """

    found: bool
    name: str | None = None
    profile: str | None = None
    state: str | None = None       # UNREGED TRYING REGISTER REGED UNREGISTER FAILED FAIL_WAIT
                                   # EXPIRED NOREG TIMEOUT
    status: str | None = None      # UP | DOWN
    pinging: bool = False
    ping_time_ms: float | None = None
    uptime_s: int | None = None
    calls_in: int | None = None
    calls_out: int | None = None
    failed_calls_in: int | None = None
    failed_calls_out: int | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip().rstrip("s")
    return int(value) if value.lstrip("-").isdigit() else None


def parse_gateway_status(text: str) -> GatewayStatus:
    """Parse FreeSWITCH's ``sofia status gateway <name>`` output (an ESL envelope is tolerated)."""
    body = text or ""
    if body.lstrip().lower().startswith("content-type:"):  # raw ESL reply: drop the header block
        body = body.replace("\r\n", "\n").split("\n\n", 1)[1] if "\n\n" in body.replace("\r\n", "\n") else ""
    stripped = body.strip()
    if not stripped or stripped.startswith("Invalid Gateway") or stripped.startswith("-ERR"):
        return GatewayStatus(found=False, fields={"raw": stripped} if stripped else {})
    fields: dict[str, str] = {}
    for line in body.replace("\r\n", "\n").split("\n"):
        if not line.strip() or set(line.strip()) == {"="}:
            continue
        if "\t" in line:
            key, value = line.split("\t", 1)
        else:  # tolerate spaces instead of the TAB (copied from a terminal)
            parts = line.strip().split(None, 1)
            key, value = parts[0], parts[1] if len(parts) > 1 else ""
        fields[key.strip()] = value.strip()
    if "State" not in fields and "Status" not in fields:
        return GatewayStatus(found=False, fields=fields)
    status_raw = fields.get("Status", "")
    ping_time = fields.get("PingTime")
    try:
        ping_ms = float(ping_time) if ping_time not in (None, "") else None
    except ValueError:
        ping_ms = None
    return GatewayStatus(
        found=True, name=fields.get("Name"), profile=fields.get("Profile"),
        state=(fields.get("State") or None),
        status=(status_raw.split()[0].upper() if status_raw else None),
        pinging="(ping)" in status_raw, ping_time_ms=ping_ms,
        uptime_s=_int_or_none(fields.get("Uptime")),
        calls_in=_int_or_none(fields.get("CallsIN")), calls_out=_int_or_none(fields.get("CallsOUT")),
        failed_calls_in=_int_or_none(fields.get("FailedCallsIN")),
        failed_calls_out=_int_or_none(fields.get("FailedCallsOUT")),
        fields=fields)


_GW_FAILED_STATES = {"FAILED", "FAIL_WAIT", "EXPIRED", "TIMEOUT"}
_GW_PENDING_STATES = {"UNREGED", "TRYING", "REGISTER", "UNREGISTER"}


def _gateway_step(gw: GatewayStatus, auth_mode: str) -> tuple[str, str]:
    """(status, detail_ru) of the FreeSWITCH gateway step."""
    if not gw.found:
        if gw.fields and "raw" not in gw.fields:
            return "warning", "Не удалось разобрать ответ FreeSWITCH о шлюзе"
        return "failed", "Шлюз не найден в FreeSWITCH (Invalid Gateway!) — настройки ещё не применены"
    state, status = gw.state or "?", gw.status or "?"
    label = f"{state}, {status}"
    if status == "DOWN":
        return "failed", f"FreeSWITCH считает шлюз недоступным ({label}): провайдер не отвечает на его пинги"
    if state in _GW_FAILED_STATES:
        return "failed", f"FreeSWITCH не смог зарегистрироваться у провайдера ({label})"
    if state == "REGED":
        return "ok", f"FreeSWITCH зарегистрирован у провайдера ({label})"
    if state == "NOREG":
        if auth_mode == "register":
            return "warning", (f"Шлюз в FreeSWITCH настроен без регистрации ({label}), а подключение — "
                               "по логину и паролю: примените настройки заново")
        return "ok", f"Шлюз работает без регистрации, по IP ({label})"
    if state in _GW_PENDING_STATES:
        return "warning", f"FreeSWITCH ещё регистрируется ({label}) — повторите проверку через минуту"
    return "warning", f"Состояние шлюза в FreeSWITCH: {label}"


# ---------------------------------------------------------------------------------------------
# Human wording

def _seconds_ru(ms: float) -> str:
    """4000 -> "4 с", 1500 -> "1,5 с" (Russian decimal comma)."""
    s = ms / 1000.0
    if abs(s - round(s)) < 0.05 or s >= 10:
        return f"{round(s)} с"
    return f"{s:.1f}".replace(".", ",") + " с"


def _ms_ru(ms: float | None) -> str:
    """23.4 -> "23 мс", 0.4 -> "0,4 мс" (a LAN or loopback answer must not read as "0 мс")."""
    ms = ms or 0.0
    if ms < 10:
        return f"{ms:.1f}".replace(".", ",") + " мс"
    return f"{round(ms)} мс"


def _code_ru(res: ProbeResult) -> str:
    return f"{res.status_code} {res.reason}".strip()


_FIX_DNS = [
    "Сверьте адрес SIP-сервера с личным кабинетом или письмом провайдера: в нём не должно быть "
    "опечаток, «sip:» и пробелов.",
    "Если провайдер дал IP-адрес — укажите его вместо имени.",
    "Проверьте, что сервер VoiceAI вообще разрешает внешние имена (DNS-серверы в /etc/resolv.conf).",
]
_FIX_PASSWORD = [
    "Скопируйте логин и пароль SIP-учётной записи из кабинета провайдера заново, без пробелов.",
    "Если у провайдера отдельное имя для авторизации (auth username) — укажите его.",
    "Проверьте у провайдера, что учётная запись активна и не заблокирована после неудачных попыток.",
    "Нажмите «Проверить подключение» ещё раз.",
]


def _fix_unreachable(host: str, port: int, transport: str) -> list[str]:
    t = transport.upper()
    return [
        f"Проверьте адрес {host} и порт {port} (обычно 5060) — как указал провайдер.",
        f"Проверьте транспорт: сейчас {t}; если провайдер работает по "
        f"{'TCP' if t == 'UDP' else 'UDP'} — смените.",
        "Убедитесь, что внешний IP-адрес сервера VoiceAI разрешён у провайдера (если он пускает только "
        "известные IP).",
        f"Проверьте, что межсетевой экран не блокирует трафик на {port}/{t} и ответы на него.",
    ]


# ---------------------------------------------------------------------------------------------
# The check

def _normalize_host(host: str, port: int | None) -> tuple[str, int]:
    """Accept what customers paste: ``sip:host``, ``host:port``, ``[v6]:port``."""
    h = (host or "").strip()
    for prefix in ("sips:", "sip:"):
        if h.lower().startswith(prefix):
            h = h[len(prefix):]
    h = h.split(";", 1)[0].split("@")[-1].rstrip("/")
    p = port or sip_probe.DEFAULT_PORT
    if h.startswith("[") and "]" in h:
        inner, _, rest = h[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            p = int(rest[1:])
        return inner, p
    if h.count(":") == 1:
        name, _, maybe_port = h.partition(":")
        if maybe_port.isdigit():
            return name, int(maybe_port) if not port or port == sip_probe.DEFAULT_PORT else port
    return h, p


def _registrar_domain(conn: TrunkParams, host: str) -> str | None:
    """Domain of the REGISTER URIs, like FreeSWITCH: from-domain, else realm, else the host name."""
    if conn.domain or conn.realm:
        return conn.domain or conn.realm
    return None if sip_probe.is_ip_literal(host) else host


class _Steps:
    def __init__(self) -> None:
        self.items: list[CheckStep] = []

    def add(self, name: str, status: str, detail: str, started: float) -> CheckStep:
        step = CheckStep(name=name, ok=status in ("ok", "warning"), detail_ru=detail,
                         duration_ms=round((time.monotonic() - started) * 1000, 1), status=status,
                         title_ru=STEP_TITLES.get(name, name))
        self.items.append(step)
        return step


def _options_detail(res: ProbeResult, host: str, port: int, transport: str) -> tuple[str, str]:
    t = transport.upper()
    if res.status_code is not None:
        server = f", сервер: {res.server_header}" if res.server_header else ""
        if res.ok:
            return "ok", f"Провайдер ответил {_code_ru(res)} за {_ms_ru(res.rtt_ms)}{server}"
        return "ok", f"SIP-сервер отвечает ({_code_ru(res)} за {_ms_ru(res.rtt_ms)}){server}"
    if res.error == sip_probe.ERR_REFUSED:
        return "failed", f"{host}:{port} отклонил TCP-соединение: на этом порту ничего не слушает"
    if res.error == sip_probe.ERR_PORT_UNREACHABLE:
        return "failed", f"Порт {port}/{t} на {host} закрыт (ICMP «port unreachable»)"
    if res.error == sip_probe.ERR_CONNECT_TIMEOUT:
        return "failed", f"TCP-соединение с {host}:{port} не установилось за {_seconds_ru(res.waited_ms)}"
    if res.error == sip_probe.ERR_TIMEOUT:
        return "failed", f"Нет ответа на OPTIONS за {_seconds_ru(res.waited_ms)}"
    return "failed", f"Сетевая ошибка при отправке запроса: {res.reason or res.error}"


def check_trunk(conn: TrunkParams, gateway_status: str | None = None, *, timeout: float = 2.0,
                retries: int = 1, dns_timeout: float = 5.0) -> TrunkCheckReport:
    """Run the check and return the verdict; never raises for a trunk problem.

    ``timeout`` bounds one SIP transaction and ``retries`` adds attempts after silence, so an
    unreachable trunk costs about ``timeout * (retries + 1)`` for OPTIONS plus one REGISTER
    transaction. ``gateway_status`` is the text of ``sofia status gateway <name>`` if the caller
    has FreeSWITCH at hand; it is interpreted last and only adds a step.
    """
    transport = (conn.transport or "udp").lower()
    auth_mode = (conn.auth_mode or "register").lower()
    host, port = _normalize_host(conn.host, conn.port)
    steps = _Steps()
    report = TrunkCheckReport(ok=False, steps=steps.items, error_code=ERROR_CODE, reason_ru="",
                              how_to_fix_ru=[], host=host, port=port, transport=transport,
                              auth_mode=auth_mode)

    def fail(reason: str, fixes: list[str]) -> TrunkCheckReport:
        report.ok, report.error_code = False, ERROR_CODE
        report.reason_ru, report.how_to_fix_ru = reason, fixes
        return _with_gateway(report, steps, gateway_status, auth_mode, probes_ok=False)

    if not host:
        t0 = time.monotonic()
        steps.add("dns", "failed", "Адрес провайдера не указан", t0)
        return fail("Не указан адрес SIP-сервера провайдера — заполните поле «Адрес»",
                    ["Укажите адрес SIP-сервера из кабинета или письма провайдера."])
    if transport not in ("udp", "tcp"):
        t0 = time.monotonic()
        steps.add("options", "failed",
                  f"Автоматическая проверка по {transport.upper()} не поддерживается", t0)
        return fail(f"Проверка по {transport.upper()} пока не поддерживается — проверьте подключение "
                    "тест-звонком",
                    ["Если провайдер допускает UDP или TCP — выберите его для проверки.",
                     "Сделайте тест-звонок, чтобы проверить подключение по TLS."])

    # 1. DNS
    t0 = time.monotonic()
    try:
        addrs = sip_probe.resolve(host, timeout=dns_timeout)
    except ResolveError as exc:
        if exc.timeout:
            steps.add("dns", "failed", f"DNS-сервер не ответил за {_seconds_ru(dns_timeout * 1000)}", t0)
            return fail(f"DNS-сервер не ответил при поиске адреса {host} — проверьте настройки DNS "
                        "сервера VoiceAI",
                        ["Проверьте DNS-серверы в /etc/resolv.conf и доступ сервера к ним.",
                         "Временно укажите IP-адрес провайдера вместо имени."])
        steps.add("dns", "failed", f"Адрес {host} не найден в DNS", t0)
        return fail(f"Адрес {host} не найден в DNS — проверьте адрес провайдера", list(_FIX_DNS))
    ip = addrs[0]
    if sip_probe.is_ip_literal(host):
        steps.add("dns", "ok", "Указан IP-адрес, поиск в DNS не нужен", t0)
    else:
        more = f" (и ещё {len(addrs) - 1})" if len(addrs) > 1 else ""
        steps.add("dns", "ok", f"{host} → {ip}{more}", t0)

    # 2. OPTIONS
    t0 = time.monotonic()
    opt = sip_probe.options_ping(ip, port, transport, timeout=timeout, retries=retries)
    opt_status, opt_detail = _options_detail(opt, host, port, transport)
    report.latency_ms = opt.rtt_ms
    report.sip_status = opt.status_code
    report.server_header = opt.server_header
    fixes_unreach = _fix_unreachable(host, port, transport)
    if opt.error == sip_probe.ERR_REFUSED:
        steps.add("options", "failed", opt_detail, t0)
        return fail(f"Провайдер {host}:{port} отклонил TCP-соединение — проверьте порт и транспорт (UDP/TCP)",
                    fixes_unreach)
    if opt.error == sip_probe.ERR_PORT_UNREACHABLE:
        steps.add("options", "failed", opt_detail, t0)
        return fail(f"На {host} порт {port}/{transport.upper()} закрыт — проверьте порт и транспорт",
                    fixes_unreach)
    options_silent = opt.status_code is None

    def silence_reason(waited_ms: float) -> str:
        return (f"Провайдер не ответил на SIP-запрос за {_seconds_ru(waited_ms)} — проверьте адрес, "
                "порт и что ваш IP разрешён у провайдера")

    if auth_mode == "ip":
        code = opt.status_code
        if options_silent:
            steps.add("options", "failed", opt_detail, t0)
            return fail(silence_reason(opt.waited_ms), fixes_unreach)
        if code in (401, 407):
            steps.add("options", "failed", f"Провайдер требует авторизацию: {_code_ru(opt)}", t0)
            return fail(f"Провайдер требует логин и пароль ({_code_ru(opt)}) — ваш IP не разрешён у "
                        "провайдера или для него нужна регистрация",
                        ["Попросите провайдера разрешить внешний IP-адрес сервера VoiceAI.",
                         "Или выберите авторизацию по логину и паролю и укажите их."])
        if code == 403:
            steps.add("options", "failed", f"Провайдер отклонил запрос: {_code_ru(opt)}", t0)
            return fail(f"Провайдер отклонил запрос с вашего IP ({_code_ru(opt)}) — попросите провайдера "
                        "разрешить IP сервера VoiceAI",
                        ["Сообщите провайдеру внешний IP-адрес сервера VoiceAI и попросите добавить его "
                         "в список разрешённых.",
                         "Нажмите «Проверить подключение» ещё раз после ответа провайдера."])
        steps.add("options", opt_status, opt_detail, t0)
        report.ok, report.error_code, report.how_to_fix_ru = True, None, []
        report.reason_ru = ("Подключение работает: провайдер отвечает на SIP-запросы, задержка "
                            f"{_ms_ru(opt.rtt_ms)}")
        return _with_gateway(report, steps, gateway_status, auth_mode, probes_ok=True)

    # Register mode: silence on OPTIONS is not fatal yet, many providers ignore OPTIONS from
    # unregistered sources but do answer REGISTER.
    options_step = steps.add("options", opt_status if not options_silent else "warning",
                             opt_detail if not options_silent
                             else opt_detail + " — проверим регистрацией", t0)

    # 3. REGISTER
    t0 = time.monotonic()
    if not conn.login or not conn.password:
        steps.add("register", "failed", "Не указан логин или пароль", t0)
        return fail("Для регистрации у провайдера нужны логин и пароль — заполните их или выберите "
                    "авторизацию по IP",
                    ["Укажите логин и пароль SIP-учётной записи из кабинета провайдера.",
                     "Если провайдер пускает по IP без пароля — выберите авторизацию по IP."])
    reg = sip_probe.register_probe(ip, port, transport, login=conn.login, password=conn.password,
                                   realm=conn.realm, domain=_registrar_domain(conn, host),
                                   timeout=timeout, retries=0 if options_silent else retries,
                                   auth_username=conn.auth_username)
    if reg.status_code is not None:
        report.sip_status = reg.status_code
        report.server_header = report.server_header or reg.server_header
        if report.latency_ms is None:
            report.latency_ms = reg.rtt_ms
    code = reg.status_code
    if reg.ok:
        unregistered = reg.unregister_status is not None and 200 <= reg.unregister_status < 300
        cleanup = ("проверочная регистрация снята" if unregistered
                   else "снять проверочную регистрацию не удалось, она истечёт сама через минуту")
        steps.add("register", "ok", f"Регистрация успешна ({_code_ru(reg)}), {cleanup}", t0)
        if options_silent:
            options_step.detail_ru = opt_detail + " — провайдер не отвечает на OPTIONS, но регистрация прошла"
        report.ok, report.error_code, report.how_to_fix_ru = True, None, []
        report.reason_ru = f"Подключение работает: регистрация успешна, задержка {_ms_ru(report.latency_ms)}"
        return _with_gateway(report, steps, gateway_status, auth_mode, probes_ok=True)

    if code is None:
        if reg.error == sip_probe.ERR_TIMEOUT:
            steps.add("register", "failed", f"Нет ответа на REGISTER за {_seconds_ru(reg.waited_ms)}", t0)
        else:
            steps.add("register", "failed", f"Сетевая ошибка: {reg.reason or reg.error}", t0)
        if options_silent:
            options_step.status, options_step.ok, options_step.detail_ru = "failed", False, opt_detail
            return fail(silence_reason(opt.waited_ms + reg.waited_ms), fixes_unreach)
        return fail("Провайдер отвечает на OPTIONS, но не ответил на регистрацию — проверьте адрес "
                    "регистрации и порт", fixes_unreach)

    if options_silent:
        options_step.detail_ru = opt_detail + " — провайдер не отвечает на OPTIONS, но ответил на регистрацию"
    if reg.error == sip_probe.ERR_AUTH_UNSUPPORTED:
        steps.add("register", "failed",
                  f"Провайдер запросил неподдерживаемый способ авторизации ({_code_ru(reg)})", t0)
        return fail("Провайдер запросил способ авторизации, который VoiceAI не поддерживает "
                    f"({_code_ru(reg)})",
                    ["Уточните у провайдера, поддерживает ли он Digest-авторизацию (MD5 или SHA-256).",
                     "Или попросите провайдера подключить вас по IP."])
    if code in (401, 403, 407):
        steps.add("register", "failed", f"Провайдер отклонил логин или пароль: {_code_ru(reg)}", t0)
        return fail(f"Провайдер отклонил логин или пароль ({_code_ru(reg)})", list(_FIX_PASSWORD))
    if code == 404:
        steps.add("register", "failed",
                  f"Пользователь «{conn.login}» не найден у провайдера: {_code_ru(reg)}", t0)
        return fail(f"Провайдер не знает пользователя «{conn.login}» ({_code_ru(reg)}) — проверьте логин",
                    ["Сверьте логин SIP-учётной записи с кабинетом провайдера (часто это номер или ID "
                     "учётной записи, а не номер телефона).",
                     "Если у провайдера отдельный домен регистрации — укажите его."] + _FIX_PASSWORD[-1:])
    steps.add("register", "failed", f"Провайдер не принял регистрацию: {_code_ru(reg)}", t0)
    if code is not None and code >= 500:
        fixes = ["Повторите проверку через несколько минут.",
                 f"Если ошибка повторяется — сообщите провайдеру код ответа {code}."]
    else:
        fixes = ["Сверьте логин, домен и порт с настройками провайдера.",
                 f"Если ошибка повторяется — сообщите провайдеру код ответа {code}."]
    return fail(f"Провайдер не принял регистрацию ({_code_ru(reg)})", fixes)


def _with_gateway(report: TrunkCheckReport, steps: _Steps, text: str | None, auth_mode: str,
                  probes_ok: bool) -> TrunkCheckReport:
    """Append the FreeSWITCH gateway step; it can only turn a good probe into a failure."""
    if text is None:
        return report
    t0 = time.monotonic()
    gw = parse_gateway_status(text)
    report.gateway = gw.to_dict()
    status, detail = _gateway_step(gw, auth_mode)
    steps.add("gateway", status, detail, t0)
    if status != "failed" or not probes_ok:
        return report
    report.ok, report.error_code = False, ERROR_CODE
    if not gw.found:
        report.reason_ru = ("Провайдер отвечает, но шлюз ещё не загружен в FreeSWITCH — примените настройки "
                            "подключения и повторите проверку")
        report.how_to_fix_ru = ["Сохраните подключение ещё раз, чтобы настройки попали в FreeSWITCH.",
                                "Если не помогло — выполните «sofia profile external rescan» в fs_cli."]
    else:
        verb = ("принимает логин и пароль" if auth_mode == "register" else "отвечает")
        report.reason_ru = (f"Провайдер {verb}, но FreeSWITCH не подключён к нему "
                            f"({gw.state}, {gw.status}) — примените настройки и повторите проверку")
        report.how_to_fix_ru = ["Сохраните подключение ещё раз, чтобы FreeSWITCH взял новые настройки.",
                                "Проверьте, что межсетевой экран не блокирует SIP-трафик FreeSWITCH.",
                                "Нажмите «Проверить подключение» ещё раз через минуту."]
    return report
