"""Benchmark of a campaign's per-object export (issue 21, "Performance"): 100,000 objects at flat memory.

    python -m bench.campaign_export_bench [--objects 100000] [--small 10000] [--database-url postgres://…]

Uses a throwaway SQLite database, var/bench/campaign_export.sqlite3, unless `--database-url` names another (flushed
first). It stores a campaign of `--objects` objects in 20 jobs (bulk inserts, the outcomes mixed as a finished
campaign has them), then streams `/campaigns/ID/objects.csv` and `objects.jsonl` through the dashboard's own view,
as a viewer (keys masked) would get them, consuming the response chunk by chunk. For each of `--small` and
`--objects` objects it reports the time, the bytes streamed and the peak of Python's allocations (tracemalloc)
while streaming: flat memory means the peak does not grow with the number of objects. It prints a Markdown table
and exits 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
JOBS = 20


def setup_django(database_url: str | None) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    db = BENCH_DIR / "campaign_export.sqlite3"
    db.unlink(missing_ok=True)
    os.environ.update(
        {
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


def store_campaign(objects: int) -> Any:
    from imports.models import Campaign, CampaignJob, CampaignObject, Datastore

    datastore = Datastore.objects.first() or Datastore.objects.create(
        name="Bench",
        region="us-east-1",
        datastore_id="0" * 32,
        role_arn="arn:aws:iam::123456789012:role/bench",
        input_s3_uri="s3://bench-in/",
        output_s3_uri="s3://bench-out/",
    )
    campaign = Campaign.objects.create(
        datastore=datastore,
        max_files=5000,
        max_bytes=10**10,
        max_folders=10_000,
        object_count=objects,
        state=Campaign.State.COMPLETED,
    )
    jobs = [
        CampaignJob.objects.create(
            campaign=campaign,
            number=n + 1,
            input_s3_uri=f"s3://bench-in/PAT{n:04d}/",
            files=objects // JOBS,
            bytes=0,
            folders=3,
        )  # fmt: skip
        for n in range(JOBS)
    ]
    outcomes = ["imported"] * 17 + ["failed", "skipped", "not_imported"]
    rows = []
    for i in range(objects):
        job = jobs[i % JOBS]
        outcome = outcomes[i % len(outcomes)]
        key = f"PAT{job.number - 1:04d}/study{i // 400}/series{i // 100}/{i:06d}.dcm"
        rows.append(
            CampaignObject(
                campaign=campaign,
                job=job,
                bucket="bench-in",
                key=key,
                size=500_000,
                result_key=key,
                outcome=outcome,
                image_set_id=f"{i:032x}" if outcome == "imported" else "",
                image_set_version=1 if outcome == "imported" else None,
                is_primary=True if outcome == "imported" else None,
                reason=f"ValidationException: {key} has no pixel data"
                if outcome == "failed"
                else "",
            )  # fmt: skip
        )
        if len(rows) == 5000:
            CampaignObject.objects.bulk_create(rows)
            rows = []
    CampaignObject.objects.bulk_create(rows)
    return campaign


def stream(campaign: Any, export_format: str) -> tuple[float, int, int]:
    """Seconds, bytes and peak traced allocation of one export, consumed chunk by chunk."""
    from django.contrib.auth.models import Group, User
    from django.test import RequestFactory

    from imports.roles import VIEWER
    from imports.views.campaigns import campaign_export

    user, created = User.objects.get_or_create(username="bench-viewer")
    if created:
        user.groups.add(Group.objects.get(name=VIEWER))
    request = RequestFactory().get(f"/campaigns/{campaign.pk}/objects.{export_format}")
    request.user = User.objects.get(
        pk=user.pk
    )  # a fresh instance: no cached permissions
    tracemalloc.start()
    started = time.perf_counter()
    response = campaign_export(request, pk=campaign.pk, export_format=export_format)
    size = 0
    for chunk in response.streaming_content:  # type: ignore[attr-defined]
        size += len(chunk)
    took = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return took, size, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    setup_django(args.database_url)
    from django.db import connection

    print(f"{platform.python_version()} on {platform.machine()}, {connection.vendor}")
    print()
    print(
        "| objects | format | streamed | time | peak Python allocations while streaming |"
    )
    print("|---:|---|---:|---:|---:|")
    for objects in (args.small, args.objects):
        campaign = store_campaign(objects)
        for export_format in ("csv", "jsonl"):
            took, size, peak = stream(campaign, export_format)
            print(
                f"| {objects:,} | {export_format} | {size / 1e6:,.1f} MB | {took:.2f} s | "
                f"{peak / 1e6:,.1f} MB |"
            )


if __name__ == "__main__":
    main()
