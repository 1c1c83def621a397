"""`python manage.py import_job validate|submit|status|list|corrections`: the composer's and the job pages' services,
from a shell.

    import_job validate --datastore NAME [--input s3://…] --mappings FILE.csv [--predict] [--json] [--user NAME]
    import_job corrections --datastore NAME [--input s3://…] --sheet FILE [--json] [--write --mappings-out FILE]
    import_job submit --datastore NAME [--input s3://…] [--output s3://…] [--name N] [--mappings FILE.csv]
                      [--accept-warnings] [--allow-duplicate] [--user NAME]
    import_job status ID [--wait] [--json]      (--wait: until ended, results read, verification done)
    import_job list [--json]

`validate` prints each problem (with --json, one JSON object a line: severity, row, field, code, message) and exits
0 when there is no error (warnings allowed), 1 otherwise. With --predict it also says, for every series of the
prefix, what the import would do in the datastore (imports.drafts.prediction): with --json one line a series,
`{"kind": "prediction", "study_instance_uid", "series_instance_uid", "outcome": "new" | "adds_to" | "non_primary"
| null, "image_set_id", "image_set_version", "differs": [keyword, ...]}` plus `"reason"` when the outcome is null
(HealthImaging could not answer); without, a table. A prediction never changes the exit code. `submit` runs the same validation, refuses with every
problem and exit 1 (warnings too, unless --accept-warnings; a request a job of the last JOBS_DUPLICATE_WINDOW_DAYS
already made, unless --allow-duplicate, which still warns on stderr), or creates and enqueues the job and prints its ID alone
on the last line. Both scan the input prefix first when its latest scan is missing or out of date, as the composer
does, and record in the audit trail the account of whoever runs them: --user NAME, else the OS user's name.
`corrections` is a dry run of a correction sheet (CSV or XLSX): each row's match and changes against the latest
scan of the prefix (scanned first as above), or its problem; it writes nothing and exits as `validate` does. With
--write --mappings-out FILE it also writes one DICOM JSON file per corrected study or series under the prefix and the
mappings CSV (imports.corrections.write), unless a row has an error or the sheet corrects over 1,000 studies.
`status --wait` exits 0 only for a job completed with no failed file, 1 otherwise (STATUS_EXIT_CODES). Each
subcommand is a `_<name>` method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imports.corrections import matching, report, sheet, write
from imports.drafts import prediction
from imports.jobs import derived as duplicates
from imports.jobs import request as jobrequest
from imports.jobs import submit as jobs
from imports.jobs import verification
from imports.management.import_job_shared import (
    _actor,
    _current_scan,
    _datastore,
    _input_uri,
    _option_problems,
    _print_prediction,
    _print_problems,
    _read_mappings,
    _scan_actor,
    _write_actor,
)
from imports.mappings.csvfile import CSV_COLUMNS, mappings_csv_text
from imports.mappings.rules import Mapping, Problem, mappings_validate
from imports.models import Datastore, ImportJob, Scan
from imports.scanning.lookup import prefix_index

# Without a mappings file, `submit` sends a plain import: these set-level checks do not apply.
PLAIN_IMPORT_CODES = {"no_mappings", "unmapped_json_file", "unmapped_study"}

# Scripts branch on these: keep them as they are.
STATUS_EXIT_CODES = """exit codes with --wait (scripts rely on them):
  0  the job completed and no file failed
  1  the job completed with errors (a file failed, or its results could not be read),
     failed, or was not submitted
Without --wait, status exits 0 whenever it could report the job, 1 for an unknown ID."""

USER_HELP = (
    "the account recorded in the audit trail as having run this (default: the OS user's name, "
    "which must then be an account's user name)"
)


class Command(BaseCommand):
    help = "Submit import jobs and follow them (the same services as the pages)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        validate = sub.add_parser(
            "validate", help="Check a mappings CSV against the input prefix."
        )
        validate.add_argument("--datastore", required=True, help="the datastore's name")
        validate.add_argument("--input", help="input S3 URI (default: the datastore's)")
        validate.add_argument(
            "--mappings",
            type=Path,
            required=True,
            help="CSV with the header " + ",".join(CSV_COLUMNS),
        )
        validate.add_argument(
            "--json",
            action="store_true",
            help="one JSON object per problem (and per series, with --predict)",
        )
        validate.add_argument(
            "--predict",
            action="store_true",
            help="also say what the import would do to each series: a new image set, added to the primary "
            "one, or a non-primary one (SearchImageSets and GetImageSetMetadata; the exit code is unchanged)",
        )
        validate.add_argument("--user", help=USER_HELP)
        corrections = sub.add_parser(
            "corrections",
            help="Dry run of a correction sheet: each row's match and changes, or its problem.",
            description=report.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        corrections.add_argument(
            "--datastore", required=True, help="the datastore's name"
        )
        corrections.add_argument(
            "--input", help="input S3 URI (default: the datastore's)"
        )
        corrections.add_argument(
            "--sheet",
            type=Path,
            required=True,
            help="the correction sheet: CSV (UTF-8) or XLSX (its first sheet), a header row, at most "
            f"{sheet.MAX_ROWS:,} rows",
        )
        corrections.add_argument(
            "--json",
            action="store_true",
            help="one JSON object a line: row, status, study_instance_uid, changes, or code and message",
        )
        corrections.add_argument(
            "--write",
            action="store_true",
            help="write one DICOM JSON file per corrected study or series under the input prefix "
            f"({write.FOLDER}/<sheet id>/<UID>.json) and the mappings CSV to --mappings-out; "
            "nothing is written when a row has an error",
        )
        corrections.add_argument(
            "--mappings-out",
            type=Path,
            help="with --write: the mappings CSV to write, ready for import_job validate --mappings "
            "and import_job submit --mappings",
        )
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
            help="CSV with the header "
            + ",".join(CSV_COLUMNS)
            + " (an empty series means study level)",
        )
        submit.add_argument(
            "--idempotency-key",
            help="run the command again with the same key to get the same job, not a second one",
        )
        submit.add_argument(
            "--accept-warnings",
            action="store_true",
            help="submit even though the validation gave warnings (without it, any warning refuses)",
        )
        submit.add_argument(
            "--allow-duplicate",
            action="store_true",
            help="submit even though a recent job made this same request (same datastore, input and "
            "mappings); the audit trail records it (without it, such a request is refused)",
        )
        submit.add_argument("--user", help=USER_HELP)
        status = sub.add_parser(
            "status",
            help="A job's state, AWS job ID and counts.",
            epilog=STATUS_EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        status.add_argument("id", type=int)
        status.add_argument(
            "--wait",
            action="store_true",
            help="block until the job has ended, its results are read and its verification is no "
            "longer pending; exit 0 only if it completed with no failed file, else 1",
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

    def _validate(self, options: dict[str, Any]) -> None:
        actor = _actor(options.get("user"))
        datastore = _datastore(options["datastore"])
        uri = _input_uri(datastore, options.get("input"))
        mappings = _read_mappings(options["mappings"])
        scan = None
        if isinstance(mappings, Problem):
            problems = [mappings]
        else:
            scan = _current_scan(datastore, uri, self.stderr, actor=actor)
            problems = mappings_validate(
                mappings=mappings, index=prefix_index(scan=scan, datastore=datastore)
            )
        _print_problems(self, problems, as_json=options["json"])
        failed = any(p.severity == "error" for p in problems)
        if (
            options["predict"]
            and scan is not None
            and not isinstance(mappings, Problem)
        ):
            result = prediction.series_predict(
                scan=scan, datastore=datastore, mappings=mappings
            )
            _print_prediction(
                self, result, datastore, as_json=options["json"], failed=failed
            )
        if failed:
            sys.exit(1)

    def _submit(self, options: dict[str, Any]) -> None:
        actor = _actor(options.get("user"))
        datastore = _datastore(options["datastore"])
        uri = _input_uri(datastore, options.get("input"))
        given = options.get("mappings") is not None
        mappings = _read_mappings(options["mappings"]) if given else []
        checked, scan = self._check(datastore, uri, mappings, actor=actor)
        problems = _option_problems(options) + checked
        if not given:
            problems = [p for p in problems if p.code not in PLAIN_IMPORT_CODES]
        _print_problems(self, problems, as_json=False, summary=False)
        if isinstance(mappings, Problem) or any(
            p.severity == "error" for p in problems
        ):
            raise CommandError(
                "The job was not submitted: fix the errors above.", returncode=1
            )
        warnings = len(problems)
        if warnings and not options["accept_warnings"]:
            raise CommandError(
                f"The job was not submitted: the validation gave {warnings} "
                f"warning{'s' if warnings != 1 else ''} (above). Run again with "
                "--accept-warnings to submit it anyway.",
                returncode=1,
            )
        request = jobrequest.job_request_build(
            datastore=datastore,
            input_s3_uri=uri,
            output_s3_uri=options.get("output"),
            job_name=options.get("name") or "",
            mappings=mappings,
        )
        # As the confirmation page does: what the import will do to each series, kept with the job so that its
        # verification can say whether it came true. It never refuses (a CLI user accepts by submitting).
        assert scan is not None  # the mappings were read, so the prefix was scanned
        predicted = prediction.series_predict(
            scan=scan, datastore=datastore, mappings=mappings
        )
        for line in prediction.prediction_table(
            predicted, datastore_name=datastore.name
        )[:1]:
            self.stdout.write(line)
        if predicted.non_primary:
            self.stderr.write(
                f"Warning: {predicted.non_primary} series would make non-primary image sets; "
                "import_job validate --predict names the differing attributes."
            )
        key = options["idempotency_key"] or f"cli-{uuid.uuid4()}"
        # A key used before answers with its own job (job_create), which is no duplicate of itself.
        repeated = ImportJob.objects.filter(idempotency_key=key).exists()
        earlier = (
            None
            if repeated
            else duplicates.job_same_request(datastore=datastore, request=request)
        )
        if earlier is not None:
            self.stderr.write(f"Warning: {duplicates.same_request_refusal(earlier)}")
            if not options["allow_duplicate"]:
                raise CommandError(
                    "The job was not submitted: run again with --allow-duplicate to import it again.",
                    returncode=1,
                )
        try:
            job = jobs.job_create(
                actor=actor,
                draft=None,
                datastore=datastore,
                request=request,
                idempotency_key=key,
                import_again=options["allow_duplicate"],
                prediction=prediction.prediction_for_job(predicted),
            )
        except duplicates.SameRequest as same:
            # Another submission of this request landed in between.
            raise CommandError(
                f"The job was not submitted: {same} Run again with --allow-duplicate to import it again.",
                returncode=1,
            ) from None
        self.stdout.write(
            f"Import job {job.pk} into “{datastore.name}”: {job.display_status.lower()}; "
            f"follow it with: python manage.py import_job status {job.pk} --wait"
        )
        self.stdout.write(str(job.pk))

    def _check(
        self,
        datastore: Datastore,
        uri: str,
        mappings: list[Mapping] | Problem,
        *,
        actor: AbstractBaseUser,
    ) -> tuple[list[Problem], Scan | None]:
        """The composer's validation of these mappings against the prefix (scanned first if needed), and the scan."""
        if isinstance(mappings, Problem):
            return [mappings], None
        scan = _current_scan(datastore, uri, self.stderr, actor=actor)
        return mappings_validate(
            mappings=mappings, index=prefix_index(scan=scan, datastore=datastore)
        ), scan

    # --- corrections ------------------------------------------------------------------------

    def _corrections(self, options: dict[str, Any]) -> None:
        datastore = _datastore(options["datastore"])
        uri = _input_uri(datastore, options.get("input"))
        if options["write"] != (options["mappings_out"] is not None):
            raise CommandError(
                "--write and --mappings-out go together: --write writes the files and the mappings CSV "
                "named by --mappings-out.",
                returncode=1,
            )
        path: Path = options["sheet"]
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CommandError(
                f"--sheet: {path} cannot be read: {error.strerror}.", returncode=1
            ) from error
        try:
            parsed = sheet.sheet_read(data)
        except sheet.SheetRefused as refused:
            for problem in refused.problems:
                self.stdout.write(
                    json.dumps(report.refusal_json(problem))
                    if options["json"]
                    else f"error: {problem.message} [{problem.code}]"
                )
            sys.exit(1)
        scan = _current_scan(
            datastore, uri, self.stderr, actor=lambda: _scan_actor(datastore, uri)
        )
        results = matching.corrections_match(scan=scan, sheet=parsed)
        for result in results:
            if options["json"]:
                self.stdout.write(json.dumps(report.row_json(result)))
            else:
                for line in report.row_lines(result):
                    self.stdout.write(line)
        failed = any(r.status == "error" for r in results)
        if not options["json"] and not (options["write"] and not failed):
            self.stdout.write(report.summary_line(results))
        self.stdout.flush()
        if options["write"] and not failed:
            self._corrections_write(options, scan, parsed, results)
        if failed:
            sys.exit(1)

    def _corrections_write(
        self,
        options: dict[str, Any],
        scan: Scan,
        parsed: sheet.Sheet,
        results: list[matching.RowResult],
    ) -> None:
        actor = _write_actor()
        out: Path = options["mappings_out"]
        existed = out.exists()
        try:
            # Opened (not truncated) before anything goes to S3: an unwritable path refuses while nothing is written.
            stream = out.open("a", encoding="utf-8", newline="")
        except OSError as error:
            raise CommandError(
                f"--mappings-out: {out} cannot be written: {error.strerror}. Nothing was written.",
                returncode=1,
            ) from error
        with stream:
            try:
                done = write.corrections_write(
                    scan=scan, sheet=parsed, results=results, actor=actor
                )
            except (write.WriteRefused, write.WriteFailed) as refused:
                stream.close()
                if not existed:
                    out.unlink(missing_ok=True)
                self.stderr.write(str(refused))
                sys.exit(1)
            stream.seek(0)
            stream.truncate()
            stream.write(mappings_csv_text(done.mappings))
        if options["json"]:
            self.stdout.write(json.dumps(report.written_json(done, str(out))))
        else:
            self.stdout.write(report.written_line(done, str(out)))

    # --- status -----------------------------------------------------------------------------

    def _status(self, options: dict[str, Any]) -> None:
        job = (
            ImportJob.objects.select_related("datastore")
            .filter(pk=options["id"])
            .first()
        )
        if job is None:
            raise CommandError(f"There is no import job {options['id']}.", returncode=1)
        # --wait returns once the job has ended, its results are read and its verification is no longer pending.
        while options["wait"] and verification.verification_pending(job):
            time.sleep(options["interval"])
            job.refresh_from_db()
        self._print_status(job, as_json=options["json"])
        if options["wait"]:
            self.stdout.flush()
            sys.exit(status_exit_code(job))

    def _print_status(self, job: ImportJob, *, as_json: bool) -> None:
        if as_json:
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
        if job.prediction:
            predicted = summary["prediction"]
            confirmed = {
                True: "confirmed",
                False: "NOT confirmed",
                None: "not compared yet",
            }
            self.stdout.write(
                f"  prediction  {predicted['new']} new, {predicted['adds_to']} added to, "
                f"{predicted['non_primary']} non-primary: {confirmed[predicted['confirmed']]}"
            )
        self.stdout.write(f"  {verification.verification_sentence(job)}")
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


def status_exit_code(job: ImportJob) -> int:
    """`status --wait`'s exit code (STATUS_EXIT_CODES): 0 only when the job completed and its results,
    read, name no failed file. Results that could not be read prove nothing, so they give 1."""
    clean = (
        job.status == ImportJob.Status.COMPLETED
        and job.results == ImportJob.Results.DONE
        and not job.completed_with_errors
    )
    return 0 if clean else 1


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
        "prediction": verification.prediction_summary(job),
        "verification": verification.verification_summary(job),
    }
