"""Start the fake providers as a subprocess for tests: `with running_fake_providers() as fakes:`."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from adapters.base import Credentials
from fakes import client, state

PROJECT_DIR = Path(__file__).resolve().parents[1]
READY_FILE = "ready.json"
_numbers = itertools.count(int(time.time() * 1000) % 10**6)


@dataclass(frozen=True)
class FakeProviders:
    """Where the running fakes listen and the credentials they accept."""

    pid: int
    state_dir: Path
    apns_endpoint: str
    fcm_endpoint: str
    ca_file: str
    apns_key_file: str
    apns_key_id: str
    apns_team_id: str
    apns_topic: str
    apns_client_cert_file: str
    fcm_service_account_file: str
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 0  # STARTTLS
    smtps_port: int = 0  # implicit TLS
    smtp_admin_endpoint: str = ""

    def apns_credentials(self, *, key_id: str | None = None, sandbox: bool = False) -> Credentials:
        """Token-auth credentials; pass another `key_id` to get ones the fake rejects."""
        values = {
            "auth": "token",
            "team_id": self.apns_team_id,
            "key_id": key_id or self.apns_key_id,
            "private_key": Path(self.apns_key_file).read_text(),
            "topic": self.apns_topic,
            "sandbox": sandbox,
        }
        return Credentials(key=f"fake-apns-token-{values['key_id']}", values=values)

    def apns_certificate_credentials(self) -> Credentials:
        values = {
            "auth": "certificate",
            "certificate": Path(self.apns_client_cert_file).read_text(),
            "topic": self.apns_topic,
            "sandbox": False,
        }
        return Credentials(key="fake-apns-certificate", values=values)

    def fcm_credentials(self) -> Credentials:
        account = json.loads(Path(self.fcm_service_account_file).read_text())
        return Credentials(key="fake-fcm", values={"service_account": account})

    def apns_stats(self) -> dict[str, Any]:
        return client.fetch_stats(self.apns_endpoint, ca_file=self.ca_file)

    def fcm_stats(self) -> dict[str, Any]:
        return client.fetch_stats(self.fcm_endpoint)

    def reset(self) -> None:
        client.reset_stats(self.apns_endpoint, ca_file=self.ca_file)
        client.reset_stats(self.fcm_endpoint)
        if self.sms_endpoint:
            client.reset_stats(self.sms_endpoint)
        client.reset_stats(self.smtp_admin_endpoint)
        if self.webpush_endpoint:
            client.reset_stats(self.webpush_endpoint)
        if self.kakao_endpoint:
            client.reset_stats(self.kakao_endpoint)

    # The fake Twilio (fakes.twilio_server): its account, and what it received.
    sms_endpoint: str = ""
    sms_account_sid: str = ""
    sms_auth_token: str = ""  # signs the status callbacks (X-Twilio-Signature)
    sms_from: str = ""
    sms_messaging_service_sid: str = ""

    def sms_credentials(self, messaging_service: bool = False) -> Credentials:
        """Credentials the fake accepts: with a `from` number, or a Messaging Service."""
        values = {"account_sid": self.sms_account_sid, "auth_token": self.sms_auth_token}
        if messaging_service:
            values["messaging_service_sid"] = self.sms_messaging_service_sid
        else:
            values["from"] = self.sms_from
        return Credentials(
            key=f"fake-sms-{'service' if messaging_service else 'from'}", values=values
        )

    def sms_number(self, kind: str = "delivered") -> str:
        """A fresh number the fake answers as `kind` says: "delivered" (201, then a
        `delivered` report), "undelivered" (201, then `undelivered`), "invalid" (21211),
        "flaky" (503 twice, then 201)."""
        prefix = {
            "delivered": "+1415555",
            "undelivered": "+15005556",
            "invalid": "+15005551",
            "flaky": "+15005555",
        }[kind]
        return prefix + f"{next(_numbers) % 10 ** (12 - len(prefix)):0{12 - len(prefix)}d}"

    def sms_messages(self, to: str | None = None) -> list:
        """What the fake Twilio received for `to` (all numbers when None), oldest first."""
        return client.fetch_sms_messages(self.sms_endpoint, to)

    def sms_stats(self) -> dict[str, Any]:
        return client.fetch_stats(self.sms_endpoint)

    def email_credentials(self, security: str = "starttls", **values: Any) -> Credentials:
        """E-mail credentials for the fake relay: `security` "starttls" or "tls" (with its
        AUTH account) or "none" (no TLS, no AUTH); `values` override any field, e.g.
        `password="wrong"`."""
        username, password = state.load_smtp_account(state.ensure_state(self.state_dir))
        secure = security != "none"
        merged = {
            "host": self.smtp_host,
            "port": self.smtps_port if security == "tls" else self.smtp_port,
            "security": security,
            "username": username if secure else "",
            "password": password if secure else "",
            "from_address": "news@signal.test",
            "from_name": "Signal News",
            **values,
        }
        digest = hashlib.sha256(json.dumps(merged, sort_keys=True).encode()).hexdigest()[:16]
        return Credentials(key=f"fake-smtp-{digest}", values=merged)

    def smtp_messages(self, to: str | None = None) -> list[dict[str, Any]]:
        """The messages the fake relay accepted (for `to` only, when given), oldest first."""
        path = "/__messages" + (f"?{urlencode({'to': to})}" if to else "")
        return client.call(self.smtp_admin_endpoint, "GET", path)["messages"]

    def smtp_stats(self) -> dict[str, Any]:
        return client.fetch_stats(self.smtp_admin_endpoint)

    def smtp_fail_next_mail(self, how: str = "close", count: int = 1) -> None:
        """The fake relay answers the next `count` MAIL commands by closing the connection
        (`how="close"`, no reply) or with 421 and then the close (`how="421"`)."""
        client.call(self.smtp_admin_endpoint, "POST", f"/__fail_next_mail?how={how}&count={count}")

    def smtp_close_connections(self) -> int:
        """Make the fake relay close every open SMTP connection; how many it closed."""
        return client.call(self.smtp_admin_endpoint, "POST", "/__close_connections")["closed"]

    # -- Web Push (fakes.webpush_server) --

    webpush_endpoint: str = ""  # the fake push service's origin, http://127.0.0.1:PORT

    def webpush_subscribe(
        self, prefix: str = "", *, application_server_key: str | None = None
    ) -> dict[str, Any]:
        """A new browser subscription: `{"endpoint", "keys": {"p256dh", "auth"}}`. `prefix`
        picks the fake's answer (`gone`, `missing`, `flaky<N>`, `busy`, `err500`, `slow`);
        `application_server_key` binds it to that VAPID public key (others get 403)."""
        request: dict[str, Any] = {"prefix": prefix}
        if application_server_key:
            request["application_server_key"] = application_server_key
        return client.request_json(self.webpush_endpoint, "POST", "/__subscribe", request)

    def webpush_subscribe_many(self, count: int, prefix: str = "") -> list[dict[str, Any]]:
        """`count` new subscriptions (as `webpush_subscribe`), made in requests of 10,000."""
        made: list[dict[str, Any]] = []
        while len(made) < count:
            request = {"prefix": prefix, "count": min(count - len(made), 10_000)}
            answer = client.request_json(self.webpush_endpoint, "POST", "/__subscribe", request)
            made += answer["subscriptions"]
        return made

    def webpush_messages(self, endpoint: str) -> list[dict[str, Any]]:
        """What the fake stored for a subscription, oldest first: `{"id", "payload" (the
        decrypted JSON), "ttl", "urgency", "topic", "vapid_token", "received_at"}`."""
        path = f"/__messages?endpoint={quote(endpoint, safe='')}"
        return client.request_json(self.webpush_endpoint, "GET", path)

    def webpush_stats(self) -> dict[str, Any]:
        return client.fetch_stats(self.webpush_endpoint)

    def webpush_credentials(self, subject: str = "mailto:ops@example.com") -> Credentials:
        """Freshly generated VAPID credentials (any valid key pair is accepted)."""
        from adapters.webpush import generate_vapid_keys

        values = {**generate_vapid_keys(), "subject": subject}
        return Credentials(key=f"fake-webpush-{values['vapid_public_key'][:16]}", values=values)

    # -- KakaoTalk AlimTalk (fakes.kakao_server: NHN Cloud's Bizmessage dealer) --

    kakao_port: int = 0
    kakao_endpoint: str = ""  # KAKAO_ENDPOINT: http://127.0.0.1:PORT
    kakao_app_key: str = ""
    kakao_secret_key: str = ""
    kakao_sender_key: str = ""
    kakao_fallback_send_no: str = ""  # the SMS sender number registered at the fake dealer

    def kakao_credentials(self, fallback: bool = True, **values: Any) -> Credentials:
        """Credentials the fake dealer accepts: `{"app_key", "secret_key", "sender_key"}` and,
        with `fallback`, the registered `fallback_send_no`; `values` override any field (e.g.
        `secret_key="wrong"`)."""
        merged: dict[str, Any] = {
            "app_key": self.kakao_app_key,
            "secret_key": self.kakao_secret_key,
            "sender_key": self.kakao_sender_key,
        }
        if fallback:
            merged["fallback_send_no"] = self.kakao_fallback_send_no
        merged.update(values)
        digest = hashlib.sha256(json.dumps(merged, sort_keys=True).encode()).hexdigest()[:16]
        return Credentials(key=f"fake-kakao-{digest}", values=merged)

    def kakao_template(
        self,
        code: str,
        text: str,
        buttons: Sequence[Mapping[str, Any]] = (),
        status: str = "TSC03",
        *,
        name: str | None = None,
        sender_key: str | None = None,
    ) -> dict[str, Any]:
        """Register (or replace) a template of the credentials' sender key at the fake dealer;
        its answer is the template as the dealer's list shows it. `buttons` in the dealer's
        form (`{"type": "WL", "name", "linkMo", "linkPc"}`) or ours (`url_mobile`, `url_pc`,
        `scheme_ios`, `scheme_android`); `ordering` follows their order. `status` "TSC03" is
        approved; TSC01, TSC02 and TSC04 are not."""
        request = {
            "template_code": code,
            "text": text,
            "name": name or code,
            "status": status,
            "buttons": [_dealer_button(button) for button in buttons],
            "sender_key": sender_key or self.kakao_sender_key,
        }
        return client.request_json(self.kakao_endpoint, "POST", "/__templates", request)["template"]

    def kakao_number(self, kind: str = "delivered") -> str:
        """A fresh E.164 Korean mobile number (`+8210...`) the fake dealer treats as `kind`:
        "delivered", "not_kakao_user" (Kakao result 3019; resent as SMS when asked),
        "blocked" (3020; resent likewise), "slow" (the send request answers late) or "fail"
        (the whole send request answers 500 -9999)."""
        ranges = {"not_kakao_user": "1", "blocked": "2", "slow": "3", "fail": "4"}
        if kind != "delivered" and kind not in ranges:
            raise ValueError(f"unknown kind {kind!r}")
        serial = next(_numbers) % 10**4
        if kind == "delivered":
            return f"+8210{5000 + serial % 5000:04d}{secrets.randbelow(10**4):04d}"
        return f"+82100{ranges[kind]:0>3}{serial:04d}"

    def kakao_mark(self, number: str, kind: str) -> None:
        """Make the fake dealer treat `number` as `kind` (see `kakao_number`)."""
        client.request_json(
            self.kakao_endpoint, "POST", "/__numbers", {"recipient_no": number, "kind": kind}
        )

    def kakao_messages(
        self, recipient_no: str | None = None, *, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The recipients the fake dealer accepted (for one number, +82 or national form, or
        one request, when given), oldest first: `requestId`, `recipientSeq`, `recipientNo`,
        `senderKey`, `templateCode`, `content` (the template's text with the parameters
        filled), `templateParameter`, `buttons`, `resendParameter`, `idempotencyKey`, `kind`
        and the current `messageStatus`, `resultCode`, `resendStatus`."""
        query = {}
        if recipient_no:
            query["recipientNo"] = recipient_no
        if request_id:
            query["requestId"] = request_id
        path = "/__messages" + (f"?{urlencode(query)}" if query else "")
        return client.request_json(self.kakao_endpoint, "GET", path)["messages"]

    def kakao_stats(self) -> dict[str, Any]:
        return client.fetch_stats(self.kakao_endpoint)

    def kakao_configure(self, **settings: float) -> dict[str, float]:
        """Set the fake dealer's timings (seconds): `slow_seconds`, `final_after`,
        `resend_after`, `idempotency_seconds`; answers all of them."""
        return client.request_json(self.kakao_endpoint, "POST", "/__config", settings)


def _dealer_button(button: Mapping[str, Any]) -> dict[str, Any]:
    """A button in the dealer's field names (ours are accepted too)."""
    names = {
        "url_mobile": "linkMo",
        "url_pc": "linkPc",
        "scheme_ios": "schemeIos",
        "scheme_android": "schemeAndroid",
    }
    return {names.get(key, key): value for key, value in button.items()}


def _answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_fake_providers(
    *,
    state_dir: Path | str | None = None,
    startup_timeout: float = 30.0,
    host: str = "127.0.0.1",
    track_tokens: bool = False,
) -> Iterator[FakeProviders]:
    """Spawn `python -m fakes` on free ports of `host`; terminate it by PID on exit.
    `track_tokens`: APNs and FCM count each token they accepted (see `python -m fakes`)."""
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="fake-providers-"))
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / READY_FILE).unlink(missing_ok=True)
        log = stack.enter_context(open(state_dir / "fake_providers.log", "wb"))  # noqa: SIM115
        command = [
            sys.executable,
            "-m",
            "fakes",
            "--apns-port=0",
            "--fcm-port=0",
            "--sms-port=0",
            "--smtp-port=0",
            "--smtps-port=0",
            "--smtp-admin-port=0",
            "--webpush-port=0",
            "--kakao-port=0",
            f"--state-dir={state_dir}",
            f"--host={host}",
            *(["--track-tokens"] if track_tokens else []),
        ]
        process = subprocess.Popen(command, cwd=PROJECT_DIR, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready = _wait_until_ready(process, state_dir, startup_timeout, host)
            info = state.ensure_state(state_dir)
            yield FakeProviders(
                pid=process.pid,
                state_dir=state_dir,
                apns_endpoint=f"https://{host}:{ready['apns_port']}",
                fcm_endpoint=f"http://{host}:{ready['fcm_port']}",
                ca_file=str(state_dir / state.CA_FILE),
                apns_key_file=str(state_dir / state.APNS_KEY_FILE),
                apns_key_id=info.key_id,
                apns_team_id=info.team_id,
                apns_topic=info.topic,
                apns_client_cert_file=str(state_dir / state.APNS_CLIENT_CERT_FILE),
                fcm_service_account_file=str(state_dir / state.FCM_SERVICE_ACCOUNT_FILE),
                **_sms_fields(state_dir, ready, host),
                smtp_host=host,
                smtp_port=ready["smtp_port"],
                smtps_port=ready["smtps_port"],
                smtp_admin_endpoint=f"http://{host}:{ready['smtp_admin_port']}",
                webpush_endpoint=f"http://{host}:{ready['webpush_port']}",
                **_kakao_fields(state_dir, ready, host),
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _sms_fields(state_dir: Path, ready: dict, host: str = "127.0.0.1") -> dict[str, str]:
    account = state.ensure_twilio_account(state.ensure_state(state_dir))
    return {
        "sms_endpoint": f"http://{host}:{ready['sms_port']}",
        "sms_account_sid": account.account_sid,
        "sms_auth_token": account.auth_token,
        "sms_from": account.from_number,
        "sms_messaging_service_sid": account.messaging_service_sid,
    }


def _kakao_fields(state_dir: Path, ready: dict, host: str = "127.0.0.1") -> dict[str, Any]:
    account = state.ensure_kakao_account(state.ensure_state(state_dir))
    return {
        "kakao_port": ready["kakao_port"],
        "kakao_endpoint": f"http://{host}:{ready['kakao_port']}",
        "kakao_app_key": account.app_key,
        "kakao_secret_key": account.secret_key,
        "kakao_sender_key": account.sender_key,
        "kakao_fallback_send_no": account.fallback_send_no,
    }


def _wait_until_ready(
    process: subprocess.Popen, state_dir: Path, timeout: float, host: str = "127.0.0.1"
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (state_dir / "fake_providers.log").read_text(errors="replace")
            raise RuntimeError(f"python -m fakes exited with {process.returncode}:\n{log}")
        ready_path = state_dir / READY_FILE
        if ready_path.exists():
            ready = json.loads(ready_path.read_text())
            ports = (
                "apns_port", "fcm_port", "sms_port", "smtp_port", "smtps_port", "smtp_admin_port",
                "webpush_port", "kakao_port",
            )  # fmt: skip
            if all(_answers(ready[port], host) for port in ports):
                return ready
        time.sleep(0.05)
    raise TimeoutError(f"the fake providers did not start within {timeout} s")
