"""`python manage.py import_job validate ...`: the composer's checks, from a shell.

    import_job validate --datastore NAME [--input s3://…] --mappings FILE.csv [--json]

Prints each problem (with --json, one JSON object a line: severity, row, field, code, message) and exits 0 when
there is no error (warnings allowed), 1 otherwise. The input prefix is scanned first when its latest scan is
missing or out of date, exactly as the composer does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports.mappingcsv import CsvRefused, mappings_read_csv
from imports.mappings import Problem, mappings_validate
from imports.models import Datastore, Scan
from imports.scanning import control, run
from imports.scanning.lookup import prefix_index, scan_is_current
from imports.validators import split_s3_uri, validate_s3_uri


class Command(BaseCommand):
    help = "Validate import mappings (and, later, submit jobs and follow them)."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True)
        validate = subcommands.add_parser(
            "validate", help="check a mappings CSV against the input prefix"
        )
        validate.add_argument("--datastore", required=True, help="datastore name")
        validate.add_argument(
            "--input", help="input S3 URI (default: the datastore's input URI)"
        )
        validate.add_argument(
            "--mappings",
            required=True,
            help="CSV with the header studyInstanceUID,seriesInstanceUID,metadataFilePath",
        )
        validate.add_argument(
            "--json", action="store_true", help="one JSON object per problem"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "validate":
            self._validate(options)

    def _validate(self, options: dict[str, Any]) -> None:
        datastore = _datastore(options["datastore"])
        uri = options["input"] or datastore.input_s3_uri
        try:
            validate_s3_uri(uri)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        uri = uri if uri.endswith("/") else uri + "/"
        try:
            data = Path(options["mappings"]).read_bytes()
        except OSError as error:
            raise CommandError(
                f"Cannot read {options['mappings']}: {error.strerror}."
            ) from error
        try:
            mappings = mappings_read_csv(data, check_fields=False)
        except CsvRefused as refused:
            problems = refused.problems or [
                Problem("error", None, "", "csv_invalid", str(refused))
            ]
        else:
            scan = _current_scan(datastore, uri, self.stderr)
            problems = mappings_validate(
                mappings=mappings, index=prefix_index(scan=scan)
            )
        _print_problems(self, problems, as_json=options["json"])
        if any(p.severity == "error" for p in problems):
            sys.exit(1)


def _datastore(name: str) -> Datastore:
    datastore = Datastore.objects.filter(name=name).first()
    if datastore is None:
        known = ", ".join(Datastore.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"No datastore is named “{name}” (known: {known}).")
    return datastore


def _current_scan(datastore: Datastore, uri: str, log: Any) -> Scan:
    """The completed scan of the prefix, scanning it here first if it has none or it changed since."""
    bucket, prefix = split_s3_uri(uri)
    while True:
        running = Scan.objects.filter(
            bucket=bucket, prefix=prefix, status__in=Scan.ACTIVE
        ).first()
        if running is None:
            break
        log.write(f"Waiting for the running scan of {uri} (scan {running.pk})…")
        time.sleep(2)
    latest = (
        Scan.objects.filter(bucket=bucket, prefix=prefix, status=Scan.Status.COMPLETED)
        .order_by("-finished_at", "-id")
        .first()
    )
    if latest is not None and scan_is_current(scan=latest):
        return latest
    log.write(f"Scanning {uri} first (only new or changed objects are read)…")
    scan, _ = control.scan_start(
        actor=None,
        bucket=bucket,
        prefix=prefix,
        region=datastore.region,
        datastore=datastore,
        enqueue=False,
    )
    result = run.scan_run(scan_id=scan.pk)
    if result is None or result.status != Scan.Status.COMPLETED:
        reason = result.error if result is not None else "another process took it"
        raise CommandError(f"The scan of {uri} did not complete: {reason}")
    return result


def _print_problems(
    command: BaseCommand, problems: list[Problem], *, as_json: bool
) -> None:
    try:
        for p in problems:
            if as_json:
                line = json.dumps(
                    {
                        "severity": p.severity,
                        "row": p.row,
                        "field": p.field,
                        "code": p.code,
                        "message": p.message,
                    }
                )
            else:
                where = f"row {p.row}" if p.row is not None else "all rows"
                field = f" {p.field}" if p.field else ""
                line = f"{p.severity}: {where}{field}: {p.message} [{p.code}]"
            command.stdout.write(line)
        if not as_json:
            errors = sum(p.severity == "error" for p in problems)
            warnings = len(problems) - errors
            command.stdout.write(
                f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}: "
                + (
                    "the mappings can be submitted."
                    if not errors
                    else "fix the errors first."
                )
            )
        command.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do. Python would otherwise report
        # the pipe again when it flushes stdout at exit, so point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1 if any(p.severity == "error" for p in problems) else 0)
