"""`create_application`: an application with a server and a client key, printed as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts import audit, credentials
from accounts.models import ApiKey
from accounts.services import api_key_create, application_create
from core import channels


class Command(BaseCommand):
    help = (
        "Creates an application with a server key and a client key; prints "
        '{"id", "server_key", "client_key"} as JSON on the last line. Keys are shown only once.'
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--apns-key-file", help="The .p8 key for APNs token auth.")
        parser.add_argument("--apns-key-id")
        parser.add_argument("--apns-team-id")
        parser.add_argument("--apns-topic", help="The app's bundle id.")
        parser.add_argument("--apns-sandbox", action="store_true", help="Use APNs sandbox.")
        parser.add_argument("--fcm-service-account", help="The service-account JSON file.")

    def handle(self, *args, **opts):
        stored = {
            channels.IOS_PUSH: _apns_credentials(opts),
            channels.ANDROID_PUSH: _fcm_credentials(opts.get("fcm_service_account")),
        }
        application = application_create(
            name=opts["name"],
            credentials={c: values for c, values in stored.items() if values},
            actor=audit.SYSTEM,
        )
        server, client = (
            api_key_create(
                application=application, scope=scope, name=scope.value, actor=audit.SYSTEM
            )
            for scope in (ApiKey.Scope.SERVER, ApiKey.Scope.CLIENT)
        )
        self.stdout.write(
            json.dumps(
                {"id": str(application.pk), "server_key": server.raw, "client_key": client.raw}
            )
        )


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"Cannot read the {what} {path!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CommandError(f"Cannot read the {what} {path!r}: it is not UTF-8 text.") from exc


def _apns_credentials(opts) -> dict:
    names = ("apns_key_file", "apns_key_id", "apns_team_id", "apns_topic")
    given = [name for name in names if opts.get(name)]
    if not given:
        return {}
    missing = [f"--{name.replace('_', '-')}" for name in names if not opts.get(name)]
    if missing:
        raise CommandError(f"APNs token auth also needs {', '.join(missing)}.")
    key = _read(opts["apns_key_file"], "APNs key file")
    try:
        return credentials.apns_credentials_clean(
            private_key=key,
            key_id=opts["apns_key_id"],
            team_id=opts["apns_team_id"],
            topic=opts["apns_topic"],
            sandbox=bool(opts.get("apns_sandbox")),
        )
    except credentials.CredentialsInvalid as exc:
        raise CommandError(f"{opts['apns_key_file']!r}: {exc}") from exc


def _fcm_credentials(path: str | None) -> dict:
    if not path:
        return {}
    try:
        return credentials.fcm_credentials_clean(service_account=_read(path, "FCM service account"))
    except credentials.CredentialsInvalid as exc:
        raise CommandError(f"{path!r}: {exc}") from exc
