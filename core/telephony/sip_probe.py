"""A minimal SIP user agent for probing a provider's trunk ("Проверить подключение").

Stdlib only (sockets, hashlib): the platform must be able to check a trunk on a bare on-prem box,
before FreeSWITCH is even configured, and the answers must come from the provider itself, not
from our own SIP stack's interpretation of it.

What it does:

* ``resolve(host)``: A/AAAA through ``getaddrinfo`` (with a deadline, since it has none itself);
* ``options_ping(...)``: one RFC 3261 OPTIONS transaction (UDP retransmissions with T1
  doubling, capped at T2), matched to its response by Call-ID, top Via branch and CSeq;
* ``register_probe(...)``: REGISTER, answering a 401/407 Digest challenge (RFC 2617 / RFC 8760:
  MD5, MD5-sess, SHA-256, with or without ``qop=auth``), then removing the very binding it created
  (``Expires: 0`` on our own Contact, never ``Contact: *``, which would also drop the production
  FreeSWITCH registration of the same account).

Results are plain data (``ProbeResult``); wording for humans lives in ``core.telephony.trunk_check``.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

USER_AGENT = "VoiceAI-trunk-check/1.0"
T1 = 0.5  # RFC 3261 17.1.1.1: RTT estimate; first UDP retransmission interval
T2 = 4.0  # RFC 3261 17.1.2.2: cap of the non-INVITE retransmission interval
DEFAULT_PORT = 5060
MAX_DATAGRAM = 65535
MAX_TCP_MESSAGE = 256 * 1024

# Error identifiers of ProbeResult.error (machine-readable; trunk_check turns them into Russian).
ERR_DNS = "dns_failed"
ERR_DNS_TIMEOUT = "dns_timeout"
ERR_TIMEOUT = "timeout"
ERR_REFUSED = "connection_refused"
ERR_PORT_UNREACHABLE = "port_unreachable"
ERR_CONNECT_TIMEOUT = "connect_timeout"
ERR_NETWORK = "network_error"
ERR_BAD_RESPONSE = "bad_response"
ERR_AUTH_UNSUPPORTED = "auth_unsupported"
ERR_BAD_ARGUMENT = "bad_argument"

# RFC 3261 7.3.3 and later RFCs: compact header names.
COMPACT_HEADERS = {
    "v": "via", "i": "call-id", "f": "from", "t": "to", "m": "contact", "l": "content-length",
    "c": "content-type", "e": "content-encoding", "k": "supported", "s": "subject", "o": "event",
    "u": "allow-events", "r": "refer-to", "b": "referred-by", "x": "session-expires",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity",
    "n": "identity-info",
}


class SipParseError(ValueError):
    """The bytes received are not a SIP message we can understand."""


@dataclass
class SipMessage:
    """A parsed SIP request or response. Header names are stored lower-case, in full form."""

    start_line: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    method: str | None = None       # requests
    request_uri: str | None = None  # requests
    status_code: int | None = None  # responses
    reason: str | None = None       # responses

    @property
    def is_response(self) -> bool:
        return self.status_code is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of a header (compact or full name, any case)."""
        key = _canonical_name(name)
        for hname, value in self.headers:
            if hname == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """All values of a header, comma-separated lists split (except auth headers)."""
        key = _canonical_name(name)
        out: list[str] = []
        for hname, value in self.headers:
            if hname != key:
                continue
            if key in _NO_COMMA_SPLIT:
                out.append(value)
            else:
                out.extend(v for v in split_commas(value) if v)
        return out


# Headers whose values contain commas that do not separate list elements.
_NO_COMMA_SPLIT = {"www-authenticate", "proxy-authenticate", "authorization", "proxy-authorization",
                   "date", "user-agent", "server", "subject", "retry-after", "warning"}


def _canonical_name(name: str) -> str:
    low = name.strip().lower()
    return COMPACT_HEADERS.get(low, low)


def split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quotes and <...> (e.g. several Via in one line)."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    angle = 0
    for ch in value:
        if quoted:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">" and angle:
            angle -= 1
        elif ch == "," and not angle:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf).strip())
    return parts


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP message: tolerant of LF-only line ends, folded headers and compact names."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    text = head.decode("utf-8", errors="replace").lstrip("\r\n")
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or not lines[0].strip():
        raise SipParseError("empty message")
    start = lines[0].strip()
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # RFC 3261 7.3.1: folded continuation line
            if not headers:
                raise SipParseError("continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipParseError(f"malformed header line: {line!r}")
        headers.append((_canonical_name(name), value.strip()))
    msg = SipMessage(start_line=start, headers=headers)
    if start.upper().startswith("SIP/"):
        parts = start.split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            raise SipParseError(f"bad status line: {start!r}")
        msg.status_code = int(parts[1])
        msg.reason = parts[2] if len(parts) > 2 else ""
    else:
        parts = start.split()
        if len(parts) != 3 or not parts[2].upper().startswith("SIP/"):
            raise SipParseError(f"bad request line: {start!r}")
        msg.method, msg.request_uri = parts[0].upper(), parts[1]
    length = msg.get("content-length")
    if length is not None and length.strip().isdigit():
        body = body[:int(length.strip())]
    msg.body = body
    return msg


def header_params(value: str) -> dict[str, str]:
    """``;name=value`` parameters of a header value (Via, Contact, To/From), names lower-case."""
    out: dict[str, str] = {}
    # Parameters after the URI's closing '>' (or after the first ';' when there is no <...>).
    tail = value.rsplit(">", 1)[1] if ">" in value else value.split(";", 1)[1] if ";" in value else ""
    for part in tail.split(";"):
        name, _, val = part.partition("=")
        if name.strip():
            out[name.strip().lower()] = val.strip().strip('"')
    return out


def via_branch(msg: SipMessage) -> str | None:
    """The branch parameter of the topmost Via."""
    vias = msg.get_all("via")
    return header_params(vias[0]).get("branch") if vias else None


def cseq(msg: SipMessage) -> tuple[int, str] | None:
    """CSeq as (number, METHOD)."""
    value = msg.get("cseq")
    if not value:
        return None
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1].upper()


# ---------------------------------------------------------------------------------------------
# Digest authentication (RFC 2617, RFC 3261 22.4, RFC 8760)

_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*,?')


@dataclass
class DigestChallenge:
    """One ``Digest`` challenge from WWW-Authenticate / Proxy-Authenticate."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # came in a 407 Proxy-Authenticate


def parse_challenge(value: str, proxy: bool = False) -> DigestChallenge | None:
    """Parse a ``Digest ...`` challenge; None for other schemes or a challenge without a nonce."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    for m in _AUTH_PARAM.finditer(rest):
        raw = m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[m.group(1).lower()] = raw
    if "nonce" not in params:
        return None
    qop = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    return DigestChallenge(realm=params.get("realm", ""), nonce=params["nonce"],
                           algorithm=params.get("algorithm", "MD5") or "MD5", qop=qop,
                           opaque=params.get("opaque"), stale=params.get("stale", "").lower() == "true",
                           proxy=proxy)


_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def digest_supported(algorithm: str) -> bool:
    """Whether we can answer a challenge with this algorithm (``-sess`` variants included)."""
    base = algorithm.upper().removesuffix("-SESS")
    return base in _HASHES


def digest_response(*, username: str, password: str, realm: str, nonce: str, method: str, uri: str,
                    qop: str | None = None, nc: str | None = None, cnonce: str | None = None,
                    algorithm: str = "MD5") -> str:
    """The ``response`` value of RFC 2617 3.2.2.1 (qop=auth or no qop; MD5/SHA-256, -sess)."""
    algo = algorithm.upper()
    base = algo.removesuffix("-SESS")
    if base not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    h = lambda s: _HASHES[base](s.encode("utf-8")).hexdigest()  # noqa: E731
    ha1 = h(f"{username}:{realm}:{password}")
    if algo.endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = h(f"{method}:{uri}")
    if qop:
        return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return h(f"{ha1}:{nonce}:{ha2}")


def build_authorization(challenge: DigestChallenge, *, username: str, password: str, method: str,
                        uri: str, nc: int = 1, cnonce: str | None = None) -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge``."""
    qop = "auth" if "auth" in challenge.qop else None
    cnonce = cnonce or secrets.token_hex(8)
    nc_s = f"{nc:08x}"
    resp = digest_response(username=username, password=password, realm=challenge.realm,
                           nonce=challenge.nonce, method=method, uri=uri, qop=qop,
                           nc=nc_s if qop else None, cnonce=cnonce if qop else None,
                           algorithm=challenge.algorithm)
    q = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    parts = [f"username={q(username)}", f"realm={q(challenge.realm)}", f"nonce={q(challenge.nonce)}",
             f"uri={q(uri)}", f"response={q(resp)}", f"algorithm={challenge.algorithm}"]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_s}", f"cnonce={q(cnonce)}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={q(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Name resolution

class ResolveError(Exception):
    """DNS did not give an address; ``timeout`` tells a silent resolver from a negative answer."""

    def __init__(self, host: str, message: str, timeout: bool = False) -> None:
        super().__init__(message)
        self.host, self.timeout = host, timeout


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def resolve(host: str, timeout: float = 5.0) -> list[str]:
    """A/AAAA addresses of ``host`` (IPv4 first), raising ResolveError.

    getaddrinfo has no timeout of its own, so it runs in a helper thread with a deadline: a dead
    resolver must not hang the web request. SRV (RFC 3263) is not looked up: the trunk form holds
    an explicit host and port, and that is what FreeSWITCH dials.
    """
    host = host.strip().strip("[]")
    if not host:
        raise ResolveError(host, "empty host")
    if is_ip_literal(host):
        return [host]
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, None, 0, socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            box["error"] = exc

    worker = threading.Thread(target=work, name="sip-probe-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ResolveError(host, f"DNS did not answer in {timeout:g} s", timeout=True)
    if "error" in box:
        raise ResolveError(host, str(box["error"]))
    addrs: list[str] = []
    for family, *_rest, sockaddr in box["infos"]:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addrs:
            addrs.append(sockaddr[0])
    if not addrs:
        raise ResolveError(host, "no A/AAAA records")
    return sorted(addrs, key=lambda a: ":" in a)


# ---------------------------------------------------------------------------------------------
# Results

@dataclass
class ProbeResult:
    """Outcome of one probe. ``ok`` means the provider gave the answer the probe hoped for."""

    ok: bool
    status_code: int | None = None      # final SIP status, None when nothing came back
    reason: str | None = None           # SIP reason phrase, or an English error description
    rtt_ms: float | None = None         # first send -> final response of the answered transaction
    server_header: str | None = None    # Server (or User-Agent) of the response
    error: str | None = None            # one of the ERR_* identifiers
    remote: str | None = None           # "ip:port" probed
    transport: str = "udp"
    waited_ms: float = 0.0              # total time spent waiting, all attempts
    attempts: int = 0                   # transactions started (retries included)
    challenged: bool = False            # REGISTER: a 401/407 challenge was answered
    realm: str | None = None            # REGISTER: realm of that challenge
    unregister_status: int | None = None  # REGISTER: final status of the Expires: 0 clean-up
    response: SipMessage | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("response", None)
        return data


# ---------------------------------------------------------------------------------------------
# Transports

class _TransportError(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


def _host_for_uri(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


class _Transport:
    """One local socket to one remote address: UDP (datagrams) or TCP (a byte stream)."""

    def __init__(self, ip: str, port: int, transport: str, connect_timeout: float) -> None:
        self.remote = (ip, port)
        self.transport = transport
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self.reliable = transport == "tcp"
        kind = socket.SOCK_STREAM if self.reliable else socket.SOCK_DGRAM
        self.sock = socket.socket(family, kind)
        self._buf = b""
        try:
            # Ephemeral local port on the wildcard address of the right family. Connecting a UDP
            # socket only fixes the peer: the kernel picks the route (our Via address) and reports
            # ICMP "port unreachable" to us instead of dropping it.
            self.sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            self.sock.settimeout(connect_timeout)
            self.sock.connect(self.remote)
        except ConnectionRefusedError as exc:
            self.close()
            raise _TransportError(ERR_REFUSED, str(exc)) from exc
        except (socket.timeout, TimeoutError) as exc:
            self.close()
            raise _TransportError(ERR_CONNECT_TIMEOUT, "TCP connect timed out") from exc
        except OSError as exc:
            self.close()
            raise _TransportError(ERR_NETWORK, str(exc)) from exc
        local = self.sock.getsockname()
        self.local_ip, self.local_port = local[0], local[1]

    @property
    def via_transport(self) -> str:
        return self.transport.upper()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data) if self.reliable else self.sock.send(data)
        except ConnectionRefusedError as exc:
            raise _TransportError(ERR_PORT_UNREACHABLE if not self.reliable else ERR_REFUSED,
                                  str(exc)) from exc
        except OSError as exc:
            raise _TransportError(ERR_NETWORK, str(exc)) from exc

    def recv(self, timeout: float) -> bytes | None:
        """One whole message, or None when ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        if not self.reliable:
            self.sock.settimeout(max(timeout, 0.001))
            try:
                return self.sock.recv(MAX_DATAGRAM)
            except (socket.timeout, TimeoutError):
                return None
            except ConnectionRefusedError as exc:  # ICMP port unreachable for our datagram
                raise _TransportError(ERR_PORT_UNREACHABLE, str(exc)) from exc
            except OSError as exc:
                raise _TransportError(ERR_NETWORK, str(exc)) from exc
        while True:
            msg = self._take_stream_message()
            if msg is not None:
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except OSError as exc:
                raise _TransportError(ERR_NETWORK, str(exc)) from exc
            if not chunk:
                raise _TransportError(ERR_NETWORK, "connection closed by the provider")
            self._buf += chunk
            if len(self._buf) > MAX_TCP_MESSAGE:
                raise _TransportError(ERR_BAD_RESPONSE, "oversized message on the stream")

    def _take_stream_message(self) -> bytes | None:
        # RFC 5626 keep-alives (CRLF) may sit between messages.
        self._buf = self._buf.lstrip(b"\r\n")
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buf[:end]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"content-length", b"l"):
                try:
                    length = int(value.strip())
                except ValueError:
                    raise _TransportError(ERR_BAD_RESPONSE, "bad Content-Length") from None
        total = end + 4 + length
        if len(self._buf) < total:
            return None
        msg, self._buf = self._buf[:total], self._buf[total:]
        return msg

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Requests and transactions

def _token() -> str:
    return secrets.token_hex(8)


@dataclass
class _Dialogish:
    """Identifiers shared by the requests of one probe (one Call-ID, one From tag)."""

    call_id: str
    from_tag: str
    cseq: int = 0


def _build_request(tr: _Transport, *, method: str, request_uri: str, from_uri: str, to_uri: str,
                   ids: _Dialogish, branch: str, contact: str | None,
                   extra: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [
        f"{method} {request_uri} SIP/2.0",
        f"Via: SIP/2.0/{tr.via_transport} {_host_for_uri(tr.local_ip)}:{tr.local_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <{from_uri}>;tag={ids.from_tag}",
        f"To: <{to_uri}>",
        f"Call-ID: {ids.call_id}",
        f"CSeq: {ids.cseq} {method}",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    lines += [f"{name}: {value}" for name, value in extra]
    lines += [f"User-Agent: {USER_AGENT}", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode("utf-8")


@dataclass
class _Outcome:
    response: SipMessage | None
    rtt_ms: float | None
    waited_ms: float


def _transaction(tr: _Transport, build: Callable[[str], bytes], ids: _Dialogish, method: str,
                 timeout: float) -> _Outcome:
    """Run one non-INVITE client transaction (RFC 3261 17.1.2) and wait for its final response.

    ``build(branch)`` renders the request. Over UDP the request is retransmitted at T1, 2*T1, ...
    capped at T2 until ``timeout``; provisional responses are skipped. Responses are matched by
    Call-ID, top Via branch and CSeq, so stray traffic (a provider's own OPTIONS, a late answer to
    an earlier attempt) is ignored.
    """
    branch = "z9hG4bK" + _token()
    data = build(branch)
    start = time.monotonic()
    deadline = start + timeout
    tr.send(data)
    interval = T1
    next_send = float("inf") if tr.reliable else start + interval
    while True:
        now = time.monotonic()
        if now >= deadline:
            return _Outcome(None, None, (now - start) * 1000)
        if now >= next_send:
            tr.send(data)
            interval = min(interval * 2, T2)
            next_send = now + interval
        raw = tr.recv(min(deadline, next_send) - now)
        if raw is None:
            continue
        try:
            msg = parse_message(raw)
        except SipParseError:
            continue
        if not msg.is_response:
            continue
        if msg.get("call-id") != ids.call_id or via_branch(msg) != branch:
            continue
        cs = cseq(msg)
        if cs is None or cs != (ids.cseq, method):
            continue
        if msg.status_code is not None and msg.status_code < 200:
            continue
        done = time.monotonic()
        return _Outcome(msg, (done - start) * 1000, (done - start) * 1000)


def _first_address(host: str, result: ProbeResult) -> str | None:
    try:
        return resolve(host)[0]
    except ResolveError as exc:
        result.error = ERR_DNS_TIMEOUT if exc.timeout else ERR_DNS
        result.reason = str(exc)
        return None


def _fill_from_response(result: ProbeResult, out: _Outcome) -> None:
    msg = out.response
    assert msg is not None
    result.status_code, result.reason, result.response = msg.status_code, msg.reason, msg
    result.rtt_ms = round(out.rtt_ms or 0.0, 1)
    result.waited_ms = round(result.waited_ms, 1)
    result.server_header = msg.get("server") or msg.get("user-agent")


def _check_transport(transport: str) -> str:
    t = (transport or "udp").lower()
    if t not in ("udp", "tcp"):
        raise ValueError(f"unsupported transport {transport!r}: udp or tcp")
    return t


def options_ping(host: str, port: int = DEFAULT_PORT, transport: str = "udp", timeout: float = 2.0,
                 retries: int = 2) -> ProbeResult:
    """Send OPTIONS and wait for any final response: proof that a SIP server listens there.

    ``timeout`` bounds one transaction (UDP retransmits inside it); after a timeout the
    transaction is started again with a new branch up to ``retries`` more times, because some
    SBCs drop the first packet of an unknown source. ``ok`` is True for a 2xx; any other final
    response still proves reachability (``status_code`` is set, ``error`` is None).
    """
    transport = _check_transport(transport)
    result = ProbeResult(ok=False, transport=transport)
    ip = _first_address(host, result)
    if ip is None:
        return result
    result.remote = f"{_host_for_uri(ip)}:{port}"
    ids = _Dialogish(call_id=f"{_token()}@voiceai", from_tag=_token())
    for _attempt in range(max(0, retries) + 1):
        result.attempts += 1
        try:
            tr = _Transport(ip, port, transport, connect_timeout=timeout)
        except _TransportError as exc:
            result.error, result.reason = exc.error, str(exc)
            if exc.error == ERR_CONNECT_TIMEOUT:
                result.waited_ms += timeout * 1000
                continue
            return result
        try:
            ids.cseq += 1
            tport = "" if transport == "udp" else f";transport={transport}"
            local = f"{_host_for_uri(tr.local_ip)}:{tr.local_port}"
            uri = f"sip:{_host_for_uri(host) if not is_ip_literal(host) else _host_for_uri(ip)}:{port}"

            def build(branch: str) -> bytes:
                return _build_request(
                    tr, method="OPTIONS", request_uri=uri + tport,
                    from_uri=f"sip:trunk-check@{local}", to_uri=uri, ids=ids, branch=branch,
                    contact=f"<sip:trunk-check@{local}{tport}>",
                    extra=[("Accept", "application/sdp")])

            out = _transaction(tr, build, ids, "OPTIONS", timeout)
        except _TransportError as exc:
            result.error, result.reason = exc.error, str(exc)
            return result
        finally:
            tr.close()
        result.waited_ms += out.waited_ms
        if out.response is not None:
            _fill_from_response(result, out)
            result.error = None
            result.ok = 200 <= (result.status_code or 0) < 300
            return result
        result.error, result.reason = ERR_TIMEOUT, f"no SIP response in {timeout:g} s"
    result.waited_ms = round(result.waited_ms, 1)
    return result


def _auth_header_pairs(resp: SipMessage) -> tuple[list[DigestChallenge], list[str]]:
    """Digest challenges of a 401/407 (preferred algorithm first) and the schemes seen."""
    proxy = resp.status_code == 407
    raw = resp.get_all("proxy-authenticate" if proxy else "www-authenticate")
    challenges = [c for c in (parse_challenge(v, proxy) for v in raw) if c]
    schemes = [v.split(" ", 1)[0] for v in raw]
    usable = [c for c in challenges if digest_supported(c.algorithm)]
    usable.sort(key=lambda c: 0 if c.algorithm.upper().startswith("SHA-256") else 1)
    return usable, schemes


def register_probe(host: str, port: int = DEFAULT_PORT, transport: str = "udp", login: str = "",
                   password: str = "", realm: str | None = None, domain: str | None = None,
                   timeout: float = 2.0, retries: int = 1, auth_username: str | None = None,
                   expires: int = 60) -> ProbeResult:
    """REGISTER ``login`` with the provider, answering its Digest challenge, then unregister.

    Final status: 200 means the credentials work; 401/407 again (or 403) after our answer means
    they are wrong; 404 means the registrar does not know the user. ``realm`` picks among several
    challenges and, like FreeSWITCH's gateway ``realm``, is the default registrar domain;
    ``domain`` (else realm, else host) goes into the Request-URI, To and From. On success the
    binding is removed at once with ``Expires: 0`` on our own Contact only.
    """
    transport = _check_transport(transport)
    result = ProbeResult(ok=False, transport=transport)
    if not login:
        result.error, result.reason = ERR_BAD_ARGUMENT, "login is required"
        return result
    ip = _first_address(host, result)
    if ip is None:
        return result
    result.remote = f"{_host_for_uri(ip)}:{port}"
    reg_domain = domain or realm or (host if not is_ip_literal(host) else _host_for_uri(ip))
    if domain is None and realm is None and port != DEFAULT_PORT:
        reg_domain = f"{reg_domain}:{port}"
    tport = "" if transport == "udp" else f";transport={transport}"
    request_uri = f"sip:{reg_domain}{tport}"
    aor = f"sip:{login}@{reg_domain}"
    auth_user = auth_username or login

    for _attempt in range(max(0, retries) + 1):
        result.attempts += 1
        try:
            tr = _Transport(ip, port, transport, connect_timeout=timeout)
        except _TransportError as exc:
            result.error, result.reason = exc.error, str(exc)
            if exc.error == ERR_CONNECT_TIMEOUT:
                result.waited_ms += timeout * 1000
                continue
            return result
        try:
            session = _RegisterSession(tr, result, request_uri=request_uri, aor=aor, login=login,
                                       auth_user=auth_user, password=password, realm=realm,
                                       tport=tport, timeout=timeout)
            done = session.register(expires)
        except _TransportError as exc:
            result.error, result.reason = exc.error, str(exc)
            return result
        finally:
            tr.close()
        if done:
            break
    result.waited_ms = round(result.waited_ms, 1)
    return result


class _RegisterSession:
    """REGISTER (+ challenge answers) and the clean-up over one transport, sharing Call-ID/tag."""

    def __init__(self, tr: _Transport, result: ProbeResult, *, request_uri: str, aor: str,
                 login: str, auth_user: str, password: str, realm: str | None, tport: str,
                 timeout: float) -> None:
        self.tr, self.result = tr, result
        self.request_uri, self.aor = request_uri, aor
        self.auth_user, self.password, self.realm = auth_user, password, realm
        self.timeout = timeout
        self.ids = _Dialogish(call_id=f"{_token()}@voiceai", from_tag=_token())
        self.contact_uri = f"sip:{login}@{_host_for_uri(tr.local_ip)}:{tr.local_port}{tport}"
        self.challenge: DigestChallenge | None = None
        self.nc = 0
        self.cnonce = _token()

    def send(self, expires: int) -> _Outcome:
        """One REGISTER transaction, with our answer to the current challenge if there is one."""
        self.ids.cseq += 1
        extra = [("Expires", str(expires)), ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")]
        if self.challenge is not None:
            self.nc += 1
            header = "Proxy-Authorization" if self.challenge.proxy else "Authorization"
            extra.append((header, build_authorization(
                self.challenge, username=self.auth_user, password=self.password,
                method="REGISTER", uri=self.request_uri, nc=self.nc, cnonce=self.cnonce)))

        def build(branch: str) -> bytes:
            return _build_request(self.tr, method="REGISTER", request_uri=self.request_uri,
                                  from_uri=self.aor, to_uri=self.aor, ids=self.ids, branch=branch,
                                  contact=f"<{self.contact_uri}>;expires={expires}", extra=extra)

        out = _transaction(self.tr, build, self.ids, "REGISTER", self.timeout)
        self.result.waited_ms += out.waited_ms
        return out

    def take_challenge(self, resp: SipMessage) -> DigestChallenge | None:
        """Adopt the best usable challenge of a 401/407 (None if there is none)."""
        usable, _schemes = _auth_header_pairs(resp)
        if self.realm:
            usable.sort(key=lambda c: 0 if c.realm == self.realm else 1)
        if not usable:
            return None
        self.challenge, self.nc, self.cnonce = usable[0], 0, _token()
        return usable[0]

    def register(self, expires: int) -> bool:
        """Fill ``result`` with the final answer; False when the provider stayed silent."""
        result = self.result
        interval = expires
        answered = 0
        while True:
            out = self.send(interval)
            if out.response is None:
                result.error, result.reason = ERR_TIMEOUT, f"no SIP response in {self.timeout:g} s"
                return False
            resp = out.response
            _fill_from_response(result, out)
            result.error = None
            code = resp.status_code or 0
            if code == 423 and interval == expires:  # Interval Too Brief: use the registrar's minimum
                min_exp = (resp.get("min-expires") or "").strip()
                if min_exp.isdigit() and int(min_exp) > interval:
                    interval = int(min_exp)
                    continue
            if code in (401, 407):
                usable, schemes = _auth_header_pairs(resp)
                if not usable:
                    result.error = ERR_AUTH_UNSUPPORTED
                    result.reason = (f"{resp.reason} (no usable Digest challenge: "
                                     f"{', '.join(schemes) or 'none'})")
                    return True
                # A second challenge rejects our answer, unless it only says the nonce went stale.
                if self.challenge is not None and not any(c.stale for c in usable):
                    return True
                answered += 1
                if answered > 3:
                    return True
                chosen = self.take_challenge(resp)
                result.challenged, result.realm = True, chosen.realm if chosen else None
                continue
            break
        result.ok = 200 <= (result.status_code or 0) < 300
        if result.ok:
            result.unregister_status = self.unregister()
        return True

    def unregister(self) -> int | None:
        """Remove our binding only (Expires: 0 on our Contact); None if the provider is silent."""
        try:
            out = self.send(0)
            for _ in range(2):
                if out.response is None or out.response.status_code not in (401, 407):
                    break
                if self.take_challenge(out.response) is None:  # the clean-up wants a fresh nonce
                    break
                out = self.send(0)
        except _TransportError:
            return None
        return out.response.status_code if out.response is not None else None
