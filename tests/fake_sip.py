"""A fake SIP registrar/proxy for tests, speaking real SIP over real UDP and TCP sockets.

It plays the provider's side of «Проверить подключение»: OPTIONS gets ``200 OK`` with a Server
header; REGISTER gets a ``401`` Digest challenge (realm, nonce, ``qop="auth"``, ``algorithm=MD5``),
then the Authorization is verified against ``users`` and answered ``200 OK`` (Contact with expires,
Expires) or ``403 Forbidden`` (``404`` for an unknown user). ``Expires: 0`` removes the binding.

Deliberately independent of ``core.telephony.sip_probe``: its own parser and its own digest code,
so a bug in the probe cannot hide behind the same bug in the fake. Every request is logged for
assertions (``srv.log``, ``srv.requests("REGISTER")``).

    with FakeSipServer(users={"100": "secret"}) as srv:
        options_ping("127.0.0.1", srv.port)
"""
from __future__ import annotations

import hashlib
import re
import secrets
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable

_COMPACT = {"v": "via", "i": "call-id", "f": "from", "t": "to", "m": "contact", "l": "content-length",
            "c": "content-type", "k": "supported"}


@dataclass
class LoggedRequest:
    """One request as the fake received it (retransmissions are logged too)."""

    transport: str
    source: tuple[str, int]
    method: str
    uri: str
    headers: dict[str, list[str]]
    raw: bytes
    at: float
    response_status: int | None = None  # what the fake answered; None: no answer
    expires: int | None = None          # REGISTER: effective expiry asked for
    user: str | None = None             # REGISTER: authenticated user, if any

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def _parse_request(data: bytes) -> tuple[str, str, dict[str, list[str]]]:
    """Request line and headers; folded lines joined, compact names expanded."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    method, uri, _version = lines[0].split(" ", 2)
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        elif line:
            unfolded.append(line)
    headers: dict[str, list[str]] = {}
    for line in unfolded:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), []).append(value.strip())
    return method, uri, headers


def _auth_params(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    out = {}
    for m in re.finditer(r'([a-zA-Z0-9-]+)\s*=\s*(?:"([^"]*)"|([^,\s]+))', rest):
        out[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    out["_scheme"] = scheme.lower()
    return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


class FakeSipServer:
    """Registrar/proxy on 127.0.0.1, same port number for UDP and TCP, in a background thread.

    Options: ``silent`` (read and log, never answer: an unreachable provider that drops packets),
    ``options_status`` (None: ignore OPTIONS but still handle REGISTER, like providers that only
    answer registered peers), ``qop`` (False: an RFC 2069-style challenge without qop),
    ``proxy_auth`` (challenge with 407/Proxy-Authenticate), ``compact`` (answer with compact
    header names and a folded WWW-Authenticate), ``send_trying`` (100 Trying before each final
    answer), ``min_expires`` (answer 423 below it), ``unknown_user_status``.
    """

    def __init__(self, users: dict[str, str] | None = None, *, realm: str = "fake.voiceai.test",
                 host: str = "127.0.0.1", transports: Iterable[str] = ("udp", "tcp"),
                 silent: bool = False, options_status: int | None = 200,
                 server_header: str = "FakeSIP/1.0 (voiceai tests)", qop: bool = True,
                 proxy_auth: bool = False, compact: bool = False, send_trying: bool = False,
                 min_expires: int | None = None, unknown_user_status: int = 404) -> None:
        self.users = dict(users or {})
        self.realm, self.host = realm, host
        self.transports = tuple(transports)
        self.silent, self.options_status = silent, options_status
        self.server_header, self.qop, self.proxy_auth = server_header, qop, proxy_auth
        self.compact, self.send_trying = compact, send_trying
        self.min_expires, self.unknown_user_status = min_expires, unknown_user_status
        self.log: list[LoggedRequest] = []
        self.bindings: dict[str, dict[str, int]] = {}  # user -> {contact: expires}
        self.port = 0
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._conns: dict[socket.socket, bytes] = {}
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "FakeSipServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind UDP and TCP on one free port and start serving."""
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = None
            if "tcp" in self.transports:
                tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    tcp.bind((self.host, port))
                except OSError:
                    udp.close()
                    tcp.close()
                    continue
                tcp.listen(16)
            break
        else:  # pragma: no cover - the machine is out of ports
            raise RuntimeError("no free port for FakeSipServer")
        self.port = port
        if "udp" in self.transports:
            self._udp = udp
            udp.setblocking(False)
            self._sel.register(udp, selectors.EVENT_READ, "udp")
        else:
            udp.close()  # nothing listens on UDP: the kernel answers ICMP port unreachable
        if tcp is not None:
            self._tcp = tcp
            tcp.setblocking(False)
            self._sel.register(tcp, selectors.EVENT_READ, "accept")
        self._thread = threading.Thread(target=self._serve, name="fake-sip", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        for sock in [self._udp, self._tcp, *self._conns]:
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self._sel.close()

    # -- assertions helpers ------------------------------------------------------------------

    def requests(self, method: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.log if method is None or r.method == method.upper()]

    # -- loop ----------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _mask in self._sel.select(timeout=0.05):
                sock, kind = key.fileobj, key.data
                try:
                    if kind == "udp":
                        data, addr = sock.recvfrom(65535)
                        if data.strip(b"\r\n"):
                            self._handle(data, "udp", addr, lambda b, a=addr: self._udp.sendto(b, a))
                    elif kind == "accept":
                        conn, _addr = sock.accept()
                        conn.setblocking(False)
                        self._conns[conn] = b""
                        self._sel.register(conn, selectors.EVENT_READ, "tcp")
                    else:
                        self._read_tcp(sock)
                except OSError:
                    continue

    def _read_tcp(self, conn: socket.socket) -> None:
        chunk = conn.recv(65536)
        if not chunk:
            self._sel.unregister(conn)
            self._conns.pop(conn, None)
            conn.close()
            return
        buf = self._conns[conn] + chunk
        while True:
            buf = buf.lstrip(b"\r\n")
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", buf[:end])
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) < total:
                break
            msg, buf = buf[:total], buf[total:]
            self._handle(msg, "tcp", conn.getpeername(), conn.sendall)
        self._conns[conn] = buf

    # -- SIP -----------------------------------------------------------------------------------

    def _handle(self, data: bytes, transport: str, source: tuple[str, int], send) -> None:
        try:
            method, uri, headers = _parse_request(data)
        except ValueError:
            return
        entry = LoggedRequest(transport, source, method.upper(), uri, headers, data, time.monotonic())
        with self._lock:
            self.log.append(entry)
        if self.silent:
            return
        if method == "OPTIONS":
            if self.options_status is None:
                return
            self._reply(send, entry, self.options_status,
                        extra=[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER"),
                               ("Accept", "application/sdp")])
        elif method == "REGISTER":
            self._register(send, entry)
        else:
            self._reply(send, entry, 405, extra=[("Allow", "OPTIONS, REGISTER")])

    def _register(self, send, entry: LoggedRequest) -> None:
        contact = entry.header("contact") or ""
        exp_hdr = entry.header("expires")
        m = re.search(r";\s*expires=(\d+)", contact)
        expires = int(m.group(1)) if m else int(exp_hdr) if exp_hdr and exp_hdr.isdigit() else 3600
        entry.expires = expires
        auth_name = "proxy-authorization" if self.proxy_auth else "authorization"
        auth = entry.header(auth_name)
        if not auth:
            return self._challenge(send, entry)
        p = _auth_params(auth)
        if p.get("_scheme") != "digest" or p.get("nonce") not in self._nonces or p.get("realm") != self.realm:
            return self._challenge(send, entry)
        user = p.get("username", "")
        if user not in self.users:
            return self._reply(send, entry, self.unknown_user_status)
        if p.get("uri") != entry.uri:
            return self._reply(send, entry, 400, reason="Bad Request (digest uri mismatch)")
        ha1 = _md5(f"{user}:{self.realm}:{self.users[user]}")
        ha2 = _md5(f"REGISTER:{p.get('uri')}")
        if self.qop:
            if p.get("qop") != "auth" or not p.get("nc") or not p.get("cnonce"):
                return self._reply(send, entry, 403)
            expected = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        if p.get("response") != expected:
            return self._reply(send, entry, 403)
        entry.user = user
        if expires and self.min_expires and expires < self.min_expires:
            return self._reply(send, entry, 423, extra=[("Min-Expires", str(self.min_expires))])
        uri_m = re.search(r"<([^>]*)>", contact)
        contact_uri = uri_m.group(1) if uri_m else contact.split(";")[0]
        with self._lock:
            bound = self.bindings.setdefault(user, {})
            if expires == 0:
                bound.pop(contact_uri, None)
            else:
                bound[contact_uri] = expires
            contacts = [f"<{c}>;expires={e}" for c, e in bound.items()]
        extra = [("Contact", c) for c in contacts] + [("Expires", str(expires))]
        self._reply(send, entry, 200, extra=extra)

    def _challenge(self, send, entry: LoggedRequest) -> None:
        nonce = secrets.token_hex(16)
        self._nonces.add(nonce)
        parts = [f'realm="{self.realm}"', f'nonce="{nonce}"']
        if self.qop:
            parts.append('qop="auth"')
        parts.append("algorithm=MD5")
        value = "Digest " + ", ".join(parts)
        if self.compact:  # fold the long header over two lines (RFC 3261 7.3.1)
            value = value.replace(", ", ",\r\n   ", 1)
        name = "Proxy-Authenticate" if self.proxy_auth else "WWW-Authenticate"
        self._reply(send, entry, 407 if self.proxy_auth else 401, extra=[(name, value)])

    _REASONS = {100: "Trying", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
                423: "Interval Too Brief", 500: "Server Internal Error", 503: "Service Unavailable"}

    def _reply(self, send, entry: LoggedRequest, status: int, *, reason: str | None = None,
               extra: list[tuple[str, str]] | None = None) -> None:
        if self.send_trying and status >= 200:
            self._send_response(send, entry, 100, "Trying", [])
        entry.response_status = status
        self._send_response(send, entry, status, reason or self._REASONS.get(status, "Unknown"), extra or [])

    def _send_response(self, send, entry: LoggedRequest, status: int, reason: str,
                       extra: list[tuple[str, str]]) -> None:
        h = entry.headers
        vias = list(h.get("via", []))
        if vias and entry.transport == "udp":  # RFC 3581: fill rport, add received
            top = vias[0]
            ip, port = entry.source
            top = re.sub(r";rport(?=;|$)", f";rport={port}", top)
            vias[0] = f"{top};received={ip}"
        to = (h.get("to") or [""])[0]
        if status > 100 and ";tag=" not in to:
            to += ";tag=" + secrets.token_hex(4)
        c = self.compact
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"{'v' if c else 'Via'}: {v}" for v in vias]
        lines += [f"{'f' if c else 'From'}: {(h.get('from') or [''])[0]}",
                  f"{'t' if c else 'To'}: {to}",
                  f"{'i' if c else 'Call-ID'}: {(h.get('call-id') or [''])[0]}",
                  f"CSeq: {(h.get('cseq') or [''])[0]}"]
        lines += [f"{name}: {value}" for name, value in extra]
        if self.server_header:
            lines.append(f"Server: {self.server_header}")
        lines += [f"{'l' if c else 'Content-Length'}: 0", "", ""]
        try:
            send("\r\n".join(lines).encode("utf-8"))
        except OSError:
            pass


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port where nothing listens right now (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
