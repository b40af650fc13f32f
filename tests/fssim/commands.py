"""API commands (`api`/`bgapi`), with FreeSWITCH's exact reply strings.

Replies marked "captured" are byte-for-byte those of FreeSWITCH 1.10.12 in
shared/fixtures/freeswitch; the others follow the mod_commands / mod_sofia sources.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Callable, Optional

from .channel import Message
from .gateways import gateway_status_table, load_gateway_files, sofia_status_table

if TYPE_CHECKING:  # pragma: no cover
    from .server import FsSim

log = logging.getLogger("fssim.commands")

VERSION = "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit (git a88d069 2024-08-02 21:02:27Z 64bit)"
VERSION_SHORT = "1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit"
NO_CHANNEL = "-ERR No such channel!\n"  # captured
FORK_SYNTAX = ("<uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] "
               "[wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] "
               "[metadata] [bidrectionalAduo_enabled] [bidrectionalAduo_stream_enabled] "
               "[bidrectionalAduo_stream_samplerate]")

Handler = Callable[[str], str]


def uptime_text(seconds: float) -> str:
    us = int(seconds * 1_000_000)
    days, rem = divmod(us, 86_400_000_000)
    hours, rem = divmod(rem, 3_600_000_000)
    mins, rem = divmod(rem, 60_000_000)
    secs, rem = divmod(rem, 1_000_000)
    ms, micro = divmod(rem, 1000)
    years, days = divmod(days, 365)
    return (f"{years} years, {days} days, {hours} hours, {mins} minutes, {secs} seconds, "
            f"{ms} milliseconds, {micro} microseconds")


class Commands:
    """Dispatches `api <cmd> <args>` and produces the reply body."""

    def __init__(self, sim: "FsSim") -> None:
        self.sim = sim
        self.handlers: dict[str, Handler] = {
            "status": self.status, "version": self.version, "show": self.show,
            "global_getvar": self.global_getvar, "global_setvar": self.global_setvar,
            "reloadxml": self.reloadxml, "sofia": self.sofia, "originate": self.originate,
            "uuid_kill": self.uuid_kill, "uuid_answer": self.uuid_answer,
            "uuid_transfer": self.uuid_transfer, "uuid_bridge": self.uuid_bridge,
            "uuid_broadcast": self.uuid_broadcast, "uuid_break": self.uuid_break,
            "uuid_record": self.uuid_record, "uuid_setvar": self.uuid_setvar,
            "uuid_setvar_multi": self.uuid_setvar_multi, "uuid_getvar": self.uuid_getvar,
            "uuid_exists": self.uuid_exists, "uuid_send_dtmf": self.uuid_send_dtmf,
            "uuid_audio_fork": self.uuid_audio_fork, "hupall": self.hupall,
            "uuid_dump": self.uuid_dump, "strftime": self.strftime, "echo": lambda a: a,
            "uuid_hold": self.uuid_hold, "uuid_park": self.uuid_park,
            "reloadacl": self.reloadacl,
        }

    # ---- entry points ----
    def execute(self, cmd: str, args: str, fire_api_event: bool = True) -> str:
        """switch_api_execute + the API event FreeSWITCH fires for every command."""
        handler = self.handlers.get(cmd)
        if handler is None:
            reply = f"-ERR {cmd} Command not found!\n"
        else:
            try:
                reply = handler(args)
            except Exception as exc:  # a bug in the sim must not kill the ESL connection
                log.exception("api %s %s failed", cmd, args)
                self.sim.warnings.append(f"api {cmd} crashed: {exc}")
                reply = f"-ERR {exc}\n"
        if fire_api_event and handler is not None:
            headers = [("API-Command", cmd)]
            if args:
                headers.append(("API-Command-Argument", args))
            self.sim.bus.fire("API", headers)
        return reply

    def execute_api_line(self, line: str, fire_api_event: bool = True) -> str:
        cmd, _, args = line.strip().partition(" ")
        return self.execute(cmd, args.strip(), fire_api_event)

    def _chan(self, uuid: str):  # type: ignore[no-untyped-def]
        return self.sim.channels.get(uuid.strip())

    # ---- core ----
    def status(self, args: str) -> str:
        sim = self.sim
        live = len(sim.channels)
        return (f"UP {uptime_text(time.time() - sim.started)}\n"
                f"FreeSWITCH (Version 1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit) is "
                f"{'ready' if sim.accepting_calls else 'not ready'}\n"
                f"{sim.sessions_since_startup} session(s) since startup\n"
                f"{live} session(s) - peak {sim.session_peak}, last 5min {sim.session_peak} \n"
                f"0 session(s) per Sec out of max 30, peak {min(sim.session_peak, 30)}, last 5min "
                f"{min(sim.session_peak, 30)} \n"
                f"1000 session(s) max\n"
                f"min idle cpu 0.00/99.47\n"
                f"Current Stack Size/Max 240K/8192K\n")

    def version(self, args: str) -> str:
        return VERSION + "\n"

    def reloadacl(self, args: str) -> str:
        """mod_commands reload_acl_function: rebuilds the ACL lists from acl.conf.xml."""
        self.sim.acl_reloads += 1
        return "+OK acl reloaded\n"

    def global_getvar(self, args: str) -> str:
        name = args.strip()
        if not name:
            return "".join(f"{k}={v}\n" for k, v in self.sim.global_vars.items())
        return self.sim.global_vars.get(name, "")

    def global_setvar(self, args: str) -> str:
        name, _, value = args.partition("=")
        self.sim.global_vars[name.strip()] = value.strip()
        return "+OK"

    def reloadxml(self, args: str) -> str:
        self.sim.dialplan.reload()
        self.sim.bus.fire("RELOADXML", calling="RELOADXML")
        return "+OK [Success]\n"

    def strftime(self, args: str) -> str:
        return self.sim.now().strftime(args or "%Y-%m-%d %T")

    def show(self, args: str) -> str:
        parts = args.split()
        what = parts[0] if parts else ""
        as_json = len(parts) >= 3 and parts[1] == "as" and parts[2] == "json"
        rows: list[dict[str, str]]
        if what == "channels":
            rows = [ch.show_row() for ch in self.sim.live_channels()]
        elif what == "calls":
            rows = self.sim.call_rows()
        elif what == "channels" or what == "count":
            rows = []
        else:
            return "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels [count|like <match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|interfaces|interface_types|tasks|limits|status\n"
        if as_json:
            if not rows:
                return '{"row_count": 0}\n'  # captured
            return json.dumps({"row_count": len(rows), "rows": rows}, ensure_ascii=False, separators=(",", ":"))
        if not rows:
            return "\n0 total.\n\n"
        cols = list(rows[0].keys())
        lines = [",".join(cols)] + [",".join(r[c] for c in cols) for r in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    # ---- sofia ----
    def sofia(self, args: str) -> str:
        parts = args.split()
        sim = self.sim
        if parts[:1] == ["status"]:
            if len(parts) >= 3 and parts[1] == "gateway":
                gw = sim.gateways.get(parts[2].split("::")[-1])
                if gw is None:
                    return "Invalid Gateway!\n"  # captured
                return gateway_status_table(sim, gw)
            if len(parts) >= 3 and parts[1] == "profile":
                return f"Invalid Profile!\n" if parts[2] not in ("external", "internal") else sofia_status_table(sim)
            return sofia_status_table(sim)
        if len(parts) >= 3 and parts[0] == "profile":
            profile, action = parts[1], parts[2]
            if profile not in ("external", "internal", "external-ipv6", "internal-ipv6"):
                return "Invalid Profile!\n"
            if action == "rescan":
                sim.rescan_gateways(profile)
                return "+OK scan complete\n"
            if action == "killgw" and len(parts) >= 4:
                if parts[3] == "_all_":
                    for name in list(sim.gateways):
                        sim.remove_gateway(name)
                    return "+OK\n"
                if sim.remove_gateway(parts[3]):
                    return "+OK gateway marked for deletion.\n"
                return "-ERR no such gateway.\n"
            if action == "startgw" and len(parts) >= 4:
                sim.rescan_gateways(profile, only=parts[3])
                if parts[3] in sim.gateways:
                    return "+OK\n"
                return "-ERR no such gateway.\n"
            if action in ("restart", "start", "stop"):
                return f"+OK\n"
            if action == "register" and len(parts) >= 4:
                sim.register_gateway(parts[3])
                return "+OK\n"
        if parts[:1] == ["xmlstatus"]:
            return "<profiles></profiles>\n"
        return "-ERR Usage: sofia status|profile|gateway ...\n"

    # ---- calls ----
    def originate(self, args: str) -> str:
        result: list[str] = []
        self.sim.calls_engine.originate(args, result.append)
        return result[0] if result else "-ERR NORMAL_CLEARING\n"

    def uuid_kill(self, args: str) -> str:
        parts = args.split()
        ch = self._chan(parts[0]) if parts else None
        if ch is None:
            return NO_CHANNEL
        ch.hangup(parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
        return "+OK\n"

    def hupall(self, args: str) -> str:
        parts = args.split()
        cause = parts[0] if parts else "MANAGER_REQUEST"
        var, val = (parts[1], parts[2]) if len(parts) >= 3 else (None, None)
        for ch in self.sim.live_channels():
            if var is None or ch.get_var(var) == val:
                ch.hangup(cause)
        if var is None:
            return f"+OK hangup all channels with cause {cause}\n"  # captured
        return f"+OK hangup all channels matching [{var}]=[{val}] with cause {cause}\n"

    def uuid_answer(self, args: str) -> str:
        ch = self._chan(args.split()[0]) if args.split() else None
        if ch is None:
            return NO_CHANNEL
        if ch.answered:
            return "+OK\n"
        ch.answer()
        return "+OK\n"

    def uuid_park(self, args: str) -> str:
        ch = self._chan(args.split()[0]) if args.split() else None
        if ch is None:
            return NO_CHANNEL
        ch.queue_message(Message(command="execute", app="park"))
        return "+OK\n"

    def uuid_hold(self, args: str) -> str:
        return "+OK Success\n"

    def uuid_transfer(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        ch = self._chan(parts[0])
        if ch is None:
            return NO_CHANNEL
        rest = parts[1:]
        which = "a"
        if rest[0] in ("-bleg", "-both"):
            which = rest[0][1:]
            rest = rest[1:]
        if not rest:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        dest = rest[0]
        context = rest[2] if len(rest) > 2 else None
        targets = []
        other = ch.bridge_partner
        if which in ("a", "both"):
            targets.append(ch)
        if which in ("bleg", "both") and other is not None:
            targets.append(other)
        if not targets:
            return "-ERR no other leg\n"
        for t in targets:
            self.sim.calls_engine.transfer(t, dest, context or t.profile.context)
        return "+OK\n"

    def uuid_bridge(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <other_uuid>\n"
        a, b = self._chan(parts[0]), self._chan(parts[1])
        if a is None:
            return f"-ERR Invalid uuid {parts[0]}\n"
        if b is None:
            return f"-ERR Invalid uuid {parts[1]}\n"
        with a.cond:
            a.bridge_request = b
            a.break_flag = True
            a.cond.notify_all()
        return f"+OK {b.uuid}\n"

    def uuid_broadcast(self, args: str) -> str:
        parts = args.split(" ")
        if len(parts) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR Operation Failed\n"
        path = parts[1]
        leg = parts[2] if len(parts) > 2 else "aleg"
        targets = []
        if leg in ("aleg", "both", "holdb"):
            targets.append(ch)
        if leg in ("bleg", "both"):
            other = ch.bridge_partner
            if other is not None:
                targets.append(other)
        app, arg = "playback", path
        if "::" in path:
            app, _, arg = path.partition("::")
        for t in targets:
            hdrs = [("call-command", "execute"), ("execute-app-name", app), ("execute-app-arg", arg),
                    ("event-lock", "true"), ("lead-frames", "5")]
            command_event = self.sim.bus.core_headers("COMMAND", ("switch_ivr_async.c", "switch_ivr_broadcast", "5731"),
                                                      self.sim.bus.sequence + 1, None)
            t.queue_message(Message(command="execute", app=app, arg=arg, event_lock=True,
                                    headers=command_event + hdrs))
        return "+OK Message sent\n"  # captured

    def uuid_break(self, args: str) -> str:
        parts = args.split()
        ch = self._chan(parts[0]) if parts else None
        if ch is None:
            return NO_CHANNEL
        ch.break_playback(flush=len(parts) > 1 and parts[1] == "all")
        return "+OK\n"  # captured

    def uuid_record(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 3:
            return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        action, path = parts[1], parts[2]
        if action == "start":
            ch.start_record(path)
            return "+OK Success\n"
        if action == "stop":
            return "+OK Success\n" if ch.stop_record(path) else "-ERR Cannot stop record session!\n"
        return "+OK Success\n"

    def uuid_setvar(self, args: str) -> str:
        parts = args.split(" ", 2)
        if len(parts) < 2:
            return "-USAGE: <uuid> <var> [value]\n"
        ch = self._chan(parts[0])
        if ch is None:
            return NO_CHANNEL
        value = parts[2] if len(parts) > 2 else None
        ch.set_var(parts[1], None if value in (None, "", "undef") else value)
        return "+OK\n"

    def uuid_setvar_multi(self, args: str) -> str:
        uuid, _, rest = args.partition(" ")
        ch = self._chan(uuid)
        if ch is None:
            return NO_CHANNEL
        for pair in rest.split(";"):
            if "=" in pair:
                k, _, v = pair.partition("=")
                ch.set_var(k.strip(), v or None)
        return "+OK\n"

    def uuid_getvar(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <var>\n"
        ch = self._chan(parts[0])
        if ch is None:
            return NO_CHANNEL
        value = ch.get_var(parts[1])
        return "_undef_" if value is None else value

    def uuid_exists(self, args: str) -> str:
        return "true" if self._chan(args.strip()) is not None else "false"

    def uuid_dump(self, args: str) -> str:
        parts = args.split()
        ch = self._chan(parts[0]) if parts else None
        if ch is None:
            return NO_CHANNEL
        headers = ch.basic_headers() + [(f"variable_{k}", v) for k, v in ch.variables.items()]
        if len(parts) > 1 and parts[1] == "json":
            return json.dumps(dict(headers), ensure_ascii=False)
        return "".join(f"{k}: {v}\n" for k, v in headers)

    def uuid_send_dtmf(self, args: str) -> str:
        parts = args.split()
        ch = self._chan(parts[0]) if parts else None
        if ch is None or len(parts) < 2:
            return "-ERR Cannot locate session!\n"  # captured
        digits = parts[1]
        ch.received_dtmf += digits.split("@")[0]
        peer = ch.loopback_peer
        if peer is not None and peer.alive:
            from .calls import SimCall
            import threading
            threading.Thread(target=SimCall(self.sim, peer).send_dtmf, args=(digits.split("@")[0],),
                             daemon=True).start()
        return f"+OK {ch.uuid} sent DTMF {digits}.\n"  # captured

    # ---- mod_audio_fork ----
    def uuid_audio_fork(self, args: str) -> str:
        from .audio_fork import ForkSession
        argv = [a for a in args.split(" ") if a != ""]
        if len(argv) < 2 or (argv[1] == "start" and len(argv) < 4):
            return f"-USAGE: {FORK_SYNTAX}\n"
        ch = self._chan(argv[0])
        if ch is None:
            return "-ERR Operation Failed\n"
        sub = argv[1].lower()
        bugname = "audio_fork"
        ok = False
        if sub == "start":
            url, mix = argv[2], argv[3]
            if mix not in ("mono", "mixed", "stereo"):
                return "-ERR Operation Failed\n"
            rate_s = argv[4] if len(argv) > 4 else "8k"
            try:
                rate = 16000 if rate_s == "16k" else 8000 if rate_s == "8k" else int(rate_s)
            except ValueError:
                rate = 0
            bidir, bidir_rate = self.sim.bidirectional, self.sim.bidirectional_rate
            tokens = args.split(" ")
            tail_tokens = [t for t in tokens[5:]]
            flags = [t for t in tail_tokens if t.startswith("bi_audio_sample_rate=")]
            if flags:
                bidir_rate = int(flags[0].split("=", 1)[1] or 0)
                bidir = bidir_rate > 0
                tail_tokens = [t for t in tail_tokens if t not in flags]
            metadata: Optional[str] = None
            if tail_tokens:
                if tail_tokens[0][:1] in ("{", "["):
                    metadata = " ".join(tail_tokens)
                else:
                    bugname = tail_tokens[0] or bugname
                    rest = tail_tokens[1:]
                    if len(rest) >= 4 and all(t.isdigit() for t in rest[-3:]):
                        bidir = rest[-3] == "1" and rest[-2] == "1" and int(rest[-1]) > 0
                        bidir_rate = int(rest[-1])
                        rest = rest[:-3]
                    metadata = " ".join(rest) or None
            if not url.lower().startswith(("ws://", "wss://", "http://", "https://")) or not rate or rate % 8000:
                return "-ERR Operation Failed\n"
            if bugname in ch.forks or not ch.alive:
                return "-ERR Operation Failed\n"
            if not ch.answered and not ch.profile.progress_media:
                ch.pre_answer()
            fork = ForkSession(self.sim, ch, url, mix, rate, bugname, metadata, bidir, bidir_rate)
            ch.forks[bugname] = fork
            fork.start()
            ok = True
        else:
            name = None
            text = None
            if sub in ("stop", "send_text"):
                if len(argv) > 3:
                    name, text = argv[2], " ".join(argv[3:])
                elif len(argv) > 2:
                    if argv[2][:1] in "{[":
                        text = argv[2]
                    else:
                        name = argv[2]
            elif sub in ("pause", "resume", "graceful-shutdown", "stop_play") and len(argv) > 2:
                name = argv[2]
            fork = ch.forks.get(name or bugname) or (next(iter(ch.forks.values())) if ch.forks and name is None else None)
            if fork is not None:
                ok = True
                if sub == "stop":
                    fork.stop(text)
                elif sub == "send_text":
                    ok = bool(text) and fork.send_text(text or "")
                elif sub == "pause":
                    fork.paused = True
                elif sub == "resume":
                    fork.paused = False
                elif sub == "graceful-shutdown":
                    fork.paused = True
                elif sub == "stop_play":
                    fork.stop_play()
                else:
                    ok = False
        return "+OK Success\n" if ok else "-ERR Operation Failed\n"
