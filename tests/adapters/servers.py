"""Servers for the protocol and proxy tests that are not our fakes: an FCM-like endpoint served
by aiohttp.web (HTTP/1.1 only) or by Hypercorn (HTTP/2 over TLS or h2c), a small CONNECT (and
forward) proxy, and the TLS certificates and service account they use, made here."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import itertools
import json
import secrets
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from adapters.base import Credentials

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


# -- certificates and credentials --


@dataclass(frozen=True)
class TLSFiles:
    ca_file: str
    cert_file: str
    key_file: str

    def server_context(self, alpn: list[str]) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(alpn)
        return context


def make_tls(directory: Path) -> TLSFiles:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "protocol-tests CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = TLSFiles(
        str(directory / "ca.pem"), str(directory / "server.pem"), str(directory / "server.key")
    )
    Path(paths.ca_file).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(paths.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(paths.key_file).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


_RSA_KEY = None


def service_account(token_uri: str, project_id: str = "proto-test") -> dict:
    """A service account whose `token_uri` is given (the key is made once per test run)."""
    global _RSA_KEY
    if _RSA_KEY is None:
        _RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": f"sender@{project_id}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


# -- an FCM-like endpoint --


@dataclass
class FCMLike:
    """What an FCM-like server answers and what it saw. `/token` checks the service
    account's signed assertion; `messages:send` wants a token it issued (401
    UNAUTHENTICATED), then answers by the registration token's prefix: `dead` 404
    UNREGISTERED, `busy` 503 UNAVAILABLE with Retry-After: 7, else 200."""

    project_id: str = "proto-test"
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    sends: list[tuple[str, str, int]] = field(default_factory=list)  # protocol, token, status
    peers: set = field(default_factory=set)  # connections that carried a send
    _names: Iterator[int] = field(default_factory=itertools.count)

    def by_status(self) -> Counter:
        return Counter(status for _, _, status in self.sends)

    def protocols(self) -> set[str]:
        return {protocol for protocol, _, _ in self.sends}

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes, protocol: str, peer
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if method == "POST" and path == "/token":
            return self._token(body)
        if method == "POST" and path == f"/v1/projects/{self.project_id}/messages:send":
            self.peers.add(peer)
            return self._send(headers, body, protocol)
        return 404, [], b'{"error": {"code": 404, "status": "NOT_FOUND"}}'

    def _token(self, body: bytes):
        self.token_requests += 1
        form = parse_qs(body.decode("latin-1"))
        if form.get("grant_type") != [JWT_BEARER]:
            return 400, [], b'{"error": "unsupported_grant_type"}'
        public_key = _RSA_KEY.public_key()
        try:
            jwt.decode(
                form["assertion"][0],
                public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["iss", "iat", "exp"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            return 400, [], json.dumps({"error": "invalid_grant", "detail": str(exc)}).encode()
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        answer = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        return 200, [("content-type", "application/json")], json.dumps(answer).encode()

    def _send(self, headers: dict[str, str], body: bytes, protocol: str):
        message = json.loads(body)["message"]
        registration = message["token"]
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            self.sends.append((protocol, registration, 401))
            return _google_error(401, "UNAUTHENTICATED", None, "Request had invalid credentials.")
        if registration.startswith("dead"):
            status, answer = 404, _google_error(404, "NOT_FOUND", "UNREGISTERED", "not found")
        elif registration.startswith("busy"):
            status, answer = 503, _google_error(503, "UNAVAILABLE", "UNAVAILABLE", "overloaded")
            answer[1].append(("retry-after", "7"))
        else:
            name = f"projects/{self.project_id}/messages/{next(self._names)}"
            status = 200
            answer = (200, [("content-type", "application/json")], json.dumps({"name": name}))
            answer = (answer[0], answer[1], answer[2].encode())
        self.sends.append((protocol, registration, status))
        return answer


def _google_error(status: int, google_status: str, fcm_code: str | None, message: str):
    error = {"code": status, "message": message, "status": google_status}
    if fcm_code:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": fcm_code}]
    return status, [("content-type", "application/json")], json.dumps({"error": error}).encode()


def fcm_credentials(origin: str, project_id: str = "proto-test") -> Credentials:
    account = service_account(f"{origin}/token", project_id)
    return Credentials(key=f"proto-{origin}", values={"service_account": account})


@contextlib.contextmanager
def _loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        with contextlib.suppress(Exception):
            _run(loop, _cancel_tasks())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _cancel_tasks() -> None:
    """End what is still running on this loop (relays, connection handlers)."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _run(loop: asyncio.AbstractEventLoop, coroutine, timeout: float = 10):
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)


@contextlib.contextmanager
def aiohttp_fcm(state: FCMLike, tls: TLSFiles | None = None) -> Iterator[str]:
    """The FCM-like endpoint on aiohttp.web: HTTP/1.1 only (over TLS, ALPN offers only
    http/1.1). Yields its origin."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        status, headers, data = state.answer(
            request.method,
            request.path,
            {name.lower(): value for name, value in request.headers.items()},
            body,
            f"HTTP/{request.version.major}.{request.version.minor}",
            request.transport.get_extra_info("peername") if request.transport else None,
        )
        return web.Response(status=status, headers=headers, body=data)

    async def start():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = tls.server_context(["http/1.1"]) if tls else None
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]

    with _loop_thread() as loop:
        runner, port = _run(loop, start())
        try:
            yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        finally:
            _run(loop, runner.cleanup())


@contextlib.contextmanager
def hypercorn_fcm(
    state: FCMLike, tls: TLSFiles | None = None, alpn: tuple[str, ...] = ("h2",)
) -> Iterator[str]:
    """The FCM-like endpoint on Hypercorn (ASGI): HTTP/2 over TLS (ALPN `alpn`), or over
    cleartext with prior knowledge (it also takes HTTP/1.1 there). Yields its origin."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        status, headers, data = state.answer(
            scope["method"],
            scope["path"],
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body,
            f"HTTP/{scope['http_version']}",
            tuple(scope.get("client") or ()),
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": data})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1  # idle keep-alive connections do not hold the shutdown
    if tls:
        config.certfile, config.keyfile = tls.cert_file, tls.key_file
        config.alpn_protocols = list(alpn)
    with _loop_thread() as loop:
        stop = asyncio.Event()
        served = asyncio.run_coroutine_threadsafe(
            serve(app, config, shutdown_trigger=stop.wait), loop
        )
        origin = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        _wait_listening(port)
        try:
            yield origin
        finally:
            loop.call_soon_threadsafe(stop.set)
            served.result(10)


def _wait_listening(port: int) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        threading.Event().wait(0.02)
    raise TimeoutError(f"nothing listens on {port}")


# -- a proxy --


@dataclass
class ProxyLog:
    tunnels: list[str] = field(default_factory=list)  # CONNECT targets that were opened
    forwarded: list[str] = field(default_factory=list)  # absolute-form request lines relayed
    refused: list[str] = field(default_factory=list)


class Proxy:
    """An HTTP proxy on 127.0.0.1: CONNECT tunnels, and plain HTTP relayed to the origin its
    first absolute-form request names. `credentials` ("user:password"): demand them as
    Proxy-Authorization Basic (407 otherwise); `refuse`: answer every CONNECT with it;
    `refuse_after`: answer 502 to every CONNECT after that many tunnels."""

    def __init__(self, credentials: str | None = None, refuse: str | None = None) -> None:
        self.log = ProxyLog()
        self.credentials = credentials
        self.refuse = refuse
        self.refuse_after: int | None = None
        self.url = ""

    @contextlib.contextmanager
    def running(self) -> Iterator[Proxy]:
        with _loop_thread() as loop:
            server = _run(loop, asyncio.start_server(self._client, "127.0.0.1", 0))
            port = server.sockets[0].getsockname()[1]
            self.port = port
            self.url = f"http://127.0.0.1:{port}"
            try:
                yield self
            finally:
                loop.call_soon_threadsafe(server.close)

    def url_with(self, credentials: str) -> str:
        return f"http://{credentials}@127.0.0.1:{self.port}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:  # at shutdown; Python 3.11's stream callback would log it
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self.log.refused.append(target)
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                )
                await writer.drain()
                writer.close()
                return
        if method == "CONNECT":
            refuse = self.refuse
            if self.refuse_after is not None and len(self.log.tunnels) >= self.refuse_after:
                refuse = "502 Bad Gateway"
            if refuse:
                self.log.refused.append(target)
                writer.write(f"HTTP/1.1 {refuse}\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
                writer.close()
                return
            host, _, port = target.rpartition(":")
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            self.log.tunnels.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            first = b""
        else:
            url = urlsplit(target)
            upstream_reader, upstream_writer = await asyncio.open_connection(
                url.hostname, url.port or 80
            )
            self.log.forwarded.append(request_line)
            first = head  # origin servers take absolute-form requests too
        upstream_writer.write(first)
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()
