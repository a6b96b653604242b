"""`purge_expired`: the retention purge by hand (messaging.retention), for every application
or one; `--dry-run` prints what it would delete."""

from __future__ import annotations

from dataclasses import asdict

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Application
from messaging import retention


class Command(BaseCommand):
    help = (
        "Deletes messages (with their events and inbox items) and subscription events older "
        "than their application's retention_days, in batches, for at most --budget seconds "
        "(RETENTION_PURGE_BUDGET_SECONDS); run it again to continue. --dry-run only counts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--application", help="only this application (its id)")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch-size", type=int, help="messages per transaction")
        parser.add_argument("--budget", type=float, help="seconds this run may take")
        parser.add_argument("--pause", type=float, help="seconds to pause after each batch")

    def handle(self, *args, **opts):
        application_id = opts["application"]
        if application_id is not None:
            try:
                Application.objects.get(pk=application_id)
            except (Application.DoesNotExist, ValidationError, ValueError) as exc:
                raise CommandError(f"No application {application_id}") from exc
        for name in ("batch_size", "budget", "pause"):
            if opts[name] is not None and opts[name] < (1 if name == "batch_size" else 0):
                raise CommandError(f"--{name.replace('_', '-')} is out of range")
        run = retention.expired_purge(
            application_id=application_id,
            dry_run=opts["dry_run"],
            batch_size=opts["batch_size"],
            budget_seconds=opts["budget"],
            pause_seconds=opts["pause"],
        )
        if run.skipped:
            self.stdout.write("Another purge is running; nothing done.")
            return
        verb = "would delete" if opts["dry_run"] else "deleted"
        for pk, purged in run.purged.items():
            figures = ", ".join(f"{name} {value}" for name, value in asdict(purged).items())
            self.stdout.write(f"application {pk}: {verb} {figures}")
        if not run.purged:
            self.stdout.write(f"Nothing expired{' to delete' if opts['dry_run'] else ''}.")
        if not opts["dry_run"]:
            self.stdout.write(
                f"{run.batches} batches in {run.seconds} s; "
                + ("done." if run.finished else "budget spent: run it again to continue.")
            )
