"""Sofia gateways: definitions read from FreeSWITCH gateway XML files, scripted registration state.

`sofia profile <p> rescan` (and `startgw`) read `<include><gateway name=...><param .../></gateway>`
files from the gateway directory; the test decides whether registration succeeds with
`FsSim.set_gateway_behavior`, which also fires `sofia::gateway_state` like sofia_reg.c does.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .server import FsSim


@dataclass
class GatewayBehavior:
    """How the provider answers our REGISTER for this gateway."""

    state: str = "REGED"
    status: str = "UP"
    reason: Optional[str] = None
    code: Optional[int] = None


@dataclass
class Gateway:
    name: str
    profile: str
    params: dict[str, str]
    state: str = "NOREG"
    status: str = "UP"
    started: float = field(default_factory=time.time)
    calls_in: int = 0
    calls_out: int = 0
    failed_in: int = 0
    failed_out: int = 0
    last_code: Optional[int] = None
    last_phrase: Optional[str] = None

    @property
    def register(self) -> bool:
        return self.params.get("register", "true").lower() == "true"

    @property
    def realm(self) -> str:
        return self.params.get("realm") or self.params.get("proxy") or self.name

    @property
    def proxy(self) -> str:
        return self.params.get("proxy") or self.realm

    @property
    def username(self) -> str:
        return self.params.get("username", "")

    def data_uri(self) -> str:
        return f"sip:{self.username}@{self.realm}" if self.username else f"sip:{self.realm}"


def load_gateway_files(directory: Optional[str], profile: str = "external") -> dict[str, Gateway]:
    """Parse every *.xml in the directory (FreeSWITCH sip_profiles/external/*.xml format)."""
    out: dict[str, Gateway] = {}
    if not directory or not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".xml"):
            continue
        try:
            root = ET.parse(os.path.join(directory, name)).getroot()
        except ET.ParseError:
            continue
        gws = [root] if root.tag == "gateway" else root.iter("gateway")
        for gw in gws:
            gname = gw.get("name")
            if not gname:
                continue
            params = {p.get("name", ""): p.get("value", "") for p in gw.iter("param")}
            out[gname] = Gateway(gname, profile, params)
    return out


def gateway_status_table(sim: "FsSim", gw: Gateway) -> str:
    """`sofia status gateway <name>` as printed by sofia.c (not in the captures: from the source)."""
    p = gw.params
    ping = p.get("ping", "0")
    lines = [
        "=" * 97,
        f"Name    \t{gw.name}",
        f"Profile \t{gw.profile}",
        f"Scheme  \t{'Digest' if gw.username else '(null)'}",
        f"Realm   \t{gw.realm}",
        f"Username\t{gw.username}",
        f"Password\t{'yes' if p.get('password') else 'no'}",
        f"From    \t<sip:{p.get('from-user', gw.username)}@{p.get('from-domain', gw.realm)}>",
        f"Contact \t<sip:gw+{gw.name}@{sim.sip_ip}:5080;transport=udp;gw={gw.name}>",
        f"Exten   \t{p.get('extension', gw.username)}",
        f"To      \tsip:{p.get('extension', gw.username)}@{gw.realm}",
        f"Proxy   \tsip:{gw.proxy}",
        f"Context \t{p.get('context', 'public')}",
        f"Expires \t{p.get('expire-seconds', '3600')}",
        f"Freq    \t{p.get('expire-seconds', '3600')}",
        f"Ping    \t{ping}",
        f"PingFreq\t{p.get('ping', '0')}",
        "PingMin \t1",
        "PingCount\t0",
        "PingMax \t0",
        "PingTime\t0.00",
        "PingState\t0/0/0",
        f"State   \t{gw.state}",
        f"Status  \t{gw.status}",
    ]
    if gw.status == "UP":
        lines.append(f"Uptime  \t{int(time.time() - gw.started)}s")
    lines += [
        f"CallsIN \t{gw.calls_in}",
        f"CallsOUT\t{gw.calls_out}",
        f"FailedCallsIN\t{gw.failed_in}",
        f"FailedCallsOUT\t{gw.failed_out}",
        "=" * 97,
    ]
    return "\n".join(lines) + "\n"


def sofia_status_table(sim: "FsSim") -> str:
    """`sofia status`, same layout as the capture (profiles, alias, then our gateways)."""
    rows = [
        ("external-ipv6", "profile", "sip:mod_sofia@[fd00::2]:5080", "RUNNING (0)"),
        (sim.sip_ip, "alias", "internal", "ALIASED"),
        ("external", "profile", f"sip:mod_sofia@{sim.sip_ip}:5080", "RUNNING (0)"),
    ]
    for gw in sim.gateways.values():
        rows.append((f"{gw.profile}::{gw.name}", "gateway", gw.data_uri(), gw.state))
    rows += [
        ("internal-ipv6", "profile", "sip:mod_sofia@[fd00::2]:5060", "RUNNING (0)"),
        ("internal", "profile", f"sip:mod_sofia@{sim.sip_ip}:5060", "RUNNING (0)"),
    ]
    line = "=" * 97
    out = [f"{'Name':>25}\t{'Type':>7}\t{'Data':>42}\tState", line]
    out += [f"{n:>25}\t{t:>7}\t{d:>42}\t{s}" for n, t, d, s in rows]
    out += [line, "4 profiles 1 alias", ""]
    return "\n".join(out)
