"""`rotate_encryption_keys`: re-encrypts every stored secret under the newest key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core import encryption


class Command(BaseCommand):
    help = (
        "Re-encrypts every encrypted column of every model (found by their field class) under "
        "the newest key of FIELD_ENCRYPTION_KEYS. Run it after prepending a new key; then the "
        "old keys can be removed. Batched (one transaction a batch) and resumable: a value "
        "already under the newest key is not rewritten, so an interrupted run is run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch",
            type=int,
            default=None,
            help=f"Rows a transaction (default {encryption.BATCH}).",
        )
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="APP_LABEL.MODEL",
            help="Only this model (repeatable); default: every model with an encrypted field.",
        )

    def handle(self, *args, **opts):
        tables = encryption.encrypted_tables()
        if opts["model"]:
            wanted = {label.lower() for label in opts["model"]}
            unknown = wanted - {t.label.lower() for t in tables}
            if unknown:
                raise CommandError(
                    f"No encrypted field in {', '.join(sorted(unknown))}; models with one: "
                    + ", ".join(t.label for t in tables)
                )
            tables = [t for t in tables if t.label.lower() in wanted]
        for table in tables:
            report = encryption.rotate_table(
                table,
                batch=opts["batch"],
                progress=(
                    (lambda r: self.stdout.write(f"{r.label}: {r.rows} rows read so far"))
                    if opts["verbosity"] > 1
                    else None
                ),
            )
            self.stdout.write(f"{table.label}: {report.rows} rows")
            for name, count in report.columns.items():
                self.stdout.write(
                    f"  {table.label}.{name}: {count.rewritten} re-encrypted, "
                    f"{count.current} already under the newest key, {count.empty} empty"
                )
