"""`python manage.py import_record export ID [--output FILE]` and `python manage.py import_record verify FILE`.

`export` writes a job's signed import record (imports.jobs.record), written once the job was verified, to FILE or
standard output; it exits 1 when the job is unknown or has no record yet. `verify` checks a record file offline
against the key of this installation (IMPORT_RECORD_KEY, else derived from SECRET_KEY): exit 0 when it is intact,
1 otherwise, naming the first field that changed. Scripts rely on these exit codes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports.jobs import record as import_record
from imports.models import ImportJob

MAX_RECORD_BYTES = 512 * 1024 * 1024


class Command(BaseCommand):
    help = "Export a job's signed import record, or check a record file."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        export = sub.add_parser("export", help="Write a job's signed import record.")
        export.add_argument("id", type=int, help="the import job's ID")
        export.add_argument(
            "--output", type=Path, help="the file to write (default: standard output)"
        )
        check = sub.add_parser(
            "verify",
            help="Check a record file: exit 0 when intact, 1 naming the first field that changed.",
        )
        check.add_argument("file", type=Path, help="the record file (JSON)")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _export(self, options: dict[str, Any]) -> None:
        job = ImportJob.objects.filter(pk=options["id"]).first()
        if job is None:
            raise CommandError(f"There is no import job {options['id']}.", returncode=1)
        if not job.record:
            raise CommandError(
                f"Import job {job.pk} has no signed record yet: it is written once the job is verified "
                f"(its verification: {job.get_verification_display().lower()}).",
                returncode=1,
            )
        text = import_record.record_text(job.record) + "\n"
        output: Path | None = options.get("output")
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as error:
            raise CommandError(
                f"--output: {output} cannot be written: {error.strerror}.", returncode=1
            ) from error
        self.stderr.write(
            f"Wrote the signed record of import job {job.pk} to {output}."
        )

    def _verify(self, options: dict[str, Any]) -> None:
        path: Path = options["file"]
        try:
            if path.stat().st_size > MAX_RECORD_BYTES:
                self._refuse(
                    f"{path} is larger than {MAX_RECORD_BYTES:,} bytes: not a record."
                )
            document = json.loads(path.read_bytes())
        except OSError as error:
            self._refuse(f"{path} cannot be read: {error.strerror}.")
        except (ValueError, RecursionError) as error:
            self._refuse(f"{path} is not JSON ({error}): not an intact record.")
        changed = import_record.record_check(document)
        if changed is not None:
            self._refuse(
                f"{path}: the record is not intact: the field “{changed}” changed since it was signed."
            )
        about = document.get("job")
        job = about.get("id") if isinstance(about, dict) else None
        self.stdout.write(
            f"{path}: intact, signed import record of import job {job} "
            f"({import_record.ALGORITHM}, every field as signed)."
        )

    def _refuse(self, message: str) -> NoReturn:
        self.stderr.write(message)
        sys.exit(1)
