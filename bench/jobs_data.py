"""The job benchmark's world: a job history and its result rows, made fast; ndjson result files for localaws.

Import after django.setup(). Result rows are made by the database itself (one INSERT ... SELECT per job over
generate_series on PostgreSQL, a recursive CTE on SQLite), so a million rows take seconds, not minutes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from imports.models import Datastore, ImportJob, ImportJobResult

JOB_BATCH = 2_000
RESULTS_PER_FILLER_JOB = 10_000
ENDED_STATUSES = (
    ImportJob.Status.COMPLETED,
    ImportJob.Status.COMPLETED,
    ImportJob.Status.COMPLETED,
    ImportJob.Status.FAILED,
    ImportJob.Status.SUBMIT_FAILED,
)


@dataclass(frozen=True)
class History:
    jobs: int
    results: int
    export_large: int  # a job holding --export-rows result rows
    export_small: int  # a job holding a tenth of them
    export_rows: int


def _request(datastore: Datastore, number: int) -> dict[str, object]:
    return {
        "datastoreId": datastore.datastore_id,
        "dataAccessRoleArn": datastore.role_arn,
        "inputS3Uri": datastore.input_s3_uri,
        "outputS3Uri": datastore.output_s3_uri,
        "jobName": f"bench-{number}",
    }


def history_create(
    *, datastore: Datastore, jobs: int, results: int, export_rows: int
) -> History:
    """`jobs` ended jobs (their age spread over a year) and `results` result rows among them.

    Two of the jobs carry the export's rows (`export_rows` and a tenth of it); the rest of the rows go
    to other completed jobs, RESULTS_PER_FILLER_JOB each. Ended jobs only: the poller never asks AWS
    about them, so the AWS call count stays the benchmark's running jobs alone.
    """
    now = timezone.now()
    made = 0
    while made < jobs:
        batch = []
        for number in range(made, min(jobs, made + JOB_BATCH)):
            status = ENDED_STATUSES[number % len(ENDED_STATUSES)]
            created = now - timedelta(minutes=53 * (jobs - number))
            at_aws = status != ImportJob.Status.SUBMIT_FAILED
            batch.append(
                ImportJob(
                    datastore=datastore,
                    request=_request(datastore, number),
                    job_name=f"bench-{number}",
                    input_s3_uri=datastore.input_s3_uri,
                    status=status,
                    aws_job_id=f"{number:032x}" if at_aws else "",
                    submitted_at=created if at_aws else None,
                    started_at=created if at_aws else None,
                    ended_at=created + timedelta(minutes=20),
                    results=ImportJob.Results.DONE
                    if at_aws
                    else ImportJob.Results.NONE,
                    error_code="" if at_aws else "ValidationException",
                )
            )
        ImportJob.objects.bulk_create(batch)
        made += len(batch)
    completed = list(
        ImportJob.objects.filter(
            datastore=datastore, status=ImportJob.Status.COMPLETED
        ).values_list("pk", flat=True)
    )
    small_rows = max(1, export_rows // 10)
    plan = [(completed[0], export_rows), (completed[1], small_rows)]
    left = results - export_rows - small_rows
    for pk in completed[2:]:
        if left <= 0:
            break
        plan.append((pk, min(RESULTS_PER_FILLER_JOB, left)))
        left -= RESULTS_PER_FILLER_JOB
    for pk, count in plan:
        with transaction.atomic():
            _results_insert(job_id=pk, count=count)
            failures = count // 10
            ImportJob.objects.filter(pk=pk).update(
                success_count=count - failures, failure_count=failures
            )
    return History(
        jobs=ImportJob.objects.filter(datastore=datastore).count(),
        results=ImportJobResult.objects.count(),
        export_large=completed[0],
        export_small=completed[1],
        export_rows=export_rows,
    )


def _results_insert(*, job_id: int, count: int) -> None:
    """`count` result rows for one job in one statement: every tenth a failure, the others imported."""
    table = ImportJobResult._meta.db_table
    if connection.vendor == "postgresql":
        numbers = "generate_series(1, %s) AS seq(n)"
        prefix = ""
        image_set = "lpad(to_hex(n / 50), 32, '0')"
    else:
        numbers = "seq"
        prefix = "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s) "
        image_set = "printf('%%032x', n / 50)"
    sql = (
        f"{prefix}INSERT INTO {table} (job_id, outcome, line, input_file, image_set_id, "
        "image_set_version, is_primary, exception_type, message) "
        "SELECT %s, "
        "CASE WHEN n %% 10 = 0 THEN 'failure' ELSE 'success' END, n, "
        "'incoming/study-' || (n / 200) || '/series-' || (n / 50) || '/' || n || '.dcm', "
        f"CASE WHEN n %% 10 = 0 THEN '' ELSE {image_set} END, "
        "CASE WHEN n %% 10 = 0 THEN NULL ELSE 1 END, "
        "CASE WHEN n %% 10 = 0 THEN NULL ELSE (n %% 500 <> 1) END, "
        "CASE WHEN n %% 10 = 0 THEN 'ValidationException' ELSE '' END, "
        "CASE WHEN n %% 10 = 0 THEN 'DICOM attribute TransferSyntaxUID does not exist' ELSE '' END "
        f"FROM {numbers}"
    )
    # The CTE's bound comes before the job id in the statement, generate_series' after it.
    params = [count, job_id] if prefix else [job_id, count]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def ndjson_lines(count: int) -> Iterator[bytes]:
    """success.ndjson lines as HealthImaging writes them (one image set per 50 files, a few non-primary)."""
    for n in range(1, count + 1):
        yield (
            json.dumps(
                {
                    "inputFile": f"incoming/study-{n // 200}/series-{n // 50}/{n}.dcm",
                    "importResponse": {
                        "imageSetId": f"{n // 50:032x}",
                        "imageSetVersion": 1,
                        "isPrimary": n % 500 != 1,
                    },
                }
            ).encode()
            + b"\n"
        )


def manifest(lines: int) -> bytes:
    return json.dumps(
        {
            "jobSummary": {
                "numberOfScannedFiles": lines,
                "numberOfImportedFiles": lines,
                "numberOfFilesWithCustomerError": 0,
                "numberOfFilesWithServerError": 0,
                "numberOfGeneratedImageSets": lines // 50 + 1,
                "imageSetsSummary": [],
            }
        }
    ).encode()
