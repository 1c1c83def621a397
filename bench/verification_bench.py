"""Benchmark of a job's verification (issue 18, "Performance"): the image sets of a 5,000-file job, in < 60 s.

    python -m bench.verification_bench [--files 5000] [--per-series 50] [--latency-ms 20] [--database-url postgres://…]

Starts localaws in this process on a free port and uses a throwaway SQLite database, var/bench/verification.sqlite3,
unless `--database-url` names another (flushed first). It uploads `--files` small DICOM instances, `--per-series` a
series and four series a study, with one study file (StudyDescription, AccessionNumber) per study and one series
file (SeriesDescription, SeriesNumber) per series, scans the prefix, submits a job with those mappings through the
dashboard's services, polls it to its end and reads its results. Then, with `--latency-ms` on every HealthImaging
call (localaws's fault API), it measures `verification.job_verify`: time, GetImageSetMetadata calls, the image sets
and attributes checked. It prints a Markdown table and exits 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
BUCKET = "verification-bench"
PREFIX = "incoming/"
REGION = "us-east-1"
TARGET_S = 60.0
SERIES_A_STUDY = 4


def setup_django(database_url: str | None) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    db = BENCH_DIR / "verification.sqlite3"
    db.unlink(missing_ok=True)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "localaws",
            "AWS_SECRET_ACCESS_KEY": "localaws",
            "AWS_DEFAULT_REGION": REGION,
            # Assigned, not defaulted: an exported DATABASE_URL must never send the benchmark to a real database.
            "DATABASE_URL": database_url or f"sqlite:///{db}",
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "CELERY_FILESYSTEM_DIR": str(BENCH_DIR / "celery"),
            "JOBS_POLL_FIRST_S": "0",
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    if database_url:
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)


def upload(files: int, per_series: int) -> list[tuple[str, str]]:
    """The instances and the metadata files; returns the (study, series) of every series."""
    from imports.aws import client as aws
    from localaws.testing import dicom_bytes

    aws.s3_client(REGION).create_bucket(Bucket=BUCKET)
    aws.s3_client(REGION).create_bucket(Bucket=BUCKET + "-out")
    count = max(1, files // per_series)
    series = [
        (f"2.25.{7000 + n // SERIES_A_STUDY}", f"2.25.{7000 + n // SERIES_A_STUDY}.{n % SERIES_A_STUDY + 1}")
        for n in range(count)
    ]  # fmt: skip

    def put(key: str, body: bytes, kind: str) -> None:
        aws.s3_put_object(
            region=REGION, bucket=BUCKET, key=PREFIX + key, body=body, content_type=kind
        )

    def put_series(index: int) -> None:
        study, uid = series[index]
        for instance in range(1, per_series + 1):
            put(
                f"{uid}/{instance}.dcm",
                dicom_bytes(
                    study=study,
                    series=uid,
                    sop=f"{uid}.{instance}",
                    InstanceNumber=instance,
                    SeriesNumber=index % SERIES_A_STUDY + 1,
                    PatientID=f"PAT{index // SERIES_A_STUDY:05d}",
                    StudyDescription="CT HEAD",
                ),
                "application/dicom",
            )
        document = {
            "0008103E": {"vr": "LO", "Value": [f"SERIES {index} CORRECTED"]},
            "00200011": {"vr": "IS", "Value": [index % SERIES_A_STUDY + 1]},
        }
        put(f"metadata/{uid}.json", json.dumps(document).encode(), "application/json")
        if index % SERIES_A_STUDY == 0:
            study_document = {
                "00081030": {"vr": "LO", "Value": ["CT HEAD W/O CONTRAST"]},
                "00080050": {"vr": "SH", "Value": [f"ACC{index:07d}"]},
            }
            put(
                f"metadata/{study}.json",
                json.dumps(study_document).encode(),
                "application/json",
            )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put_series, range(len(series))))
    return series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--per-series", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)

    from localaws.server import LocalAWS

    server = LocalAWS(
        max_files_per_job=args.files * 2,
        job_submitted_delay_s=0.2,
        job_in_progress_delay_s=0.2,
    ).start()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
    setup_django(args.database_url)

    from django.db import connection

    from imports.jobs import request as jobrequest
    from imports.jobs import results as jobresults
    from imports.jobs import submit as jobs
    from imports.jobs import tracking as jobtracking
    from imports.jobs import verification
    from imports.mappings.rules import Mapping
    from imports.models import Datastore, ImportJob
    from imports.models.datastores import MAX_START_JOBS_PER_SECOND
    from imports.scanning import control, run
    from localaws.testing import LocalAWSHandle

    handle = LocalAWSHandle(server)
    series = upload(args.files, args.per_series)
    scan, _ = control.scan_start(
        actor=None, bucket=BUCKET, prefix=PREFIX, region=REGION, enqueue=False
    )
    run.scan_run(scan_id=scan.pk)
    datastore = Datastore.objects.create(
        name="Verification bench",
        region=REGION,
        datastore_id=handle.create_datastore(),
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri=f"s3://{BUCKET}/{PREFIX}",
        output_s3_uri=f"s3://{BUCKET}-out/results/",
        start_jobs_per_second=MAX_START_JOBS_PER_SECOND,
    )
    mappings = [
        Mapping(study, "", f"metadata/{study}.json")
        for study in sorted({s for s, _ in series})
    ]
    mappings += [Mapping(study, uid, f"metadata/{uid}.json") for study, uid in series]
    request = jobrequest.job_request_build(datastore=datastore, mappings=mappings)
    job = jobs.job_create(
        actor=None,
        draft=None,
        datastore=datastore,
        request=request,
        idempotency_key="bench",
    )
    jobs.job_submit(job_id=job.pk)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        jobtracking.jobs_poll()
        job.refresh_from_db()
        if job.has_ended:
            break
        time.sleep(0.5)
    while jobresults.job_ingest_results(job_id=job.pk) is not None:
        time.sleep(1)
    job.refresh_from_db()

    handle.add_fault(service="medical-imaging", latency_ms=args.latency_ms)
    handle.clear_calls()
    started = time.perf_counter()
    while (retry := verification.job_verify(job_id=job.pk)) is not None:
        time.sleep(retry)
    took = time.perf_counter() - started
    job.refresh_from_db()
    calls = handle.calls("medical-imaging", "GetImageSetMetadata")
    server.stop()
    detail = job.verification_detail
    print(
        f"\n{job.success_count + job.warning_count:,} files imported ({job.failure_count:,} failed) in "
        f"{len(series):,} series, {len(mappings):,} mappings; {args.latency_ms:g} ms on every HealthImaging call; "
        f"{connection.vendor}; Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print("| Measure | Value | Target |")
    print("|---|---:|---:|")
    print(
        f"| Verification of the job's image sets | {took:,.1f} s | < {TARGET_S:g} s |"
    )
    print(f"| GetImageSetMetadata calls | {len(calls):,} | one an image set |")
    print(f"| Image sets checked | {detail.get('image_sets', 0):,} | |")
    print(f"| Attributes checked | {detail.get('attributes_checked', 0):,} | |")
    print(
        f"| State | {job.verification} ({len(detail.get('mismatches', [])):,} mismatches) | verified |"
    )
    verdict = (
        "met"
        if took < TARGET_S and job.verification == ImportJob.Verification.VERIFIED
        else "missed"
    )
    print(f"\nVerification in {took:,.1f} s, target < {TARGET_S:g} s: {verdict}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
