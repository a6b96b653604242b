"""Run the fake providers (APNs, FCM, Twilio, an SMTP relay, Web Push, the KakaoTalk dealer) in
the foreground until SIGTERM or SIGINT:

    python -m fakes [--apns-port 8443] [--fcm-port 8089] [--sms-port 8090] [--webpush-port 8091]
                    [--kakao-port 8092]
                    [--smtp-port 2525] [--smtps-port 2465] [--smtp-admin-port 8025]
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
from fakes.kakao_server import FakeKakao, serve_kakao
from fakes.smtp_server import FakeSMTP, serve_smtp
from fakes.state import ensure_state, set_token_uri, write_demo_credentials
from fakes.twilio_server import FakeTwilio, serve_twilio
from fakes.webpush_server import FakeWebPush, serve_webpush

READY_FILE = "ready.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fakes",
        description="Run the fake APNs (HTTP/2 + TLS), FCM (HTTP) and Web Push (HTTP/1.1) "
        "servers on 127.0.0.1 (or --host).",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address every fake listens on (127.0.0.1); the TLS certificate of a new "
        "state directory names it too",
    )
    parser.add_argument(
        "--track-tokens",
        action="store_true",
        help="APNs and FCM count every token they accepted and the client address that sent "
        "it (in /__stats: tokens, peers), for tests that look for duplicates",
    )
    parser.add_argument("--apns-port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--fcm-port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument(
        "--sms-port", type=int, default=8090, help="the fake Twilio; 0 picks a free port"
    )
    parser.add_argument(
        "--webpush-port", type=int, default=8091, help="the fake push service; 0 picks a free port"
    )
    parser.add_argument(
        "--kakao-port",
        type=int,
        default=8092,
        help="the fake KakaoTalk Bizmessage dealer (NHN Cloud AlimTalk); 0 picks a free port",
    )
    parser.add_argument("--state-dir", default="var/fake", help="keys, certificates, CA")
    parser.add_argument("--smtp-port", type=int, default=2525, help="SMTP with STARTTLS")
    parser.add_argument("--smtps-port", type=int, default=2465, help="SMTP over implicit TLS")
    parser.add_argument("--smtp-admin-port", type=int, default=8025, help="the relay's HTTP admin")
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
        runner.run(
            serve(
                Path(args.state_dir),
                args.apns_port,
                args.fcm_port,
                sms_port=args.sms_port,
                webpush_port=args.webpush_port,
                kakao_port=args.kakao_port,
                smtp_ports=(args.smtp_port, args.smtps_port, args.smtp_admin_port),
                host=args.host,
                track_tokens=args.track_tokens,
            )
        )
    return 0


async def serve(
    state_dir: Path,
    apns_port: int,
    fcm_port: int,
    *,
    sms_port: int = 0,
    webpush_port: int = 0,
    kakao_port: int = 0,
    smtp_ports: tuple[int, int, int] = (0, 0, 0),
    host: str = "127.0.0.1",
    track_tokens: bool = False,
) -> None:
    state = ensure_state(state_dir, host=host)
    (state_dir / READY_FILE).unlink(missing_ok=True)
    fake_fcm = FakeFCM(state)
    fcm = await serve_fcm(fake_fcm, host, fcm_port)
    fcm_port = fcm.sockets[0].getsockname()[1]
    set_token_uri(state, fcm_port, host)
    fake_apns = FakeAPNs(state)
    fake_fcm.stats.tracking = fake_apns.stats.tracking = track_tokens
    apns = await serve_apns(fake_apns, host, apns_port)
    apns_port = apns.sockets[0].getsockname()[1]
    twilio = FakeTwilio(state)
    sms = await serve_twilio(twilio, host, sms_port)
    sms_port = sms.sockets[0].getsockname()[1]
    smtp_servers = await serve_smtp(FakeSMTP(state), host, *smtp_ports)
    smtp_port, smtps_port, smtp_admin_port = (s.sockets[0].getsockname()[1] for s in smtp_servers)
    webpush = await serve_webpush(FakeWebPush(), host, webpush_port)
    webpush_port = webpush.sockets[0].getsockname()[1]
    kakao = await serve_kakao(FakeKakao(state), host, kakao_port)
    kakao_port = kakao.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready = {
        "apns_port": apns_port,
        "fcm_port": fcm_port,
        "sms_port": sms_port,
        "smtp_port": smtp_port,
        "smtps_port": smtps_port,
        "smtp_admin_port": smtp_admin_port,
        "webpush_port": webpush_port,
        "kakao_port": kakao_port,
        "pid": os.getpid(),
        "host": host,
    }
    write_demo_credentials(state, ready)
    # Written last and atomically: its presence means both servers accept connections.
    tmp = state_dir / (READY_FILE + ".tmp")
    tmp.write_text(json.dumps(ready))
    tmp.replace(state_dir / READY_FILE)
    print(
        f"fake APNs https://{host}:{apns_port} (CA {state.path('ca.pem')}), "
        f"fake FCM http://{host}:{fcm_port}, "
        f"fake Twilio http://{host}:{sms_port}, "
        f"fake Web Push http://{host}:{webpush_port}, "
        f"fake KakaoTalk dealer http://{host}:{kakao_port}, "
        f"fake SMTP {host}:{smtp_port} (STARTTLS) and :{smtps_port} (TLS), "
        f"admin http://{host}:{smtp_admin_port}, state in {state_dir}",
        flush=True,
    )
    await stop.wait()
    fcm.close()
    apns.close()
    sms.close()
    await twilio.aclose()
    for server in smtp_servers:
        server.close()
    webpush.close()
    kakao.close()
    (state_dir / READY_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
