"""Benchmark of a draft's prediction (issue 18, "Performance"): 1,000 series in < 30 s with 20 ms of latency.

    python -m bench.prediction_bench [--series 1000] [--latency-ms 20] [--database-url postgres://…]

Builds what the verification bench builds (bench/verification_bench.py: one instance a series here, four series a
study, a series file each), imports it with one real job so that every series has a primary image
set, then predicts the same mappings again, as the confirmation page would for a second import of the prefix, with
`--latency-ms` on every HealthImaging call (localaws's fault API). It measures `prediction.series_predict` once
with one lookup at a time and once with PREDICTION_CONCURRENCY lookups, side by side: time, SearchImageSets and
GetImageSetMetadata calls, the highest rate of calls in any one second, and the outcomes. A measurement, not a test:
it prints a Markdown table and exits 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from datetime import datetime

from bench.verification_bench import BUCKET, PREFIX, REGION, setup_django, upload

TARGET_S = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)

    from localaws.server import LocalAWS

    server = LocalAWS(
        max_files_per_job=args.series * 4,
        job_submitted_delay_s=0.2,
        job_in_progress_delay_s=0.2,
    ).start()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
    setup_django(args.database_url)

    from django.conf import settings
    from django.db import connection

    from imports.drafts import prediction
    from imports.jobs import request as jobrequest
    from imports.jobs import submit as jobs
    from imports.jobs import tracking as jobtracking
    from imports.mappings.rules import Mapping
    from imports.models import Datastore
    from imports.models.datastores import MAX_START_JOBS_PER_SECOND
    from imports.scanning import control, run
    from localaws.testing import LocalAWSHandle

    handle = LocalAWSHandle(server)
    series = upload(args.series, 1)
    scan, _ = control.scan_start(
        actor=None, bucket=BUCKET, prefix=PREFIX, region=REGION, enqueue=False
    )
    run.scan_run(scan_id=scan.pk)
    datastore = Datastore.objects.create(
        name="Prediction bench",
        region=REGION,
        datastore_id=handle.create_datastore(),
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri=f"s3://{BUCKET}/{PREFIX}",
        output_s3_uri=f"s3://{BUCKET}-out/results/",
        start_jobs_per_second=MAX_START_JOBS_PER_SECOND,
    )
    # A series file each (one job takes at most 1,000 mappings, so the study files stay out).
    mappings = [Mapping(study, uid, f"metadata/{uid}.json") for study, uid in series]
    job = jobs.job_create(
        actor=None,
        draft=None,
        datastore=datastore,
        request=jobrequest.job_request_build(datastore=datastore, mappings=mappings),
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

    image_sets_made = len(handle.image_sets(datastore.datastore_id))
    if job.status != "completed" or image_sets_made < len(series):
        print(
            f"The import that makes the image sets did not complete ({job.status}: {job.message}); "
            "the figures below would measure new series only.",
            file=sys.stderr,
        )
        server.stop()
        return 1
    handle.add_fault(service="medical-imaging", latency_ms=args.latency_ms)
    rows = []
    for concurrency in (1, settings.PREDICTION_CONCURRENCY):
        settings.PREDICTION_CONCURRENCY = concurrency
        handle.clear_calls()
        wall = time.time()
        started = time.perf_counter()
        result = prediction.series_predict(
            scan=scan, datastore=datastore, mappings=mappings
        )
        took = time.perf_counter() - started
        calls = handle.calls("medical-imaging")
        per_second = Counter(
            int(datetime.fromisoformat(call["time"]).timestamp() - wall)
            for call in calls
        )
        rows.append(
            (
                concurrency,
                took,
                sum(1 for c in calls if c.get("operation") == "SearchImageSets"),
                sum(1 for c in calls if c.get("operation") == "GetImageSetMetadata"),
                max(per_second.values(), default=0),
                f"{result.new} new, {result.adds_to} adds to, {result.non_primary} non-primary, "
                f"{result.unpredicted} not predicted",
            )
        )
    server.stop()
    print(
        f"\n{len(series):,} series in {len({s for s, _ in series}):,} studies, each with a primary image set; "
        f"{args.latency_ms:g} ms on every HealthImaging call; {connection.vendor}; "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print(
        "| Lookups at a time | Prediction | SearchImageSets | GetImageSetMetadata | Most calls in one second | Outcomes |"
    )
    print("|---:|---:|---:|---:|---:|---|")
    for concurrency, took, searches, reads, peak, outcomes in rows:
        print(
            f"| {concurrency} | {took:,.1f} s | {searches:,} | {reads:,} | {peak:,} | {outcomes} |"
        )
    best = rows[-1][1]
    verdict = "met" if best < TARGET_S else "missed"
    print(f"\nPrediction in {best:,.1f} s, target < {TARGET_S:g} s: {verdict}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
