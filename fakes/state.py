"""The fake providers' key material: a CA, a TLS server cert, an APNs key, an FCM service account.

Generated once into a state directory and reused, so the credentials a developer configured
keep working across restarts. The fakes trust only the keys found here.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

APNS_TOPIC = "com.example.signal"
FCM_PROJECT_ID = "signal-fake"

CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"  # certificate chain then key, for the APNs fake's TLS
APNS_KEY_FILE = "apns_key.p8"
APNS_INFO_FILE = "apns.json"
APNS_CLIENT_CERT_FILE = "apns_client.pem"  # certificate + key, for certificate-based auth
FCM_SERVICE_ACCOUNT_FILE = "fcm_service_account.json"
SMTP_ACCOUNT_FILE = "smtp.json"  # {"username", "password"} the fake SMTP relay accepts


@dataclass(frozen=True)
class FakeState:
    """Paths and identifiers of a state directory."""

    directory: Path
    key_id: str
    team_id: str
    topic: str
    project_id: str
    client_email: str

    def path(self, name: str) -> Path:
        return self.directory / name


def _write(path: Path, data: bytes) -> None:
    # Private keys live here: owner-only from the moment the file exists.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(subject: str, public_key, issuer_key, issuer_name, *, ca: bool, sans=()):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _generate(directory: Path, host: str = "127.0.0.1") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("Automata-Signal fake CA", ca_key.public_key(), ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    addresses = dict.fromkeys(["127.0.0.1", host])
    server_cert = _certificate(
        host,
        server_key.public_key(),
        ca_key,
        ca_cert.subject,
        ca=False,
        sans=[
            x509.DNSName("localhost"),
            *(x509.IPAddress(ipaddress.ip_address(address)) for address in addresses),
        ],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _certificate(
        APNS_TOPIC, client_key.public_key(), ca_key, ca_cert.subject, ca=False
    )
    pem = serialization.Encoding.PEM
    _write(directory / CA_FILE, ca_cert.public_bytes(pem))
    _write(directory / SERVER_CERT_FILE, server_cert.public_bytes(pem) + _pem_key(server_key))
    _write(directory / APNS_CLIENT_CERT_FILE, client_cert.public_bytes(pem) + _pem_key(client_key))

    apns_key = ec.generate_private_key(ec.SECP256R1())
    _write(directory / APNS_KEY_FILE, _pem_key(apns_key))
    apns_info = {
        "key_id": secrets.token_hex(5).upper(),
        "team_id": secrets.token_hex(5).upper(),
        "topic": APNS_TOPIC,
    }
    _write(directory / APNS_INFO_FILE, json.dumps(apns_info, indent=2).encode())

    # token_uri is filled in by set_token_uri() once the FCM port is known.
    fcm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    service_account = {
        "type": "service_account",
        "project_id": FCM_PROJECT_ID,
        "private_key_id": secrets.token_hex(20),
        "private_key": _pem_key(fcm_key).decode(),
        "client_email": f"signal@{FCM_PROJECT_ID}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": "",
    }
    _write(directory / FCM_SERVICE_ACCOUNT_FILE, json.dumps(service_account, indent=2).encode())


def ensure_state(directory: Path | str, host: str | None = None) -> FakeState:
    """Load the state directory, generating its keys and certificates first if missing (the
    TLS certificate for 127.0.0.1 and `host`). A directory whose certificate does not name
    `host` is refused: its CA key is not kept, so it cannot be re-issued (use a new one)."""
    directory = Path(directory)
    if not (directory / APNS_INFO_FILE).exists():
        _generate(directory, host or "127.0.0.1")
    elif host and not _certificate_names(directory, host):
        raise ValueError(f"the fakes' certificate in {directory} does not name {host}")
    account = json.loads((directory / FCM_SERVICE_ACCOUNT_FILE).read_text())
    apns_info = json.loads((directory / APNS_INFO_FILE).read_text())
    return FakeState(
        directory=directory,
        key_id=apns_info["key_id"],
        team_id=apns_info["team_id"],
        topic=apns_info["topic"],
        project_id=account["project_id"],
        client_email=account["client_email"],
    )


def _certificate_names(directory: Path, host: str) -> bool:
    chain = (directory / SERVER_CERT_FILE).read_bytes()
    certificate = x509.load_pem_x509_certificate(chain)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    try:
        return ipaddress.ip_address(host) in names.get_values_for_type(x509.IPAddress)
    except ValueError:  # a name, not an address
        return host in names.get_values_for_type(x509.DNSName)


def set_token_uri(state: FakeState, fcm_port: int, host: str = "127.0.0.1") -> None:
    """Point the service account's token_uri at the fake FCM, once its port is known."""
    path = state.path(FCM_SERVICE_ACCOUNT_FILE)
    account = json.loads(path.read_text())
    token_uri = f"http://{host}:{fcm_port}/token"
    if account.get("token_uri") != token_uri:
        account["token_uri"] = token_uri
        _write(path, json.dumps(account, indent=2).encode())


def load_smtp_account(state: FakeState) -> tuple[str, str]:
    """The username and password of the fake SMTP relay's AUTH, generated on first use (also
    in a state directory made before the relay existed)."""
    path = state.path(SMTP_ACCOUNT_FILE)
    if not path.exists():
        account = {"username": "signal-relay", "password": secrets.token_urlsafe(18)}
        tmp = state.path(SMTP_ACCOUNT_FILE + ".tmp")
        _write(tmp, json.dumps(account, indent=2).encode())
        tmp.replace(path)
    account = json.loads(path.read_text())
    return account["username"], account["password"]


def load_apns_public_key(state: FakeState):
    key = serialization.load_pem_private_key(state.path(APNS_KEY_FILE).read_bytes(), None)
    return key.public_key()


def load_fcm_public_key(state: FakeState):
    account = json.loads(state.path(FCM_SERVICE_ACCOUNT_FILE).read_text())
    key = serialization.load_pem_private_key(account["private_key"].encode(), None)
    return key.public_key()


TWILIO_INFO_FILE = "twilio.json"
TWILIO_FROM = "+15005550006"  # Twilio's own test number that is always a valid sender


@dataclass(frozen=True)
class TwilioAccount:
    """The one Twilio account the fake SMS provider knows."""

    account_sid: str
    auth_token: str
    from_number: str
    messaging_service_sid: str


def ensure_twilio_account(state: FakeState) -> TwilioAccount:
    """The fake Twilio account of a state directory, generated on first use (state directories
    made before the SMS fake existed get one too)."""
    path = state.path(TWILIO_INFO_FILE)
    if not path.exists():
        info = {
            "account_sid": "AC" + secrets.token_hex(16),
            "auth_token": secrets.token_hex(16),
            "from": TWILIO_FROM,
            "messaging_service_sid": "MG" + secrets.token_hex(16),
        }
        tmp = path.with_suffix(".tmp")
        _write(tmp, json.dumps(info, indent=2).encode())
        tmp.replace(path)
    info = json.loads(path.read_text())
    return TwilioAccount(
        account_sid=info["account_sid"],
        auth_token=info["auth_token"],
        from_number=info["from"],
        messaging_service_sid=info["messaging_service_sid"],
    )


KAKAO_INFO_FILE = "kakao.json"
KAKAO_TEMPLATES_FILE = "kakao_templates.json"  # the fake dealer's templates, kept across restarts
KAKAO_FALLBACK_SEND_NO = "0212345678"  # the SMS sender number registered with the fake dealer


@dataclass(frozen=True)
class KakaoAccount:
    """The one NHN Cloud KakaoTalk Bizmessage project the fake dealer knows."""

    app_key: str
    secret_key: str
    sender_key: str
    plus_friend_id: str
    fallback_send_no: str


def ensure_kakao_account(state: FakeState) -> KakaoAccount:
    """The fake dealer's app key, secret key and sender key (40 hex digits, as Kakao's), generated
    on first use (state directories made before the Kakao fake existed get one too)."""
    path = state.path(KAKAO_INFO_FILE)
    if not path.exists():
        info = {
            "app_key": secrets.token_urlsafe(12).replace("-", "x").replace("_", "y"),
            "secret_key": secrets.token_hex(4),
            "sender_key": secrets.token_hex(20),
            "plus_friend_id": "@signal-fake",
            "fallback_send_no": KAKAO_FALLBACK_SEND_NO,
        }
        tmp = path.with_suffix(".tmp")
        _write(tmp, json.dumps(info, indent=2).encode())
        tmp.replace(path)
    info = json.loads(path.read_text())
    return KakaoAccount(
        app_key=info["app_key"],
        secret_key=info["secret_key"],
        sender_key=info["sender_key"],
        plus_friend_id=info["plus_friend_id"],
        fallback_send_no=info["fallback_send_no"],
    )


DEMO_CREDENTIALS_FILE = "demo_credentials.json"


def write_demo_credentials(state: FakeState, ports: Mapping[str, int | str]) -> None:
    """Each channel's credentials for an application sending to the running fakes, by
    subscription type: what `manage.py bootstrap_demo` stores for `make run`'s demo. Written
    once the ports are known (and the FCM token URI set)."""
    apns = json.loads(state.path(APNS_INFO_FILE).read_text())
    username, password = load_smtp_account(state)
    twilio = ensure_twilio_account(state)
    kakao = ensure_kakao_account(state)
    credentials = {
        "iOSPush": {
            "auth": "token",
            "key_id": apns["key_id"],
            "team_id": apns["team_id"],
            "topic": apns["topic"],
            "private_key": state.path(APNS_KEY_FILE).read_text(),
            "sandbox": False,
        },
        "AndroidPush": {
            "service_account": json.loads(state.path(FCM_SERVICE_ACCOUNT_FILE).read_text())
        },
        "Email": {
            "host": str(ports.get("host", "127.0.0.1")),
            "port": ports["smtp_port"],
            "security": "starttls",
            "username": username,
            "password": password,
            "from_address": "demo@signal.test",
            "from_name": "Signal demo",
        },
        "SMS": {
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "from": twilio.from_number,
        },
        "WebPush": {"subject": "mailto:demo@signal.test"},  # keys generated
        "KakaoTalk": {
            "app_key": kakao.app_key,
            "secret_key": kakao.secret_key,
            "sender_key": kakao.sender_key,
            "fallback_send_no": kakao.fallback_send_no,
        },
    }
    path = state.path(DEMO_CREDENTIALS_FILE)
    tmp = path.with_suffix(".tmp")
    _write(tmp, json.dumps(credentials, indent=2).encode())
    tmp.replace(path)
