"""Channel variable sets copied from the FreeSWITCH 1.10.12 captures, with values substituted.

Each function returns the variables that real FreeSWITCH sets at one step of a channel's life
(creation, early media, answer, hangup, reporting), in the captured order, so that events carry
the same `variable_*` headers as the real ones (e.g. CHANNEL_CREATE of an inbound sofia call has
the 50 captured variables, CHANNEL_HANGUP_COMPLETE the timestamps, billing and RTP statistics).
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from typing import TYPE_CHECKING

from .channel import CAUSE_Q850

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .server import FsSim

Vars = list[tuple[str, str]]

PROFILE_PORTS = {"external": 5080, "internal": 5060}

# SIP responses FreeSWITCH maps to each hangup cause when a far end refuses (sofia_glue.c).
CAUSE_SIP = {
    "USER_BUSY": ("486", "Busy Here"),
    "CALL_REJECTED": ("603", "Decline"),
    "UNALLOCATED_NUMBER": ("404", "Not Found"),
    "NORMAL_TEMPORARY_FAILURE": ("503", "Service Unavailable"),
    "NO_USER_RESPONSE": ("480", "Temporarily Unavailable"),
    "INCOMPATIBLE_DESTINATION": ("488", "Not Acceptable Here"),
    "RECOVERY_ON_TIMER_EXPIRE": ("408", "Request Timeout"),
    "NO_ROUTE_DESTINATION": ("404", "Not Found"),
    "SUBSCRIBER_ABSENT": ("480", "Temporarily Unavailable"),
    "DESTINATION_OUT_OF_ORDER": ("502", "Bad Gateway"),
    "INVALID_NUMBER_FORMAT": ("484", "Address Incomplete"),
    "NORMAL_CIRCUIT_CONGESTION": ("503", "Service Unavailable"),
}


def _tag(n: int = 13) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(random.choice(alphabet) for _ in range(n))


def _stamp(sim: "FsSim", us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=sim.tzinfo()).strftime("%Y-%m-%d %H:%M:%S")


class Templates:
    """Produces the captured variable sets for a channel."""

    def __init__(self, sim: "FsSim") -> None:
        self.sim = sim

    def profile_url(self, profile: str) -> str:
        return f"sip:mod_sofia@{self.sim.sip_ip}:{PROFILE_PORTS.get(profile, 5080)}"

    # ---- creation ----
    def sofia_inbound_create(self, ch: "Channel", caller: str, caller_name: str, dest: str,
                             profile: str, remote_ip: str, gateway: str | None) -> Vars:
        port = "5061"
        local = f"{self.sim.sip_ip}:{PROFILE_PORTS.get(profile, 5080)}"
        from_tag = f"{random.randint(1000, 9999)}SIPpTag00{random.randint(1, 9)}"
        ch.sip_from_tag = from_tag
        ch.sip_call_id = f"{random.randint(1, 99)}-{random.randint(1000, 9999)}@{remote_ip}"
        v: Vars = [
            ("direction", "inbound"), ("uuid", ch.uuid), ("call_uuid", ch.uuid),
            ("session_id", ch.session_id), ("sip_from_user", caller), ("sip_from_port", port),
            ("sip_from_uri", f"{caller}@{remote_ip}:{port}"), ("sip_from_host", remote_ip),
            ("video_media_flow", "disabled"), ("audio_media_flow", "disabled"),
            ("text_media_flow", "disabled"), ("channel_name", ch.name),
            ("sip_call_id", ch.sip_call_id), ("sip_local_network_addr", self.sim.sip_ip),
            ("sip_network_ip", remote_ip), ("sip_network_port", port),
            ("sip_invite_stamp", str(ch.profile.created)), ("sip_received_ip", remote_ip),
            ("sip_received_port", port), ("sip_via_protocol", "udp"),
            ("sip_from_user_stripped", caller), ("sip_from_tag", from_tag),
            ("sofia_profile_name", profile), ("sofia_profile_url", self.profile_url(profile)),
            ("recovery_profile_name", profile),
            ("sip_full_via", f"SIP/2.0/UDP {remote_ip}:{port};branch=z9hG4bK-{random.randint(1000, 9999)}-1-0"),
            ("sip_from_display", caller_name),
            ("sip_full_from", f"{caller_name} <sip:{caller}@{remote_ip}:{port}>;tag={from_tag}"),
            ("sip_to_display", dest), ("sip_full_to", f"{dest} <sip:{dest}@{local}>"),
            ("sip_req_user", dest), ("sip_req_port", str(PROFILE_PORTS.get(profile, 5080))),
            ("sip_req_uri", f"{dest}@{local}"), ("sip_req_host", self.sim.sip_ip),
            ("sip_to_user", dest), ("sip_to_port", str(PROFILE_PORTS.get(profile, 5080))),
            ("sip_to_uri", f"{dest}@{local}"), ("sip_to_host", self.sim.sip_ip),
            ("sip_contact_user", caller), ("sip_contact_port", port),
            ("sip_contact_uri", f"{caller}@{remote_ip}:{port}"), ("sip_contact_host", remote_ip),
            ("rtp_use_codec_string", "OPUS,G722,PCMU,PCMA,H264,VP8"),
            ("sip_via_host", remote_ip), ("sip_via_port", port), ("max_forwards", "70"),
            ("switch_r_sdp", self.remote_sdp(remote_ip)),
            ("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b"),
            ("endpoint_disposition", "DELAYED NEGOTIATION"),
        ]
        if gateway:
            v[-3:-3] = [("sip_gateway_name", gateway), ("sip_gateway", gateway)]
        return v

    @staticmethod
    def remote_sdp(ip: str) -> str:
        return (f"v=0\r\no=user1 53655765 2353687637 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\n"
                f"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")

    def local_sdp_offer(self, ch: "Channel") -> str:
        ip, port = self.sim.sip_ip, ch.rtp_port
        sid = 1795500000 + random.randint(0, 99999)
        return (f"v=0\r\no=FreeSWITCH {sid} {sid + 1} IN IP4 {ip}\r\ns=FreeSWITCH\r\nc=IN IP4 {ip}\r\n"
                f"t=0 0\r\nm=audio {port} RTP/AVP 102 0 8 103 101\r\na=rtpmap:102 opus/48000/2\r\n"
                f"a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20; "
                f"minptime=10; maxptime=40\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                f"a=rtpmap:103 telephone-event/48000\r\na=fmtp:103 0-15\r\na=rtpmap:101 telephone-event/8000\r\n"
                f"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")

    def local_sdp_answer(self, ch: "Channel") -> str:
        ip, port = self.sim.sip_ip, ch.rtp_port
        sid = 1795500000 + random.randint(0, 99999)
        return (f"v=0\r\no=FreeSWITCH {sid} {sid + 1} IN IP4 {ip}\r\ns=FreeSWITCH\r\nc=IN IP4 {ip}\r\n"
                f"t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")

    def sofia_outbound_create(self, ch: "Channel", profile: str, uri: str, user_vars: Vars,
                              gateway: str | None) -> Vars:
        v: Vars = [
            ("direction", "outbound"), ("is_outbound", "true"), ("uuid", ch.uuid),
            ("call_uuid", ch.uuid), ("session_id", ch.session_id),
            ("sip_local_network_addr", self.sim.sip_ip), ("sip_profile_name", profile),
            ("video_media_flow", "disabled"), ("text_media_flow", "disabled"),
            ("channel_name", ch.name), ("sip_destination_url", f"sip:{uri}"),
        ]
        if gateway:
            v += [("sip_gateway_name", gateway), ("sip_gateway", gateway)]
        v += [(k, val) for k, val in user_vars if k != "origination_uuid"]
        host = uri.split("@", 1)[1] if "@" in uri else uri
        v += [
            ("originate_early_media", "true"), ("originate_endpoint", "sofia"),
            ("rtp_use_codec_string", "OPUS,G722,PCMU,PCMA,H264,VP8"),
            ("local_media_ip", self.sim.sip_ip), ("local_media_port", ch.rtp_port),
            ("advertised_media_ip", self.sim.sip_ip), ("audio_media_flow", "sendrecv"),
            ("rtp_local_sdp_str", self.local_sdp_offer(ch)),
            ("sip_outgoing_contact_uri", f"<sip:mod_sofia@{self.sim.sip_ip}:{PROFILE_PORTS.get(profile, 5080)}>"),
            ("sip_req_uri", uri), ("sip_to_host", host), ("sip_from_host", self.sim.sip_ip),
            ("sofia_profile_name", profile), ("recovery_profile_name", profile),
            ("sofia_profile_url", self.profile_url(profile)),
        ]
        return v

    def sofia_outbound_progress(self, ch: "Channel", uri: str) -> Vars:
        user, _, hostport = uri.partition("@")
        host, _, port = hostport.partition(":")
        port = port or "5060"
        caller = ch.profile.caller_id_number
        branch, ftag, ttag = _tag(), _tag(), f"{random.randint(1000, 9999)}SIPpTag011"
        ch.sip_call_id = f"{random.randint(0x10000000, 0xffffffff):08x}-62cc-1240-fdb6-5ec1c9037caf"
        return [
            ("sip_local_network_addr", self.sim.sip_ip),
            ("sip_reply_host", host), ("sip_reply_port", port), ("sip_network_ip", host),
            ("sip_network_port", port), ("sip_recover_contact", f"<sip:{hostport};transport=UDP>"),
            ("sip_full_via", f"SIP/2.0/UDP {self.sim.sip_ip}:5080;rport;branch=z9hG4bK{branch}"),
            ("sip_recover_via", f"SIP/2.0/UDP {self.sim.sip_ip}:5080;rport;branch=z9hG4bK{branch}"),
            ("sip_full_from", f"<sip:{caller}@{self.sim.sip_ip}>;tag={ftag}"),
            ("sip_full_to", f"<sip:{uri}>;tag={ttag}"), ("sip_from_user", caller),
            ("sip_from_uri", f"{caller}@{self.sim.sip_ip}"), ("sip_from_host", self.sim.sip_ip),
            ("sip_to_user", user),
            ("sip_to_port", port), ("sip_to_uri", uri), ("sip_to_host", host),
            ("sip_contact_params", "transport=UDP"), ("sip_contact_user", "nobody"),
            ("sip_contact_port", port), ("sip_contact_uri", f"nobody@{hostport}"),
            ("sip_contact_host", host), ("sip_to_tag", ttag), ("sip_from_tag", ftag),
            ("sip_cseq", str(random.randint(100000000, 199999999))), ("sip_call_id", ch.sip_call_id),
        ]

    def loopback_a_vars(self, ch: "Channel") -> Vars:
        return [("direction", "outbound"), ("is_outbound", "true"), ("session_id", ch.session_id),
                ("read_codec", "L16"), ("read_rate", "8000"), ("write_codec", "L16"),
                ("write_rate", "8000"), ("channel_name", ch.name), ("uuid", ch.uuid),
                ("call_uuid", ch.uuid)]

    def loopback_b_vars(self, ch: "Channel", a: "Channel", user_vars: Vars) -> Vars:
        v: Vars = [("direction", "inbound"), ("uuid", ch.uuid), ("call_uuid", ch.uuid),
                   ("session_id", ch.session_id), ("channel_name", ch.name), ("read_codec", "L16"),
                   ("read_rate", "8000"), ("write_codec", "L16"), ("write_rate", "8000")]
        v += [(k, val) for k, val in user_vars if k.startswith("origination_") or not k.startswith("originat")]
        v += [("other_loopback_leg_uuid", a.uuid), ("loopback_leg", "B")]
        return v

    # ---- media ----
    def media_vars(self, ch: "Channel") -> Vars:
        """Set by sofia when media is negotiated (captured at CHANNEL_PROGRESS_MEDIA / ANSWER)."""
        if ch.kind != "sofia":
            return []
        remote_ip = ch.get_var("sip_network_ip") or "127.0.0.1"
        v: Vars = []
        if ch.direction == "outbound":
            v += [("switch_r_sdp", self.remote_sdp(remote_ip)),
                  ("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b")]
        v += [("rtp_use_codec_string", "OPUS,G722,PCMU,PCMA,H264,VP8"),
              ("remote_video_media_flow", "inactive"), ("remote_text_media_flow", "inactive"),
              ("remote_audio_media_flow", "sendrecv")]
        if ch.direction == "inbound":  # outbound legs offered sendrecv already: not re-set
            v.append(("audio_media_flow", "sendrecv"))
        v += [("rtp_audio_recv_pt", "0"), ("rtp_use_codec_name", "PCMU"),
              ("rtp_use_codec_rate", "8000"), ("rtp_use_codec_ptime", "20"),
              ("rtp_use_codec_channels", "1"), ("rtp_last_audio_codec_string", "PCMU@8000h@20i@1c"),
              ("read_codec", "PCMU"), ("original_read_codec", "PCMU"), ("read_rate", "8000"),
              ("original_read_rate", "8000"), ("write_codec", "PCMU"), ("write_rate", "8000"),
              ("dtmf_type", "rfc2833")]
        v += [("local_media_ip", self.sim.sip_ip), ("local_media_port", ch.rtp_port),
              ("advertised_media_ip", self.sim.sip_ip)]
        v += [("rtp_use_timer_name", "soft"), ("rtp_use_pt", "0"),
              ("rtp_use_ssrc", str(random.randint(1_000_000_000, 4_294_967_295))),
              ("rtp_2833_send_payload", "101"), ("rtp_2833_recv_payload", "101"),
              ("remote_media_ip", remote_ip), ("remote_media_port", "6000")]
        return v

    def answer_vars(self, ch: "Channel") -> Vars:
        return [("rtp_local_sdp_str", self.local_sdp_answer(ch))]

    # ---- hangup ----
    def hangup_sip_vars(self, ch: "Channel", cause: str, remote: bool) -> None:
        """Variables sofia sets while the channel hangs up (captured at CHANNEL_HANGUP)."""
        if ch.kind != "sofia":
            return
        if ch.direction == "outbound" and not ch.answered and remote and cause in CAUSE_SIP:
            code, phrase = CAUSE_SIP[cause]
            ch.set_var("sip_call_id", ch.get_var("sip_call_id") or
                       f"{random.randint(0x10000000, 0xffffffff):08x}-62cc-1240-fdb6-5ec1c9037caf")
            ch.set_var("sip_local_network_addr", self.sim.sip_ip)
            if cause == "NORMAL_TEMPORARY_FAILURE":
                ch.set_vars([("sip_reply_port", "0"), ("sip_network_port", "0")])
            elif not ch.get_var("sip_reply_host"):
                host = (ch.get_var("sip_req_uri") or "").partition("@")[2]
                h, _, p = host.partition(":")
                ch.set_vars([("sip_reply_host", h), ("sip_reply_port", p or "5060"),
                             ("sip_network_ip", h), ("sip_network_port", p or "5060")])
            ch.set_vars([("sip_hangup_disposition", "recv_refuse"),
                         ("sip_invite_failure_status", code), ("sip_invite_failure_phrase", phrase),
                         ("sip_term_status", code), ("proto_specific_hangup_cause", f"sip:{code}"),
                         ("sip_term_cause", str(CAUSE_Q850.get(cause, 16)))])

    def hangup_complete_vars(self, ch: "Channel") -> None:
        """switch_channel_set_timestamps + sofia/RTP statistics, in the captured order."""
        sim = self.sim
        p = ch.profile
        cause = ch.hangup_cause or "NORMAL_CLEARING"
        ch.set_var("hangup_cause", cause)
        ch.set_var("hangup_cause_q850", str(CAUSE_Q850.get(cause, 16)))
        ch.set_var("digits_dialed", ch.dtmf_history or "none")
        end = p.hungup or int(time.time() * 1e6)
        created = p.created
        ch.set_var("start_stamp", _stamp(sim, created))
        ch.set_var("profile_start_stamp", _stamp(sim, p.profile_created))
        if p.answered:
            ch.set_var("answer_stamp", _stamp(sim, p.answered))
        if p.bridged:
            ch.set_var("bridge_stamp", _stamp(sim, p.bridged))
        if p.progress:
            ch.set_var("progress_stamp", _stamp(sim, p.progress))
        if p.progress_media:
            ch.set_var("progress_media_stamp", _stamp(sim, p.progress_media))
        ch.set_var("end_stamp", _stamp(sim, end))
        for name, us in (("start", created), ("profile_start", p.profile_created), ("answer", p.answered),
                         ("bridge", p.bridged), ("last_hold", p.last_hold)):
            ch.set_var(f"{name}_epoch", str(us // 1_000_000))
            ch.set_var(f"{name}_uepoch", str(us))
        ch.set_var("hold_accum_seconds", str(p.hold_accum // 1_000_000))
        ch.set_var("hold_accum_usec", str(p.hold_accum))
        ch.set_var("hold_accum_ms", str(p.hold_accum // 1000))
        for name, us in (("resurrect", p.resurrected), ("progress", p.progress),
                         ("progress_media", p.progress_media), ("end", end)):
            ch.set_var(f"{name}_epoch", str(us // 1_000_000))
            ch.set_var(f"{name}_uepoch", str(us))
        if ch.last_app:
            ch.set_var("last_app", ch.last_app)
            if ch.last_arg:
                ch.set_var("last_arg", ch.last_arg)
        name, num = p.caller_id_name, p.caller_id_number
        ch.set_var("caller_id", f'"{name}" <{num}>' if name else num)

        def secs(a: int, b: int) -> int:
            return (a // 1_000_000) - (b // 1_000_000)

        def msecs(a: int, b: int) -> int:
            return (a // 1000) - (b // 1000)

        def d(x: int, fn) -> int:  # elapsed from creation to event x, 0 if it never happened
            return fn(x, created) if x else 0

        ans, brd = p.answered, p.bridged
        values = {
            "duration": (secs(end, created), msecs(end, created), end - created),
            "billsec": (secs(end, ans), msecs(end, ans), end - ans) if ans else (0, 0, 0),
            "progress": (d(p.progress, secs), d(p.progress, msecs), p.progress - created if p.progress else 0),
            "answer": (d(ans, secs), d(ans, msecs), ans - created if ans else 0),
            "wait": (d(brd, secs), d(brd, msecs), brd - created if brd else 0),
            "progress_media": (d(p.progress_media, secs), d(p.progress_media, msecs),
                               p.progress_media - created if p.progress_media else 0),
            "flow_bill": (secs(end, created), msecs(end, created), end - created) if ans else (0, 0, 0),
        }
        ch.set_var("duration", str(values["duration"][0]))
        ch.set_var("billsec", str(values["billsec"][0]))
        ch.set_var("progresssec", str(values["progress"][0]))
        ch.set_var("answersec", str(values["answer"][0]))
        ch.set_var("waitsec", str(values["wait"][0]))
        ch.set_var("progress_mediasec", str(values["progress_media"][0]))
        ch.set_var("flow_billsec", str(values["flow_bill"][0]))
        ch.set_var("mduration", str(values["duration"][1]))
        ch.set_var("billmsec", str(values["billsec"][1]))
        ch.set_var("progressmsec", str(values["progress"][1]))
        ch.set_var("answermsec", str(values["answer"][1]))
        ch.set_var("waitmsec", str(values["wait"][1]))
        ch.set_var("progress_mediamsec", str(values["progress_media"][1]))
        ch.set_var("flow_billmsec", str(values["flow_bill"][1]))
        ch.set_var("uduration", str(values["duration"][2]))
        ch.set_var("billusec", str(values["billsec"][2]))
        ch.set_var("progressusec", str(values["progress"][2]))
        ch.set_var("answerusec", str(values["answer"][2]))
        ch.set_var("waitusec", str(values["wait"][2]))
        ch.set_var("progress_mediausec", str(values["progress_media"][2]))
        ch.set_var("flow_billusec", str(values["flow_bill"][2]))
        if ch.kind == "loopback":
            ch.set_var("is_loopback", "1")
            return
        if ch.kind != "sofia":
            return
        if ch.answered:
            ch.set_var("sip_hangup_disposition", "recv_bye" if ch.hangup_by_remote else "send_bye")
            self._rtp_stats(ch, end)
        elif ch.direction == "outbound" and ch.profile.progress and cause in ("NO_ANSWER", "ORIGINATOR_CANCEL", "NORMAL_CLEARING"):
            ch.set_vars([("sip_hangup_disposition", "send_cancel"), ("sip_invite_failure_status", "487"),
                         ("sip_invite_failure_phrase", "CANCEL")])
        elif ch.direction == "inbound" and not ch.get_var("sip_hangup_disposition"):
            ch.set_var("sip_hangup_disposition", "recv_cancel" if ch.hangup_by_remote else "send_refuse")

    @staticmethod
    def _rtp_stats(ch: "Channel", end: int) -> None:
        media_start = ch.profile.progress_media or ch.profile.answered
        packets = max(0, (end - media_start) // 20_000)
        played = sum(pb.heard_ms for pb in ch.heard) // 20
        ch.set_vars([
            ("rtp_audio_in_raw_bytes", str(packets * 172)), ("rtp_audio_in_media_bytes", str(packets * 160)),
            ("rtp_audio_in_packet_count", str(packets)), ("rtp_audio_in_media_packet_count", str(packets)),
            ("rtp_audio_in_skip_packet_count", "0"), ("rtp_audio_in_jitter_packet_count", "0"),
            ("rtp_audio_in_dtmf_packet_count", "0"), ("rtp_audio_in_cng_packet_count", "0"),
            ("rtp_audio_in_flush_packet_count", "0"), ("rtp_audio_in_largest_jb_size", "0"),
            ("rtp_audio_in_jitter_min_variance", "0.00"), ("rtp_audio_in_jitter_max_variance", "0.00"),
            ("rtp_audio_in_jitter_loss_rate", "0.00"), ("rtp_audio_in_jitter_burst_rate", "0.00"),
            ("rtp_audio_in_mean_interval", "0.00"), ("rtp_audio_in_flaw_total", "0"),
            ("rtp_audio_in_quality_percentage", "100.00"), ("rtp_audio_in_mos", "4.50"),
            ("rtp_audio_out_raw_bytes", str(played * 172)), ("rtp_audio_out_media_bytes", str(played * 172)),
            ("rtp_audio_out_packet_count", str(played)), ("rtp_audio_out_media_packet_count", str(played)),
            ("rtp_audio_out_skip_packet_count", "0"), ("rtp_audio_out_dtmf_packet_count", "0"),
            ("rtp_audio_out_cng_packet_count", "0"), ("rtp_audio_rtcp_packet_count", "0"),
            ("rtp_audio_rtcp_octet_count", "0"),
        ])
