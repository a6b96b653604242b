"""Run the fake APNs and FCM servers in the foreground until SIGTERM or SIGINT:

    python -m fakes [--apns-port 8443] [--fcm-port 8089] [--webpush-port 8090]
                    [--state-dir var/fake] [--tick-ms 2]

Needs neither Django nor a database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from fakes import loop as fake_loop
from fakes.apns_server import FakeAPNs, serve_apns
from fakes.fcm_server import FakeFCM, serve_fcm
from fakes.state import ensure_state, set_token_uri
from fakes.webpush_server import FakeWebPush, serve_webpush

READY_FILE = "ready.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fakes",
        description="Run the fake APNs (HTTP/2 + TLS), FCM (HTTP) and Web Push (HTTP/1.1) "
        "servers on 127.0.0.1.",
    )
    parser.add_argument("--apns-port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--fcm-port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--webpush-port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--state-dir", default="var/fake", help="keys, certificates, CA")
    parser.add_argument(
        "--tick-ms",
        type=float,
        default=fake_loop.MIN_INTERVAL * 1000,
        help="while busy, wake at most this often (ms): several requests per wake-up cost "
        "far less CPU than one each; 0 wakes for every event",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Both fakes share one event loop in one thread, so one wake-up serves both.
    with asyncio.Runner(
        loop_factory=lambda: fake_loop.new_event_loop(args.tick_ms / 1000)
    ) as runner:
        runner.run(serve(Path(args.state_dir), args.apns_port, args.fcm_port, args.webpush_port))
    return 0


async def serve(state_dir: Path, apns_port: int, fcm_port: int, webpush_port: int = 0) -> None:
    state = ensure_state(state_dir)
    (state_dir / READY_FILE).unlink(missing_ok=True)
    fcm = await serve_fcm(FakeFCM(state), "127.0.0.1", fcm_port)
    fcm_port = fcm.sockets[0].getsockname()[1]
    set_token_uri(state, fcm_port)
    apns = await serve_apns(FakeAPNs(state), "127.0.0.1", apns_port)
    apns_port = apns.sockets[0].getsockname()[1]
    webpush = await serve_webpush(FakeWebPush(), "127.0.0.1", webpush_port)
    webpush_port = webpush.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready = {
        "apns_port": apns_port,
        "fcm_port": fcm_port,
        "webpush_port": webpush_port,
        "pid": os.getpid(),
    }
    # Written last and atomically: its presence means both servers accept connections.
    tmp = state_dir / (READY_FILE + ".tmp")
    tmp.write_text(json.dumps(ready))
    tmp.replace(state_dir / READY_FILE)
    print(
        f"fake APNs https://127.0.0.1:{apns_port} (CA {state.path('ca.pem')}), "
        f"fake FCM http://127.0.0.1:{fcm_port}, "
        f"fake Web Push http://127.0.0.1:{webpush_port}, state in {state_dir}",
        flush=True,
    )
    await stop.wait()
    fcm.close()
    apns.close()
    webpush.close()
    (state_dir / READY_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
