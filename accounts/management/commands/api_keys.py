"""`api_keys`: list, create and revoke an application's API keys from the command line (a
lost or leaked key, a new deployment). Changes are audited with the system as the actor."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts import audit
from accounts.models import ApiKey, Application
from accounts.selectors import api_key_list
from accounts.services import api_key_create, api_key_revoke


def _key_json(api_key: ApiKey) -> dict:
    """A key as GET /api-keys shows it: never the key or its digest."""
    return {
        "id": str(api_key.pk),
        "scope": api_key.scope,
        "name": api_key.name,
        "prefix": api_key.prefix,
        "created_at": api_key.created_at.isoformat(),
        "last_used_at": api_key.last_used_at.isoformat() if api_key.last_used_at else None,
        "revoked_at": api_key.revoked_at.isoformat() if api_key.revoked_at else None,
    }


class Command(BaseCommand):
    help = (
        "Lists, creates or revokes an application's API keys. `list` prints the keys as a "
        "JSON array (never the keys themselves); `create` prints "
        '{"id", "scope", "name", "prefix", "key"} as JSON on the last line, the key shown '
        "this once; `revoke` revokes a key at once (its next request is 401)."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="operation", required=True)
        listing = sub.add_parser("list", help="The application's keys, newest first.")
        listing.add_argument("--application", required=True, help="The application's id.")
        listing.add_argument(
            "--active",
            choices=("true", "false"),
            help="true: only keys not revoked; false: only revoked ones.",
        )
        create = sub.add_parser("create", help="A new key, printed once.")
        create.add_argument("--application", required=True, help="The application's id.")
        create.add_argument("--scope", required=True, choices=ApiKey.Scope.values)
        create.add_argument("--name", default="", help="What the key is for.")
        revoke = sub.add_parser("revoke", help="Revokes a key at once.")
        revoke.add_argument("--application", required=True, help="The application's id.")
        revoke.add_argument("--key", required=True, help="The key's id (from `list`).")

    def handle(self, *args, **opts):
        application = _application(opts["application"])
        operation = opts["operation"]
        if operation == "list":
            active = {"true": True, "false": False}.get(opts.get("active") or "")
            keys = api_key_list(application=application, active=active)
            self.stdout.write(json.dumps([_key_json(api_key) for api_key in keys]))
        elif operation == "create":
            name = opts["name"]
            if len(name) > ApiKey._meta.get_field("name").max_length:
                raise CommandError("--name is longer than 100 characters.")
            new = api_key_create(
                application=application, scope=opts["scope"], name=name, actor=audit.SYSTEM
            )
            self.stdout.write(
                json.dumps(
                    {
                        "id": str(new.api_key.pk),
                        "scope": new.api_key.scope,
                        "name": new.api_key.name,
                        "prefix": new.api_key.prefix,
                        "key": new.raw,
                    }
                )
            )
        else:
            api_key = _api_key(application, opts["key"])
            was_active = api_key.is_active
            api_key = api_key_revoke(api_key=api_key, actor=audit.SYSTEM)
            self.stdout.write(json.dumps({**_key_json(api_key), "was_active": was_active}))


def _application(application_id: str) -> Application:
    try:
        return Application.objects.get(pk=application_id)
    except (Application.DoesNotExist, ValidationError) as exc:
        raise CommandError(f"No application with id {application_id!r}.") from exc


def _api_key(application: Application, api_key_id: str) -> ApiKey:
    try:
        return ApiKey.objects.get(application=application, pk=api_key_id)
    except (ApiKey.DoesNotExist, ValidationError) as exc:
        raise CommandError(
            f"No key with id {api_key_id!r} in application {application.pk}."
        ) from exc
