"""`python manage.py import_job submit|status|list`: the job pages' services, from a shell.

Each subcommand is a `_<name>` method, so another (`validate`, say) is one parser and one method more.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports import jobs
from imports.dicom import uid_problem
from imports.models import Datastore, ImportJob
from imports.validators import (
    validate_job_name,
    validate_output_s3_uri,
    validate_s3_uri,
)

CSV_COLUMNS = ("study_instance_uid", "series_instance_uid", "metadata_file_path")
# HealthImaging's metadataFilePath pattern: printable ASCII, inner spaces only.
METADATA_PATH_RE = re.compile(r"[!-~]+([!-~ ]*[!-~]+)*")


class Command(BaseCommand):
    help = "Submit import jobs and follow them (the same services as the pages)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        submit = sub.add_parser(
            "submit",
            help="Check and submit an import job; prints the job's ID alone on the last line.",
        )
        submit.add_argument("--datastore", required=True, help="the datastore's name")
        submit.add_argument("--input", help="input S3 URI (default: the datastore's)")
        submit.add_argument("--output", help="output S3 URI (default: the datastore's)")
        submit.add_argument("--name", default="", help="job name")
        submit.add_argument(
            "--mappings",
            type=Path,
            help="CSV with the columns "
            + ", ".join(CSV_COLUMNS)
            + " (header row first)",
        )
        submit.add_argument(
            "--idempotency-key",
            help="run the command again with the same key to get the same job, not a second one",
        )
        status = sub.add_parser("status", help="A job's state, AWS job ID and counts.")
        status.add_argument("id", type=int)
        status.add_argument(
            "--wait", action="store_true", help="block until the job has ended"
        )
        status.add_argument("--json", action="store_true", help="one JSON object")
        status.add_argument(
            "--interval", type=float, default=2.0, help=argparse.SUPPRESS
        )
        listing = sub.add_parser("list", help="The most recent jobs.")
        listing.add_argument(
            "--json", action="store_true", help="one JSON object a line"
        )
        listing.add_argument("--limit", type=int, default=50)

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    # --- submit -----------------------------------------------------------------------------

    def _submit(self, options: dict[str, Any]) -> None:
        datastore = Datastore.objects.filter(
            name=options["datastore"], enabled=True
        ).first()
        if datastore is None:
            raise CommandError(
                f"No enabled datastore is named “{options['datastore']}”.",
                returncode=1,
            )
        request, problems = submission_check(datastore, options)
        if problems:
            raise CommandError(
                "The job was not submitted:\n" + "\n".join(f"  {p}" for p in problems),
                returncode=1,
            )
        job = jobs.job_create(
            actor=None,
            draft=None,
            datastore=datastore,
            request=request,
            idempotency_key=options["idempotency_key"] or f"cli-{uuid.uuid4()}",
        )
        self.stdout.write(
            f"Import job {job.pk} into “{datastore.name}”: {job.display_status.lower()}; "
            f"follow it with: python manage.py import_job status {job.pk} --wait"
        )
        self.stdout.write(str(job.pk))

    # --- status -----------------------------------------------------------------------------

    def _status(self, options: dict[str, Any]) -> None:
        job = (
            ImportJob.objects.select_related("datastore")
            .filter(pk=options["id"])
            .first()
        )
        if job is None:
            raise CommandError(f"There is no import job {options['id']}.", returncode=1)
        while options["wait"] and job.is_live:
            time.sleep(options["interval"])
            job.refresh_from_db()
        if options["json"]:
            self.stdout.write(json.dumps(job_summary(job)))
            return
        summary = job_summary(job)
        self.stdout.write(
            f"Import job {job.pk} into “{job.datastore.name}”: {job.display_status}"
        )
        self.stdout.write(f"  AWS job ID  {job.aws_job_id or '–'}")
        if job.results == ImportJob.Results.DONE:
            self.stdout.write(
                f"  files       {summary['imported']} imported, {summary['failed']} failed, "
                f"{summary['warnings']} with warnings"
            )
            if job.non_primary_count:
                self.stdout.write(f"  non-primary image sets  {job.non_primary_count}")
        for text in (job.error_message, job.message, job.results_error):
            if text:
                self.stdout.write(f"  {text}")

    # --- list -------------------------------------------------------------------------------

    def _list(self, options: dict[str, Any]) -> None:
        recent = ImportJob.objects.select_related("datastore")[: options["limit"]]
        if options["json"]:
            for job in recent:
                self.stdout.write(json.dumps(job_summary(job)))
            return
        rows = [("ID", "DATASTORE", "STATUS", "AWS JOB ID", "NAME", "CONFIRMED")]
        for job in recent:
            rows.append(
                (
                    str(job.pk),
                    job.datastore.name,
                    job.status_code,
                    job.aws_job_id,
                    job.job_name,
                    f"{job.created_at:%Y-%m-%d %H:%M}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )


def job_summary(job: ImportJob) -> dict[str, Any]:
    """What `status --json` and `list --json` print: status says completed_with_errors when files failed."""
    read = job.results == ImportJob.Results.DONE
    return {
        "id": job.pk,
        "status": job.status_code,
        "ended": job.has_ended,
        "aws_job_id": job.aws_job_id or None,
        "datastore": job.datastore.name,
        "job_name": job.job_name or None,
        "external": job.external,
        "created_at": job.created_at.isoformat(),
        "submitted_at": job.submitted_at.isoformat() if job.submitted_at else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "imported": job.success_count + job.warning_count if read else None,
        "failed": job.failure_count if read else None,
        "warnings": job.warning_count if read else None,
        "unreadable_result_lines": job.invalid_line_count if read else None,
        "non_primary_image_sets": job.non_primary_count if read else None,
        "scanned_files": job.scanned_files,
        "error_code": job.error_code or None,
        "error_message": job.error_message or None,
        "message": job.message or None,
    }


def submission_check(
    datastore: Datastore, options: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The request `submit` would send, and every problem with it.

    The shape checks only: the composer's validation (metadata files, UIDs present under the prefix)
    is meant to replace this function's body once it exists, with the same (request, problems) result.
    """
    problems: list[str] = []
    for option, value, validate in (
        ("--input", options.get("input"), validate_s3_uri),
        ("--output", options.get("output"), validate_output_s3_uri),
        ("--name", options.get("name"), validate_job_name),
    ):
        if value:
            try:
                validate(value)
            except ValidationError as error:
                problems += [f"{option}: {m}" for m in error.messages]
    mappings: list[jobs.Mapping] = []
    if options.get("mappings"):
        mappings, csv_problems = mappings_read_csv(options["mappings"])
        problems += csv_problems
    request = jobs.job_request_build(
        datastore=datastore,
        input_s3_uri=options.get("input"),
        output_s3_uri=options.get("output"),
        job_name=options.get("name") or "",
        mappings=mappings,
    )
    problems += jobs.request_problems(request, datastore=datastore)
    return request, problems


def mappings_read_csv(path: Path) -> tuple[list[jobs.Mapping], list[str]]:
    """Mappings from a CSV file, and every problem with them, each naming its line."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            header = rows[0].keys() if rows else ()
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [], [f"--mappings: {path} cannot be read: {error}"]
    missing = [c for c in CSV_COLUMNS if c != "series_instance_uid" and c not in header]
    if not rows or missing:
        return [], [
            f"--mappings: {path} needs a header row with the columns {', '.join(CSV_COLUMNS)} "
            "(series_instance_uid may be empty) and at least one mapping."
        ]
    problems: list[str] = []
    mappings: list[jobs.Mapping] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in enumerate(rows, start=2):
        study = (row.get("study_instance_uid") or "").strip()
        series = (row.get("series_instance_uid") or "").strip()
        file_path = (row.get("metadata_file_path") or "").strip()
        for name, uid in (
            ("study_instance_uid", study),
            ("series_instance_uid", series),
        ):
            if uid or name == "study_instance_uid":
                problem = uid_problem(uid)
                if problem:
                    problems.append(f"--mappings line {line}: {name}: {problem}.")
        if (
            not file_path
            or len(file_path) > 1024
            or not METADATA_PATH_RE.fullmatch(file_path)
        ):
            problems.append(
                f"--mappings line {line}: metadata_file_path must be 1-1024 printable ASCII "
                "characters, relative to the input URI, without leading or trailing spaces."
            )
        if (study, series) in seen:
            problems.append(
                f"--mappings line {line}: the same study and series as line {seen[(study, series)]}; "
                "HealthImaging takes one mapping per study or series."
            )
        seen.setdefault((study, series), line)
        mappings.append(jobs.Mapping(study, series, file_path))
    if len(mappings) > jobs.MAX_MAPPINGS:
        problems.append(
            f"--mappings: {len(mappings)} mappings; one job takes at most {jobs.MAX_MAPPINGS}."
        )
    return mappings, problems
