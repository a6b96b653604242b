"""`sync_kakao_templates`: read the dealer's AlimTalk template list into the service, for one
application or for every application with KakaoTalk credentials, and print the counts."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Application
from core.exceptions import ApplicationError
from templates_app.kakao import kakao_applications, kakao_templates_sync


class Command(BaseCommand):
    help = (
        "Reads the KakaoTalk AlimTalk templates registered at the dealer (NHN Cloud) into the "
        "service: new codes are added, changed ones updated, codes the dealer no longer lists "
        "removed. Prints one line of counts per application."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--application",
            help="The application's id; without it, every application with KakaoTalk credentials.",
        )

    def handle(self, *args, **opts):
        if opts["application"]:
            try:
                applications = [Application.objects.get(pk=opts["application"])]
            except (Application.DoesNotExist, ValidationError) as exc:
                raise CommandError(f"No application with id {opts['application']!r}.") from exc
        else:
            applications = kakao_applications()
            if not applications:
                self.stdout.write("No application has KakaoTalk credentials.")
                return
        failed = 0
        for application in applications:
            try:
                counts = kakao_templates_sync(application=application)
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
            except Exception as exc:  # the dealer unreachable or refusing: say so, go on
                failed += 1
                self.stderr.write(f"{application.pk}: not synced: {type(exc).__name__}: {exc}")
                continue
            self.stdout.write(f"{application.pk} ({application.name}): {counts}")
        if failed:
            raise CommandError(f"{failed} of {len(applications)} applications not synced.")
