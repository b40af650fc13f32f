"""Event Socket (ESL) wire format: framing, header encoding and command parsing.

Everything here mirrors what FreeSWITCH 1.10.12 puts on the wire (see the captures in
``shared/fixtures/freeswitch``), so the rest of the simulator never builds raw bytes itself.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

# SWITCH_URL_UNSAFE from switch_utils.h; bytes < 0x20 or > 0x7e are escaped as well.
_URL_UNSAFE = set(b'\r\n #%&+:;<=>?@[\\]^`{|}"')
_HEX = "0123456789ABCDEF"

DISCONNECT_MESSAGE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"

Header = tuple[str, str]


def url_encode(value: str) -> str:
    """Percent-encode a header value exactly like switch_url_encode (plain events)."""
    out: list[str] = []
    for byte in value.encode("utf-8"):
        if byte < 0x20 or byte > 0x7E or byte in _URL_UNSAFE:
            out.append("%" + _HEX[byte >> 4] + _HEX[byte & 0x0F])
        else:
            out.append(chr(byte))
    return "".join(out)


def serialize_plain(headers: Sequence[Header], body: Optional[str]) -> bytes:
    """switch_event_serialize: URL-encoded headers, then the body with an inner Content-Length."""
    parts = [f"{name}: {url_encode(value)}\n" for name, value in headers]
    if body:
        raw = body.encode("utf-8")
        parts.append(f"Content-Length: {len(raw)}\n\n")
        return "".join(parts).encode("utf-8") + raw
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def _json_str(value: str) -> str:
    """cJSON string escaping: UTF-8 kept raw, '/' not escaped, control chars escaped."""
    return json.dumps(value, ensure_ascii=False)


def serialize_json(headers: Sequence[Header], body: Optional[str]) -> bytes:
    """switch_event_serialize_json: one object, header order kept (duplicates too), body as _body."""
    items = [f"{_json_str(k)}:{_json_str(v)}" for k, v in headers]
    if body:
        items.append(f'"Content-Length":"{len(body.encode("utf-8"))}"')
        items.append(f'"_body":{_json_str(body)}')
    return ("{" + ",".join(items) + "}").encode("utf-8")


def _xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def serialize_xml(headers: Sequence[Header], body: Optional[str]) -> bytes:
    """switch_event_xmlize as sent by `event xml` (rarely used; kept for completeness)."""
    lines = ["<event>", "  <headers>"]
    for k, v in headers:
        lines.append(f"    <{k}>{_xml_escape(url_encode(v))}</{k}>")
    lines.append("  </headers>")
    if body:
        lines.append(f"  <body>{_xml_escape(body)}</body>")
    lines.append("</event>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def event_frame(payload: bytes, fmt: str) -> bytes:
    """Outer framing of one event, header order as captured (Content-Length first)."""
    return f"Content-Length: {len(payload)}\nContent-Type: text/event-{fmt}\n\n".encode() + payload


def command_reply(reply_text: str, extra: Iterable[Header] = ()) -> bytes:
    """`command/reply` as FreeSWITCH sends it (e.g. bgapi adds a Job-UUID header)."""
    lines = ["Content-Type: command/reply", f"Reply-Text: {reply_text}"]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def api_response(body: str) -> bytes:
    """`api/response` with the body length in bytes."""
    raw = body.encode("utf-8")
    return f"Content-Type: api/response\nContent-Length: {len(raw)}\n\n".encode() + raw


def auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def disconnect_notice(linger: bool = False) -> bytes:
    """`text/disconnect-notice` sent before FreeSWITCH closes a listener."""
    raw = DISCONNECT_MESSAGE.encode()
    extra = "Controlled-Session-UUID: \nContent-Disposition: linger\n" if linger else ""
    return f"Content-Type: text/disconnect-notice\n{extra}Content-Length: {len(raw)}\n\n".encode() + raw


@dataclass
class Command:
    """One client command: first line plus optional `Name: value` headers and body (sendmsg)."""

    line: str
    headers: list[Header] = field(default_factory=list)
    body: str = ""

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default


class CommandReader:
    """Reads commands from a socket the way mod_event_socket's read_packet does."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def _fill(self) -> bool:
        data = self._sock.recv(65536)
        if not data:
            return False
        self._buf += data
        return True

    def read(self) -> Optional[Command]:
        """Return the next command or None on EOF."""
        while True:
            # FreeSWITCH skips leading blank lines.
            stripped = self._buf.lstrip(b"\r\n")
            if stripped is not self._buf:
                self._buf = stripped
            idx = self._find_end()
            if idx is not None:
                end, sep_len = idx
                block = self._buf[:end].decode("utf-8", "replace").replace("\r", "")
                self._buf = self._buf[end + sep_len:]
                lines = block.split("\n")
                cmd = Command(line=lines[0].strip())
                for extra in lines[1:]:
                    if not extra:
                        continue
                    name, _, value = extra.partition(":")
                    cmd.headers.append((name.strip(), value.lstrip(" ")))
                clen = cmd.header("content-length")
                if clen and clen.strip().isdigit() and int(clen) > 0:
                    n = int(clen)
                    while len(self._buf) < n:
                        if not self._fill():
                            return None
                    cmd.body = self._buf[:n].decode("utf-8", "replace")
                    self._buf = self._buf[n:]
                return cmd
            if not self._fill():
                return None

    def _find_end(self) -> Optional[tuple[int, int]]:
        for sep in (b"\n\n", b"\r\n\r\n"):
            i = self._buf.find(sep)
            if i >= 0:
                return i, len(sep)
        return None
