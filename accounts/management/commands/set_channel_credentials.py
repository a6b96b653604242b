"""`set_channel_credentials`: store one channel's credentials of an application from a JSON
file, and print what was stored with its secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts import audit, credentials
from accounts.models import Application
from accounts.selectors import credential_secret_fields
from accounts.services import channel_credentials_set
from core.channels import CHANNELS


class Command(BaseCommand):
    help = (
        "Stores an application's credentials for one channel from a JSON file (see "
        "docs/channels.md, Credentials, for each channel's fields; WebPush `{}` generates VAPID "
        "keys) and prints what was stored, secrets masked, as JSON on the last line. The audit log "
        "records the change (field names only), by the system."
    )

    def add_arguments(self, parser):
        parser.add_argument("--application", required=True, help="The application's id.")
        parser.add_argument("--channel", required=True, choices=CHANNELS)
        parser.add_argument("--file", required=True, help="A JSON object; - reads stdin.")

    def handle(self, *args, **opts):
        try:
            application = Application.objects.get(pk=opts["application"])
        except (Application.DoesNotExist, ValidationError) as exc:
            raise CommandError(f"No application with id {opts['application']!r}.") from exc
        values = _read_json(opts["file"])
        try:
            stored = channel_credentials_set(
                application=application,
                channel=opts["channel"],
                values=values,
                actor=audit.SYSTEM,
            )
        except credentials.CredentialsInvalid as exc:
            raise CommandError(str(exc)) from exc
        secret_keys = credential_secret_fields(opts["channel"])
        shown = dict(credentials.credentials_display(stored, secret_keys=secret_keys))
        self.stdout.write(
            json.dumps({"application": str(application.pk), "channel": opts["channel"], **shown})
        )


def _read_json(path: str) -> dict:
    try:
        text = (
            Path("/dev/stdin").read_text(encoding="utf-8")
            if path == "-"
            else Path(path).read_text(encoding="utf-8")
        )
    except OSError as exc:
        raise CommandError(f"Cannot read {path!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path!r} is not UTF-8 text.") from exc
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path!r} is not JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise CommandError(f"{path!r} must hold a JSON object.")
    return values
