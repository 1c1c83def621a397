"""Benchmark of a campaign run through localaws (issue 21, "Performance"): 50 jobs submitted at the limiter's rate,
none twice.

    python -m bench.campaign_jobs_bench [--jobs 50] [--files-per-job 10] [--rate 1] [--database-url postgres://…]

Starts localaws in this process and uses a throwaway SQLite database under var/bench/ unless `--database-url` names
another (flushed first). It uploads `--jobs` folders of `--files-per-job` small DICOM instances, scans the prefix,
plans a campaign at `--files-per-job` files a job (one job a folder), starts it and drives it in this process as
the workers would: the campaign's advance (beat's task), each job's submission through the shared limiter at the
datastore's `--rate` StartDICOMImportJob calls a second, the poller and the results reader, until the campaign
ends. It prints what localaws saw (StartDICOMImportJob calls, their rate, the most in any one second, the jobs
AWS holds) beside the campaign's own accounting, and exits 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
BUCKET = "campaign-bench"
PREFIX = "archive/"
REGION = "us-east-1"


def setup_django(database_url: str | None) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    db = BENCH_DIR / "campaign-jobs.sqlite3"
    db.unlink(missing_ok=True)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "localaws",
            "AWS_SECRET_ACCESS_KEY": "localaws",
            "AWS_DEFAULT_REGION": REGION,
            # Assigned, not defaulted: an exported DATABASE_URL must never send the benchmark to a real database.
            "DATABASE_URL": database_url or f"sqlite:///{db}",
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "CELERY_FILESYSTEM_DIR": str(BENCH_DIR / "celery-campaign"),
            "JOBS_POLL_FIRST_S": "0",
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    if database_url:
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)


def upload(jobs: int, per_job: int) -> None:
    from imports.aws import client as aws
    from localaws.testing import dicom_bytes

    aws.s3_client(REGION).create_bucket(Bucket=BUCKET)
    aws.s3_client(REGION).create_bucket(Bucket=BUCKET + "-out")

    def put(folder: int) -> None:
        study = f"2.25.{9000 + folder}"
        for n in range(per_job):
            aws.s3_put_object(
                region=REGION,
                bucket=BUCKET,
                key=f"{PREFIX}f{folder:03d}/{n}.dcm",
                body=dicom_bytes(
                    study=study,
                    series=f"{study}.1",
                    sop=f"{study}.1.{n}",
                    InstanceNumber=n,
                ),
                content_type="application/dicom",
            )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(jobs)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--files-per-job", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)

    from localaws.server import LocalAWS

    server = LocalAWS(job_submitted_delay_s=0.2, job_in_progress_delay_s=0.5).start()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
    setup_django(args.database_url)

    from django.db import connection

    from imports.campaigns import accounting, services
    from imports.jobs import results as jobresults
    from imports.jobs import submit as jobsubmit
    from imports.jobs import tracking as jobtracking
    from imports.models import Campaign, Datastore, ImportJob
    from imports.scanning import control, run
    from localaws.testing import LocalAWSHandle

    handle = LocalAWSHandle(server)
    upload(args.jobs, args.files_per_job)
    scan, _ = control.scan_start(
        actor=None, bucket=BUCKET, prefix=PREFIX, region=REGION, enqueue=False
    )
    run.scan_run(scan_id=scan.pk)
    datastore = Datastore.objects.create(
        name="Campaign bench",
        region=REGION,
        datastore_id=handle.create_datastore(),
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri=f"s3://{BUCKET}/{PREFIX}",
        output_s3_uri=f"s3://{BUCKET}-out/results/",
        start_jobs_per_second=args.rate,
    )
    planned = services.campaign_plan(
        actor=None,
        datastore=datastore,
        inputs=[f"s3://{BUCKET}/{PREFIX}"],
        max_files=args.files_per_job,
    )
    campaign = planned.campaign
    services.campaign_start(actor=None, campaign_id=campaign.pk)
    handle.clear_calls()
    started = time.perf_counter()
    wall = time.time()
    deadline = time.monotonic() + max(600.0, 3 * args.jobs / args.rate)
    while time.monotonic() < deadline:
        accounting.campaign_advance(campaign_id=campaign.pk)
        for pk in ImportJob.objects.filter(status=ImportJob.Status.PENDING).values_list(
            "pk", flat=True
        ):
            while (retry := jobsubmit.job_submit(job_id=pk)) is not None:
                time.sleep(retry)
        jobtracking.jobs_poll()
        for pk in ImportJob.objects.filter(
            status__in=ImportJob.ENDED,
            results__in=(ImportJob.Results.NONE, ImportJob.Results.PENDING),
        ).values_list("pk", flat=True):
            jobresults.job_ingest_results(job_id=pk)
        campaign.refresh_from_db()
        if campaign.ended_at is not None:
            break
        time.sleep(0.2)
    took = time.perf_counter() - started
    starts = handle.calls("medical-imaging", "StartDICOMImportJob")
    accepted = [c for c in starts if c["status"] == 200]
    seconds = [datetime.fromisoformat(c["time"]).timestamp() - wall for c in accepted]
    per_second = Counter(int(s) for s in seconds)
    span = (max(seconds) - min(seconds)) if len(seconds) > 1 else 0.0
    aws_jobs = handle.hi_client().get_paginator("list_dicom_import_jobs")
    aws_jobs = [
        j
        for page in aws_jobs.paginate(datastoreId=datastore.datastore_id)
        for j in page["jobSummaries"]
    ]
    counts = accounting.campaign_counts(campaign=campaign)
    keys = list(ImportJob.objects.values_list("idempotency_key", flat=True))
    server.stop()

    print(
        f"\n{args.jobs} folders of {args.files_per_job} instances planned at {args.files_per_job} files a job; "
        f"limiter {args.rate:g} StartDICOMImportJob/s; {connection.vendor}; Python {platform.python_version()} "
        f"on {platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print("| Measure | Value | Target |")
    print("|---|---:|---:|")
    print(f"| Jobs planned | {planned.plan.jobs.__len__():,} | {args.jobs:,} |")
    print(f"| Campaign | {campaign.get_state_display()} in {took:,.1f} s | Completed |")
    print(
        f"| StartDICOMImportJob answered / refused | {len(accepted):,} / {len(starts) - len(accepted):,} | "
        f"{args.jobs:,} / 0 |"
    )
    print(f"| Jobs HealthImaging holds | {len(aws_jobs):,} | {args.jobs:,} |")
    print(
        f"| Dashboard jobs, distinct idempotency keys | {len(keys):,}, {len(set(keys)):,} | {args.jobs:,}, "
        f"{args.jobs:,} |"
    )
    rate = (len(accepted) - 1) / span if span else 0.0
    print(
        f"| Submission rate (first to last call) | {rate:,.2f}/s | ≤ {args.rate:g}/s |"
    )
    print(
        f"| Most calls in one second | {max(per_second.values(), default=0)} | "
        f"≤ {max(1, round(args.rate))} (+ burst) |"
    )
    print(
        f"| Objects imported / failed / skipped / not imported / unaccounted | {counts['imported']:,} / "
        f"{counts['failed']:,} / {counts['skipped']:,} / {counts['not_imported']:,} / {counts['unaccounted']:,} | "
        f"all imported, 0 unaccounted |"
    )
    once = len(accepted) == len(aws_jobs) == len(set(keys)) == args.jobs
    print(
        f"\n{'No job submitted twice' if once else 'A job count differs'}; campaign "
        f"{'completed' if campaign.state == Campaign.State.COMPLETED else campaign.state}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
