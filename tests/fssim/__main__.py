"""CLI: run the simulator standalone, e.g. `python -m tests.fssim --port 8021 --dialplan-dir DIR`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from .server import FsSim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fssim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8021)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--dialplan-dir")
    parser.add_argument("--gateway-dir")
    parser.add_argument("--sounds-dir")
    parser.add_argument("--temp-dir")
    parser.add_argument("--tz", help="timezone name for time conditions and event dates")
    parser.add_argument("--bidirectional", action="store_true", help="accept streamed audio on the fork socket")
    parser.add_argument("--heartbeat", type=float, default=20.0, help="HEARTBEAT interval in seconds")
    parser.add_argument("--call", action="append", default=[], metavar="CALLER:DEST[:WAV]",
                        help="place an inbound call right after start (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sim = FsSim(host=args.host, port=args.port, password=args.password, dialplan_dir=args.dialplan_dir,
                gateway_dir=args.gateway_dir, sounds_dir=args.sounds_dir, temp_dir=args.temp_dir,
                tz=args.tz, bidirectional=args.bidirectional, heartbeat_interval=args.heartbeat).start()
    logging.info("fssim listening on %s:%s (password %s)", args.host, sim.port, args.password)
    for spec in args.call:
        parts = spec.split(":")
        call = sim.inbound_call(caller=parts[0], destination=parts[1], audio=parts[2] if len(parts) > 2 else None)
        logging.info("inbound call %s", call.uuid)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
