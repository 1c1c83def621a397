"""Benchmark of the composer (issue 7, "Performance"): 1,000 series, 1,000 metadata files, 1,000 mappings.

    python -m bench.composer_bench [--series 1000] [--repeat 7] [--database-url postgres://…]

Starts localaws in this process on a free port and uses a throwaway SQLite database under var/bench/ unless
`--database-url` names another (the PostgreSQL of CI, say: its own database, recreated). It uploads one small
DICOM instance per series (four series a study) and one series-level DICOM JSON file per series, scans the
prefix, then measures, server side (no browser):
- loading a 1,000-row mappings CSV into a draft (`drafts.draft_import_csv`);
- validating the 1,000 mappings (`drafts.draft_validate`), and the GETs it costs (counted at localaws);
- the composer page (`GET /drafts/<id>/` through Django's test client) with its query count, for 10 and for
  1,000 mappings, so that a count growing with the rows shows.
It prints a Markdown table and exits 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
BUCKET = "composer-bench"
PREFIX = "incoming/"
REGION = "us-east-1"
TARGETS_MS = {"csv": 2000.0, "validate": 2000.0, "composer": 300.0}


def setup_django(database_url: str | None) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    db = BENCH_DIR / "composer.sqlite3"
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
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [
        *settings.ALLOWED_HOSTS,
        "testserver",
    ]  # Django's test client
    if database_url:
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)


def upload(series_count: int) -> list[tuple[str, str]]:
    """One instance per series, four series a study, and a series-level JSON file each. Returns (study, series)."""
    from imports.aws import client as aws
    from localaws.testing import dicom_bytes

    aws.s3_client(REGION).create_bucket(Bucket=BUCKET)
    pairs = [
        (f"2.25.{1000 + n // 4}", f"2.25.{1000 + n // 4}.{n % 4 + 1}")
        for n in range(series_count)
    ]

    def put(pair: tuple[str, str]) -> None:
        study, series = pair
        aws.s3_put_object(
            region=REGION,
            bucket=BUCKET,
            key=f"{PREFIX}dicom/{series}/1.dcm",
            body=dicom_bytes(study=study, series=series, sop=f"{series}.1"),
            content_type="application/dicom",
        )
        document = {
            "0020000E": {"vr": "UI", "Value": [series]},
            "0008103E": {"vr": "LO", "Value": [f"SERIES {series}"]},
        }
        aws.s3_put_object(
            region=REGION,
            bucket=BUCKET,
            key=f"{PREFIX}metadata/{series}.json",
            body=json.dumps(document).encode(),
            content_type="application/json",
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, pairs))
    return pairs


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return times, result


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)

    from localaws.server import LocalAWS

    server = LocalAWS().start()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
    setup_django(args.database_url)

    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from imports.drafts import services as drafts
    from imports.models import Datastore, DraftMapping, ImportDraft
    from imports.roles import OPERATOR
    from imports.scanning import control, run

    pairs = upload(args.series)
    scan, _ = control.scan_start(
        actor=None, bucket=BUCKET, prefix=PREFIX, region=REGION, enqueue=False
    )
    run.scan_run(scan_id=scan.pk)
    datastore = Datastore.objects.create(
        name="Bench",
        region=REGION,
        datastore_id="0123456789abcdef0123456789abcdef",
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri=f"s3://{BUCKET}/{PREFIX}",
        output_s3_uri="s3://composer-bench-out/results/",
    )
    user = User.objects.create_user("bench", password="bench-only")
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.get(name=OPERATOR))
    csv_body = (
        "studyInstanceUID,seriesInstanceUID,metadataFilePath\n"
        + "".join(
            f"{study},{series},metadata/{series}.json\n" for study, series in pairs
        )
    ).encode()

    def fresh_draft() -> ImportDraft:
        return drafts.draft_start(
            actor=user,
            datastore=datastore,
            input_s3_uri=datastore.input_s3_uri,
            output_s3_uri=datastore.output_s3_uri,
        )

    csv_times = []
    for _ in range(args.repeat):
        draft = fresh_draft()
        start = time.perf_counter()
        drafts.draft_import_csv(draft=draft, actor=user, version=1, data=csv_body)
        csv_times.append((time.perf_counter() - start) * 1000)
    draft.refresh_from_db()
    mapped = DraftMapping.objects.filter(draft=draft).count()

    server.calls.clear()
    validate_times, problems = timed(
        lambda: drafts.draft_validate(draft=draft), args.repeat
    )
    gets = sum(1 for c in server.calls.list() if c["operation"] == "GetObject")

    client = Client()
    client.force_login(user)

    def composer(target: ImportDraft) -> tuple[list[float], int, int]:
        url = reverse("imports:draft_detail", args=[target.pk])
        client.get(url)  # warm caches and templates
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        return times, len(queries), len(response.content)

    small = fresh_draft()
    drafts.draft_import_csv(
        draft=small,
        actor=user,
        version=1,
        data=b"\n".join(csv_body.split(b"\n")[:11]) + b"\n",
    )
    small_times, small_queries, _ = composer(small)
    large_times, large_queries, large_bytes = composer(draft)
    if os.environ.get("COMPOSER_BENCH_PROFILE"):
        import cProfile

        cProfile.runctx(
            "client.get(reverse('imports:draft_detail', args=[draft.pk]))",
            globals(),
            locals(),
            sort="tottime",
        )
    server.stop()

    rows = [
        ("Load a 1,000-row CSV into a draft", csv_times, TARGETS_MS["csv"], ""),
        (f"Validate {mapped:,} mappings", validate_times, TARGETS_MS["validate"],
         f"{gets} GET, {len(problems)} problems"),
        ("Composer page, 10 mappings", small_times, TARGETS_MS["composer"], f"{small_queries} queries"),
        (f"Composer page, {mapped:,} mappings", large_times, TARGETS_MS["composer"],
         f"{large_queries} queries, {large_bytes / 1024:,.0f} KiB"),
    ]  # fmt: skip
    vendor = connection.vendor
    print(
        f"\n{args.series:,} series in {args.series // 4:,} studies, {args.series:,} JSON files; "
        f"{args.repeat} runs each; {vendor}; Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| Measure | Median (ms) | p95 (ms) | Target (ms) | Notes |")
    print("|---|---:|---:|---:|---|")
    missed = []
    for name, times, target, notes in rows:
        median = statistics.median(times)
        print(
            f"| {name} | {median:,.0f} | {p95(times):,.0f} | < {target:,.0f} | {notes} |"
        )
        if median >= target:
            missed.append(name)
    if small_queries != large_queries:
        missed.append(
            f"query count grows with the rows ({small_queries} → {large_queries})"
        )
    if gets:
        missed.append(f"validation read {gets} objects again")
    print("\nMissed: " + "; ".join(missed) if missed else "\nEvery target met.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
