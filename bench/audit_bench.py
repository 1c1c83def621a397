"""Benchmark of the audit trail (issue 10): streaming exports of 100,000 events, writing, verifying.

    python -m bench.audit_bench [--events 100000] [--writes 2000] [--database-url postgres://…]

Uses a throwaway SQLite database under var/bench/ unless `--database-url` names another (its own
database: it is flushed). It writes `--events` chained events straight into the table (computing
their hashes as audit_record does, far faster than one transaction each), then measures:
- each export (CSV, JSON Lines) through Django's test client, read to the end: time, size, and the
  peak of Python allocations (tracemalloc) while it streams, beside the same for a tenth of the rows;
- `manage.py verify_audit` over the whole chain;
- `audit_record` itself, `--writes` events one after another (each its own transaction and lock).
It prints a Markdown table and exits 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"


def setup_django(database_url: str | None) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    db = BENCH_DIR / "audit.sqlite3"
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
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def write_chained_events(count: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from imports.audit.chain import GENESIS, event_hash
    from imports.audit.keys import audit_key

    start = timezone.now()
    previous = GENESIS
    rows = []
    for i in range(count):
        fields: dict[str, Any] = {
            "created_at": start + timedelta(microseconds=i),
            "actor_id": None,
            "actor_username": "system",
            "action": "scan.started",
            "target_type": "imports.scan",
            "target_id": str(i),
            "summary": f"Started a scan of s3://bench/prefix-{i}/",
            "details": {"objects": i, "note": "benchmark"},
            "ip": "192.0.2.10",
            "user_agent": "bench/1.0",
        }
        digest = event_hash(key=audit_key(), previous_hash=previous, fields=fields)
        rows.append(
            (
                *[fields[name] for name in fields if name != "details"],
                json.dumps(fields["details"]),
                previous,
                digest,
            )
        )
        previous = digest
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO imports_auditevent (created_at, actor_id, actor_username, action,"
            " target_type, target_id, summary, ip, user_agent, details, previous_hash, hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def download(url: str, *, trace: bool) -> tuple[float, int, int]:
    """(seconds, bytes, peak Python allocation while streaming) for one export read to the end.

    tracemalloc slows Python down several times, so times are taken from untraced runs only.
    """
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.get(username="bench-viewer"))
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    response = client.get(url)
    chunks: Any = response.streaming_content  # type: ignore[attr-defined]
    size = 0
    for chunk in chunks:
        size += len(chunk)
    elapsed = time.perf_counter() - started
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return elapsed, size, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    setup_django(args.database_url)

    from django.apps import apps as django_apps
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection

    from imports.audit.records import audit_record
    from imports.models import AuditEvent
    from imports.roles import VIEWER, sync_role_groups

    sync_role_groups(django_apps)
    viewer = User.objects.create_user("bench-viewer", password="bench-password-1")
    viewer.groups.add(Group.objects.get(name=VIEWER))

    rows: list[tuple[str, str]] = []
    tenth = args.events // 10
    write_chained_events(tenth)
    small = {}
    for fmt in ("csv", "jsonl"):
        download(
            f"/audit/export.{fmt}", trace=True
        )  # warms what every first request fills
        small[fmt] = download(f"/audit/export.{fmt}", trace=True)[2]
    write_chained_events(
        args.events - tenth
    )  # a second chain: verify is measured below
    for fmt in ("csv", "jsonl"):
        peak = download(f"/audit/export.{fmt}", trace=True)[2]
        seconds, size, _ = download(f"/audit/export.{fmt}", trace=False)
        rows.append(
            (
                f"Export {fmt.upper()}, {args.events:,} events",
                f"{seconds:.1f} s, {size / 1e6:.1f} MB, peak {peak / 1e6:.2f} MB "
                f"(peak {small[fmt] / 1e6:.2f} MB for {tenth:,})",
            )
        )

    # verify_audit over an intact chain of --events events.
    call_command("flush", interactive=False, verbosity=0)
    write_chained_events(args.events)
    started = time.perf_counter()
    call_command("verify_audit", stdout=StringIO())
    rows.append(
        (
            f"verify_audit, {args.events:,} events",
            f"{time.perf_counter() - started:.1f} s",
        )
    )

    started = time.perf_counter()
    for i in range(args.writes):
        audit_record(
            actor=None,
            action=AuditEvent.Action.SCAN_STARTED,
            summary=f"Started a scan of s3://bench/w{i}/",
        )
    elapsed = time.perf_counter() - started
    rows.append(
        (
            f"audit_record × {args.writes:,}",
            f"{elapsed:.1f} s, {args.writes / elapsed:,.0f} events/s",
        )
    )

    print(
        f"\n{connection.vendor}, Python {platform.python_version()}, {os.cpu_count()} CPUs\n"
    )
    print("| Measure | Result |\n|---|---|")
    for measure, result in rows:
        print(f"| {measure} | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
