"""Plain inputs of the FreeSWITCH config renderer (``core.telephony.render``).

The web process builds these from ``sip_connections`` / ``phone_numbers`` / ``operator_routes``
rows (decrypting the SIP password on the way); the renderer never sees a peewee row or a database,
so it stays a pure function that tests can drive with literals.

Values end up inside FreeSWITCH XML and dialplan ``data`` strings, where ``${...}`` is expanded
(and ``${api(...)}`` would run an API command), so the renderer validates every field it places
there and raises :class:`SpecError` with the offending field and a Russian message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["GatewaySpec", "NumberRoute", "OperatorRouteSpec", "SpecError"]


class SpecError(ValueError):
    """A spec field that cannot be rendered safely; ``field`` is the spec attribute name."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class GatewaySpec:
    """One SIP connection (trunk) as a FreeSWITCH gateway on the ``external`` profile.

    ``register`` false is IP authentication: the provider trusts our address, FreeSWITCH does not
    register (login/password may then be empty). ``allowed_ips`` are the provider's signalling
    addresses/CIDRs for the ``voiceai_trunks`` ACL; an IP-literal ``host`` is added automatically.
    """

    name: str                      # FreeSWITCH gateway name, e.g. "voiceai_3f2a..."
    host: str                      # provider registrar/proxy host or IP
    port: int = 5060
    transport: str = "udp"         # udp | tcp | tls
    login: str | None = None
    password: str | None = None    # plaintext, decrypted by the caller; never logged
    register: bool = True
    caller_id: str | None = None   # default outbound caller id (E.164)
    realm: str | None = None       # None: the host
    expire_s: int = 600
    ping_s: int | None = 30        # OPTIONS keepalive period; None disables
    connection_id: str = ""
    allowed_ips: tuple[str, ...] = ()
    auth_username: str | None = None  # when the auth user differs from the login
    from_user: str | None = None
    from_domain: str | None = None
    outbound_proxy: str | None = None


@dataclass(frozen=True)
class NumberRoute:
    """Inbound routing of one phone number (DID) in the ``public`` context."""

    number_id: str
    project_id: str
    e164: str
    agent_id: str | None
    gateway_name: str | None
    schedule: dict[str, Any] | None
    timezone: str                  # the number's or else the project's timezone
    recording_enabled: bool = False
    after_hours_action: str = "message"  # operator | message | hangup
    after_hours_message_file: str | None = None
    operator_route_extension: str | None = None  # e.g. "voiceai_op_<route id>"
    audio_ws_url: str = "ws://127.0.0.1:8090/audio"
    sample_rate: str = "8k"        # 8k | 16k
    recording_notice_file: str | None = None


@dataclass(frozen=True)
class OperatorRouteSpec:
    """Where calls go to a human: an extension, a ring group or an external number via a trunk."""

    route_id: str
    name: str
    kind: str                      # sip_extension | ring_group | external_number
    targets: tuple[str, ...] | list[str] = field(default_factory=tuple)
    gateway_name: str | None = None  # for external_number
    ring_timeout_s: int = 30
    ring_strategy: str = "simultaneous"  # simultaneous | sequential (ring groups)
    caller_id: str | None = None   # caller id shown to an external operator (E.164)
