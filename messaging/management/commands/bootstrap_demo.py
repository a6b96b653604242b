"""`bootstrap_demo`: the first-run demo application and admin login of `make run`."""

from __future__ import annotations

import json
import logging
import os
import secrets
import urllib.request
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import audit
from accounts.models import ApiKey, Application
from accounts.selectors import channels_ready
from accounts.services import (
    api_key_create,
    application_create,
    application_settings_update,
    channel_credentials_set,
    origin_clean,
)
from templates_app.kakao import kakao_templates_sync

logger = logging.getLogger(__name__)

DEMO_NAME = "demo"
# The approved AlimTalk template the demo registers at the fake dealer (docs/channels.md's
# example).
DEMO_KAKAO_TEMPLATE = {
    "template_code": "DEMO_ORDER",
    "name": "Order received",
    "text": "#{name}님, 주문 #{order}이(가) 접수되었습니다.",
    "status": "TSC03",
    "buttons": [{"type": "WL", "name": "주문 보기", "linkMo": "https://shop.example.com/orders"}],
}


class Command(BaseCommand):
    help = (
        "Creates, once, an admin login and a demo application whose credentials are the fake "
        "providers' (from --fake-state-dir): APNs, FCM, e-mail (the fake SMTP relay), SMS (the "
        "fake Twilio), KakaoTalk (the fake dealer, with an approved template DEMO_ORDER) and Web "
        "Push (VAPID keys generated). Writes what it made to --output (a "
        "local, git-ignored file readable only by you) and prints it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fake-state-dir", default="var/fake")
        parser.add_argument("--output", default="var/demo.json")
        parser.add_argument(
            "--allowed-origin",
            action="append",
            default=[],
            help="A web origin the demo application lets call the API and the inbox stream "
            "with its client key (CORS), e.g. the demo page's http://127.0.0.1:8000; repeatable.",
        )

    def handle(self, *args, **opts):
        output = Path(opts["output"])
        state = Path(opts["fake_state_dir"])
        existing = Application.objects.filter(name=DEMO_NAME).first()
        origins = [origin_clean(origin) for origin in opts["allowed_origin"]]
        if existing is not None and output.exists():
            # A demo made before some channel existed gets that channel's credentials too.
            _channels(existing, state, only_missing=True)
            _allow_origins(existing, origins)
            self.stdout.write(output.read_text())
            return
        with transaction.atomic():
            demo = self._demo(state)
            _allow_origins(Application.objects.get(pk=demo["application_id"]), origins)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(demo, indent=2))
        os.chmod(output, 0o600)
        self.stdout.write(json.dumps(demo, indent=2))

    def _demo(self, state: Path) -> dict:
        application = application_create(name=DEMO_NAME)
        _channels(application, state, only_missing=False)
        server = api_key_create(application=application, scope=ApiKey.Scope.SERVER, name="demo")
        client = api_key_create(application=application, scope=ApiKey.Scope.CLIENT, name="demo")
        demo = {
            "application_id": str(application.pk),
            "server_key": server.raw,
            "client_key": client.raw,
        }
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            demo["admin"] = {"username": "admin", "password": password}
        return demo


def _allow_origins(application: Application, origins: list[str]) -> None:
    """Adds the origins the application does not list yet (through the service, audited)."""
    missing = [origin for origin in origins if origin not in application.allowed_origins]
    if missing:
        application_settings_update(
            application=application,
            actor=audit.SYSTEM,
            allowed_origins=[*application.allowed_origins, *missing],
        )


def _channels(application: Application, state: Path, *, only_missing: bool) -> None:
    """Every channel's credentials of the fake providers `make run` starts (as `python -m
    fakes` writes them), and the demo KakaoTalk template."""
    # Where the running fakes listen (written by `python -m fakes` once they all accept).
    ports = json.loads((state / "ready.json").read_text())
    wanted = json.loads((state / "demo_credentials.json").read_text())
    ready = channels_ready(application=application)
    for channel, values in wanted.items():
        if only_missing and ready.get(channel):
            continue
        channel_credentials_set(application=application, channel=channel, values=values)
    if "KakaoTalk" in wanted:
        _demo_kakao_template(application, ports["kakao_port"], wanted["KakaoTalk"]["sender_key"])


def _demo_kakao_template(application: Application, port: int, sender_key: str) -> None:
    """Registers DEMO_KAKAO_TEMPLATE at the fake dealer (which keeps templates in memory: on
    every `make run`) and reads the dealer's list into the demo application, as beat does."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/__templates",
        data=json.dumps({**DEMO_KAKAO_TEMPLATE, "sender_key": sender_key}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 (the local fake, http)
            pass
        kakao_templates_sync(application=application)
    except Exception as exc:  # the demo still starts; beat syncs the templates later
        logger.warning("The demo's KakaoTalk template is not synced: %s", exc)
