"""Benchmark of correction sheets (issue 19, "Performance"): a 1,000-row sheet against a 1,000-study index.

    python -m bench.corrections_bench [--studies 1000] [--repeat 7] [--database-url postgres://…]

Starts localaws in this process on a free port and uses a throwaway SQLite database under var/bench/ unless
`--database-url` names another (its own database, recreated). It uploads one small DICOM instance per study (every
tenth study a second instance that spells StudyDescription another way, so the counts query runs), scans the
prefix, then measures, server side:
- reading the sheet (`corrections.sheet.sheet_read`), as CSV and as XLSX, one row per study keyed by accession;
- matching and diffing it against the scan (`corrections.matching.corrections_match`), with its query count;
- writing the files (`corrections.write.corrections_write`: one conditional PutObject a study, recorded in the scan
  and audited), once, with `--latency-ms` on every S3 request (localaws's fault API).
It prints a Markdown table and exits 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.composer_bench import p95, timed

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
BUCKET = "corrections-bench"
PREFIX = "incoming/"
REGION = "us-east-1"
TARGET_MS = 2000.0
WRITE_TARGET_S = 30.0


def setup_django(database_url: str | None) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    db = BENCH_DIR / "corrections.sqlite3"
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
    if database_url:
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)


def upload(studies: int) -> None:
    from imports.aws import client as aws
    from localaws.testing import dicom_bytes

    aws.s3_client(REGION).create_bucket(Bucket=BUCKET)

    def put(n: int) -> None:
        study, series = f"2.25.{5000 + n}", f"2.25.{5000 + n}.1"
        for instance in (1, 2) if n % 10 == 0 else (1,):
            aws.s3_put_object(
                region=REGION,
                bucket=BUCKET,
                key=f"{PREFIX}{series}/{instance}.dcm",
                body=dicom_bytes(
                    study=study,
                    series=series,
                    sop=f"{series}.{instance}",
                    AccessionNumber=f"ACC{n:07d}",
                    PatientID=f"PAT{n // 3:06d}",
                    StudyDescription="CT HEAD" if instance == 1 else "CT Head",
                    InstanceNumber=instance,
                ),
                content_type="application/dicom",
            )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(studies)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)

    from localaws.server import LocalAWS

    server = LocalAWS().start()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
    setup_django(args.database_url)

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from openpyxl import Workbook

    from imports.corrections.matching import corrections_match
    from imports.corrections.sheet import sheet_read
    from imports.corrections.write import corrections_write
    from imports.scanning import control, run
    from localaws.testing import LocalAWSHandle

    upload(args.studies)
    scan, _ = control.scan_start(
        actor=None, bucket=BUCKET, prefix=PREFIX, region=REGION, enqueue=False
    )
    scan = run.scan_run(scan_id=scan.pk) or scan
    header = ["AccessionNumber", "StudyDescription", "PatientName", "(0010,0020)"]
    rows = [
        [f"ACC{n:07d}", "CT BRAIN", f"Doe^Patient{n // 3}", f"NEW{n // 3:06d}"]
        for n in range(args.studies)
    ]
    csv_body = "\n".join(
        ",".join(f'"{c}"' if "," in c else c for c in row) for row in [header, *rows]
    ).encode()
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [header, *rows]:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    xlsx_body = out.getvalue()

    csv_times, parsed = timed(lambda: sheet_read(csv_body), args.repeat)
    xlsx_times, _ = timed(lambda: sheet_read(xlsx_body), args.repeat)
    match_times, results = timed(
        lambda: corrections_match(scan=scan, sheet=parsed), args.repeat
    )
    with CaptureQueriesContext(connection) as queries:
        corrections_match(scan=scan, sheet=parsed)
    handle = LocalAWSHandle(server)
    handle.add_fault(service="s3", latency_ms=args.latency_ms)
    handle.clear_calls()
    started = time.perf_counter()
    written = corrections_write(scan=scan, sheet=parsed, results=results, actor=None)
    write_s = time.perf_counter() - started
    puts = len(handle.calls("s3", "PutObject"))
    server.stop()
    statuses = {
        s: sum(r.status == s for r in results) for s in ("ok", "unchanged", "error")
    }

    table = [
        (f"Read a {len(rows):,}-row CSV sheet", csv_times, "—", ""),
        (f"Read a {len(rows):,}-row XLSX sheet", xlsx_times, "—", f"{len(xlsx_body) / 1024:,.0f} KiB"),
        (f"Match and diff {len(rows):,} rows against {args.studies:,} studies", match_times,
         f"< {TARGET_MS:,.0f}",
         f"{len(queries)} queries; {statuses['ok']} ok, {statuses['unchanged']} unchanged, "
         f"{statuses['error']} errors"),
    ]  # fmt: skip
    print(
        f"\n{args.studies:,} studies ({scan.objects_listed:,} instances); {args.repeat} runs each; "
        f"{connection.vendor}; Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| Measure | Median (ms) | p95 (ms) | Target (ms) | Notes |")
    print("|---|---:|---:|---:|---|")
    for name, times, target, notes in table:
        print(
            f"| {name} | {statistics.median(times):,.0f} | {p95(times):,.0f} | {target} | {notes} |"
        )
    print(
        f"| Write {len(written.files):,} files, {args.latency_ms:g} ms on every S3 request | "
        f"{write_s * 1000:,.0f} | (one run) | < {WRITE_TARGET_S * 1000:,.0f} | {puts:,} PutObject |"
    )
    total = statistics.median(csv_times) + statistics.median(match_times)
    verdict = "met" if total < TARGET_MS else "missed"
    print(
        f"\nRead, match and diff (CSV): {total:,.0f} ms, target < {TARGET_MS:,.0f} ms: {verdict}."
    )
    print(
        f"Write: {write_s:,.1f} s, target < {WRITE_TARGET_S:g} s: "
        f"{'met' if write_s < WRITE_TARGET_S else 'missed'}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
