"""Benchmark of import jobs (issue 8, "Performance"): the status fragment, 200 viewers, results in and out.

    python -m bench.jobs_bench [--jobs 10000] [--results 1000000] [--polls 300] [--viewers 200] [--window 40]
                               [--ndjson-lines 5000] [--export-rows 100000] [--database-url postgres://…]
                               [--cache-url rediscache://…] [--no-load] [--generator both|locust|wrk]

Starts localaws in a child process (S3's and HealthImaging's CPU is not the dashboard's, and tracemalloc then
sees the dashboard alone) and uses a throwaway SQLite database, var/bench/jobs.sqlite3, unless `--database-url`
names another (flushed first). It measures:
1. the status fragment (`GET /jobs/<id>/status/`, Django's test client, no network) with `--jobs` jobs and
   `--results` result rows in the database: server time p50/p95 and its queries;
2. `--viewers` viewers polling it every 2 s through gunicorn with 4 workers (locust, headless, and wrk, side by
   side with `--generator both`), after 1 viewer, `--window` seconds each, with the AWS poller running: errors,
   p95 at the client and at the server, the generator's own CPU, and GetDICOMImportJob calls per minute counted
   at localaws; then `/healthz` under 10 probes every 100 ms (wrk);
3. ingesting a `--ndjson-lines` success.ndjson from localaws S3 (`jobresults.job_ingest_results`): time, and
   the tracemalloc peak at a quarter of the lines and at all of them;
4. the results download, CSV and JSON lines, of a job with `--export-rows` rows: the tracemalloc peak at a
   tenth of the rows and at all of them.
It prints a Markdown table and exits 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
REGION = "us-east-1"
FRAGMENT_TARGET_MS = 20.0
FRAGMENT_MAX_QUERIES = 3
LOAD_TARGET_MS = 100.0
HEALTH_TARGET_MS = 20.0
HEALTH_PROBES = 10  # load balancer targets asking at once
HEALTH_PACE_MS = 100
INGEST_TARGET_S = 2.0
MEMORY_FLAT_RATIO = 1.25
WATCHED_JOBS = 10
INGEST_BATCH = 1_000  # imports.jobs.tracking.BATCH
EXPORT_CHUNK = 2_000  # the download's iterator(chunk_size=...)


class LocalAWSProcess:
    """localaws in a child process (this module with --serve), stopped by closing its stdin."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.jobs_bench", "--serve"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.endpoint_url = self.process.stdout.readline().strip()
        if not self.endpoint_url.startswith("http://"):
            self.stop()
            raise RuntimeError("the localaws child process did not start")

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_until_stdin_closes() -> int:
    from localaws.server import LocalAWS

    server = LocalAWS().start()
    print(server.endpoint_url, flush=True)
    sys.stdin.read()
    server.stop()
    return 0


def setup_django(
    endpoint_url: str, database_url: str | None, cache_url: str | None
) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    db = BENCH_DIR / "jobs.sqlite3"
    for stale in BENCH_DIR.glob("jobs.sqlite3*"):
        stale.unlink()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "localaws",
            "AWS_SECRET_ACCESS_KEY": "localaws",
            "AWS_DEFAULT_REGION": REGION,
            # Assigned, not defaulted: an exported DATABASE_URL must never send the benchmark to a real database.
            "DATABASE_URL": database_url or f"sqlite:///{db}",
            "CACHE_URL": cache_url or "locmemcache://",
            # Enqueued tasks (the job-ended email) stay in a folder of their own; nothing consumes them.
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_FILESYSTEM_DIR": str(BENCH_DIR / "celery"),
            # The production settings, as gunicorn runs them (DEBUG off), on plain HTTP.
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "DJANGO_AUDIT_KEY": secrets.token_hex(32),
            "DJANGO_DEBUG": "false",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "DJANGO_LOG_LEVEL": "WARNING",
            # Every 2 s poller run finds every watched job due, whatever its sub-second jitter: the count
            # of AWS calls then depends on the poller's clock alone, the same in every window.
            "JOBS_POLL_FIRST_S": "1.5",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    import django
    from django.core.management import call_command

    django.setup()
    if database_url:
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)
    from django.apps import apps

    from imports.roles import sync_role_groups

    sync_role_groups(apps)  # a flush erased the groups the data migration made


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _mib(value: float) -> str:
    return f"{value / (1024 * 1024):,.2f} MiB"


# --- 1. The status fragment -------------------------------------------------------------------------------------


@dataclass
class Fragment:
    sessions: str  # the session engine's module name: db or cached_db
    polls: int
    times_ms: list[float]
    queries: list[str]


def fragment_measure(
    user: Any, job_ids: list[int], polls: int, engine: str
) -> Fragment:
    """`polls` polls of the watched jobs' fragments by one signed-in viewer, with sessions in `engine`."""
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    with override_settings(SESSION_ENGINE=f"django.contrib.sessions.backends.{engine}"):
        client = Client()  # its handler loads the session middleware with this engine
        client.force_login(user)
        return _fragment_polls(
            client, job_ids, polls, engine, connection, CaptureQueriesContext
        )


def _fragment_polls(client: Any, job_ids: list[int], polls: int, engine: str, connection: Any, capture: Any) -> Fragment:  # fmt: skip
    for pk in job_ids:  # warm the templates and the connection
        client.get(f"/jobs/{pk}/status/", HTTP_HX_REQUEST="true")
    times = []
    for number in range(polls):
        url = f"/jobs/{job_ids[number % len(job_ids)]}/status/"
        started = time.perf_counter()
        response = client.get(url, HTTP_HX_REQUEST="true")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    with capture(connection) as captured:
        client.get(f"/jobs/{job_ids[0]}/status/", HTTP_HX_REQUEST="true")
    return Fragment(engine, polls, times, [q["sql"] for q in captured.captured_queries])


def _query_names(sqls: list[str]) -> str:
    names = []
    for sql in sqls:
        table = (
            sql.split(" FROM ", 1)[1].split()[0].strip('"')
            if " FROM " in sql
            else sql[:20]
        )
        names.append(
            table.removeprefix("imports_").removeprefix("django_").removeprefix("auth_")
        )
    return ", ".join(names)


# --- 3. Ingestion -------------------------------------------------------------------------------------------------


@dataclass
class Ingest:
    lines: int
    seconds: float
    peak: int | None
    rows: int


def ingest_prepare(lines: int, folder_name: str) -> int:
    """A success.ndjson of `lines` lines and its manifest at localaws S3, and an ended job pointing at them."""
    from bench.jobs_data import manifest, ndjson_lines
    from imports.aws import client as aws
    from imports.models import Datastore, ImportJob

    bucket = "jobs-bench-out"
    folder = f"results/{folder_name}/"
    aws.s3_put_object(region=REGION, bucket=bucket, key=folder + "job-output-manifest.json",
                      body=manifest(lines), content_type="application/json")  # fmt: skip
    aws.s3_put_object(region=REGION, bucket=bucket, key=folder + "SUCCESS/success.ndjson",
                      body=b"".join(ndjson_lines(lines)), content_type="application/x-ndjson")  # fmt: skip
    aws.s3_put_object(region=REGION, bucket=bucket, key=folder + "FAILURE/failure.ndjson",
                      body=b"", content_type="application/x-ndjson")  # fmt: skip
    datastore = Datastore.objects.get(name="Bench (localaws)")
    job = ImportJob.objects.create(
        datastore=datastore,
        job_name=folder_name,
        status=ImportJob.Status.COMPLETED,
        aws_job_id=f"{folder_name:0>32}"[-32:],
        output_folder_uri=f"s3://{bucket}/{folder}",
        results=ImportJob.Results.PENDING,
    )
    return job.pk


def ingest_run(job_id: int, lines: int, *, trace: bool) -> Ingest:
    from imports.jobs.results import job_ingest_results
    from imports.models import ImportJob, ImportJobResult

    ImportJob.objects.filter(pk=job_id).update(results=ImportJob.Results.PENDING)
    if trace:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    retry = job_ingest_results(job_id=job_id)
    seconds = time.perf_counter() - started
    peak = None
    if trace:
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    assert retry is None, "the manifest was not found"
    return Ingest(
        lines, seconds, peak, ImportJobResult.objects.filter(job_id=job_id).count()
    )


# --- 4. Export ----------------------------------------------------------------------------------------------------


@dataclass
class Export:
    fmt: str
    rows: int
    seconds: float
    peak: int
    size: int


def export_run(client: Any, job_id: int, fmt: str, rows: int) -> Export:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    response = client.get(f"/jobs/{job_id}/results.{fmt}")
    size = 0
    for chunk in response.streaming_content:
        size += len(chunk)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert response.status_code == 200
    return Export(fmt, rows, seconds, peak, size)


# --- Report -------------------------------------------------------------------------------------------------------


def report(args: argparse.Namespace, conditions: dict[str, Any], fragments: list[Fragment],
           history: Any, loads: list[Any], health: Any, ingests: list[Ingest], exports: list[Export]) -> None:  # fmt: skip
    from django.conf import settings
    from django.db import connection

    rows: list[tuple[str, str, str, bool]] = []
    for fragment in fragments:
        sessions = f"sessions {fragment.sessions}"
        rows.append((
            f"Status fragment, server time ({sessions})",
            f"p95 < {FRAGMENT_TARGET_MS:.0f} ms",
            f"p50 {statistics.median(fragment.times_ms):.1f} ms, p95 {p95(fragment.times_ms):.1f} ms over "
            f"{fragment.polls} polls; {history.jobs:,} jobs, {history.results:,} result rows",
            p95(fragment.times_ms) < FRAGMENT_TARGET_MS,
        ))  # fmt: skip
        rows.append((
            f"Status fragment, queries ({sessions})",
            f"≤ {FRAGMENT_MAX_QUERIES}",
            f"{len(fragment.queries)} ({_query_names(fragment.queries)})",
            len(fragment.queries) <= FRAGMENT_MAX_QUERIES,
        ))  # fmt: skip
    for run in loads:
        rows.append((
            f"{run.viewers} viewer{'s' if run.viewers != 1 else ''} polling every 2 s, gunicorn -w 4 ({run.generator})",
            f"no errors, p95 < {LOAD_TARGET_MS:.0f} ms",
            f"{run.requests:,} requests in {run.seconds:.0f} s, {run.failures} errors; p95 {run.client_p95_ms:.0f} ms "
            f"at {run.generator} (p50 {run.client_p50_ms:.0f}), {run.server_p95_ms:.1f} ms in gunicorn "
            f"(p50 {run.server_p50_ms:.1f}); {run.generator} used {run.generator_cpu_s:.1f} CPU-s "
            f"({100 * run.generator_cpu_s / max(run.seconds, 0.001):.0f} % of a core)",
            run.failures == 0 and run.client_p95_ms < LOAD_TARGET_MS,
        ))  # fmt: skip
    if health is not None:
        rows.append((
            f"/healthz, {HEALTH_PROBES} probes every {HEALTH_PACE_MS} ms (wrk), gunicorn -w 4",
            f"no errors, p95 < {HEALTH_TARGET_MS:.0f} ms",
            f"{health.requests:,} requests in {health.seconds:.0f} s, {health.failures} errors; p50 "
            f"{health.p50_ms:.1f} ms, p95 {health.p95_ms:.1f} ms; wrk used {health.generator_cpu_s:.1f} CPU-s",
            health.failures == 0 and health.p95_ms < HEALTH_TARGET_MS,
        ))  # fmt: skip
    if loads:
        per_minute = [run.calls_per_minute for run in loads]
        extra = sum(run.localaws_calls - run.poller_calls for run in loads)
        rows.append((
            "GetDICOMImportJob per minute, " + " vs ".join(f"{r.viewers} viewer{'s' if r.viewers != 1 else ''} ({r.generator})" for r in loads),
            "the same",
            " vs ".join(f"{v:.0f}" for v in per_minute)
            + f" ({WATCHED_JOBS} running jobs; counted at localaws; calls not made by the poller: {extra})",
            max(per_minute) - min(per_minute) <= 0.05 * max(per_minute) and extra == 0,
        ))  # fmt: skip
    timed = next(i for i in ingests if i.peak is None)
    rows.append((
        f"Ingest a {timed.lines:,}-line success.ndjson from S3",
        f"< {INGEST_TARGET_S:.0f} s",
        f"{timed.seconds:.2f} s ({timed.rows:,} rows stored)",
        timed.seconds < INGEST_TARGET_S and timed.rows == timed.lines,
    ))  # fmt: skip
    small, large = (i for i in ingests if i.peak is not None)
    ratio = (large.peak or 0) / max(1, small.peak or 0)
    rows.append((
        "Ingestion memory",
        f"flat (peak at N within {MEMORY_FLAT_RATIO} × peak at N/4)",
        f"traced peak {_mib(small.peak or 0)} at {small.lines:,} lines, {_mib(large.peak or 0)} at {large.lines:,} ({ratio:.2f} ×)",
        ratio <= MEMORY_FLAT_RATIO,
    ))  # fmt: skip
    for fmt in ("csv", "jsonl"):
        small_e, large_e = sorted(
            (e for e in exports if e.fmt == fmt), key=lambda e: e.rows
        )
        ratio = large_e.peak / max(1, small_e.peak)
        rows.append((
            f"Results download, {fmt.upper()}, {large_e.rows:,} rows",
            f"streamed, flat (peak within {MEMORY_FLAT_RATIO} × peak at a tenth)",
            f"traced peak {_mib(small_e.peak)} at {small_e.rows:,} rows, {_mib(large_e.peak)} at {large_e.rows:,} "
            f"({ratio:.2f} ×); {large_e.size / 1024 / 1024:,.1f} MiB in {large_e.seconds:.1f} s",
            ratio <= MEMORY_FLAT_RATIO,
        ))  # fmt: skip

    print()
    print(
        f"## Jobs benchmark: {history.jobs:,} jobs, {history.results:,} result rows; {connection.vendor}; "
        f"sessions {settings.SESSION_ENGINE.rsplit('.', 1)[-1]}, cache {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}"
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.machine()}; "
        f"load average {conditions['load_before']} before, {conditions['load_after']} after; "
        f"data made in {conditions['setup_s']:.0f} s"
    )
    print()
    print("| Figure | Target | Measured | Met? |")
    print("|---|---|---|---|")
    for figure, target, measured, met in rows:
        print(f"| {figure} | {target} | {measured} | {'yes' if met else '**no**'} |")
    missed = [figure for figure, _t, _m, met in rows if not met]
    print()
    print("TARGETS NOT MET: " + "; ".join(missed) if missed else "All targets met.")
    if small.lines < INGEST_BATCH or min(e.rows for e in exports) < EXPORT_CHUNK:
        print(
            f"Note: the memory comparisons need at least {INGEST_BATCH:,} lines at N/4 and {EXPORT_CHUNK:,} rows "
            "at a tenth (one write batch, one read chunk); below that the smaller peak is lower for that reason."
        )
    print()
    print("Raw numbers")
    for fragment in fragments:
        print(f"  fragment queries, sessions {fragment.sessions}:")
        for sql in fragment.queries:
            print(f"    {sql[:160]}")
    for run in loads:
        print(
            f"  {run.viewers} viewers: poller {run.poller_runs} runs, {run.poller_calls} calls in "
            f"{run.minutes * 60:.0f} s; localaws saw {run.localaws_calls} GetDICOMImportJob; "
            f"gunicorn logged {run.server_requests:,} status requests"
            + (
                f"; failures: {'; '.join(run.failure_samples)}"
                if run.failure_samples
                else ""
            )
        )
    for i in ingests:
        print(
            f"  ingest {i.lines:,} lines: {i.seconds:.2f} s"
            + (f", traced peak {_mib(i.peak)}" if i.peak else " (untraced)")
        )
    for e in exports:
        print(
            f"  export {e.fmt} {e.rows:,} rows: {e.seconds:.2f} s, {e.size:,} bytes, traced peak {_mib(e.peak)}"
        )


# --- Main -----------------------------------------------------------------------------------------------------------


def _generators(choice: str, wrk_available: bool) -> list[str]:
    wanted = ["locust", "wrk"] if choice == "both" else [choice]
    if "wrk" in wanted and not wrk_available:
        print("wrk is not installed (apt-get install wrk): locust alone")
        wanted = [g for g in wanted if g != "wrk"] or ["locust"]
    return wanted


def _load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument(
        "--window", type=int, default=40, help="seconds of each locust run (at most 55)"
    )
    parser.add_argument("--ndjson-lines", type=int, default=5_000)
    parser.add_argument("--export-rows", type=int, default=100_000)
    parser.add_argument("--database-url")
    parser.add_argument(
        "--cache-url",
        help="e.g. rediscache://127.0.0.1:6379/1: sessions are then read through it",
    )
    parser.add_argument(
        "--no-load", action="store_true", help="skip gunicorn and the load generators"
    )
    parser.add_argument(
        "--generator",
        choices=("both", "locust", "wrk"),
        default="both",
        help="the viewers' load generator; both run side by side in one run (wrk needs Debian's wrk)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve_until_stdin_closes()
    if not 5 <= args.window <= 55:
        parser.error(
            "--window must be 5 to 55 s: the watched jobs must stay in the poller's first 60 s"
        )
    if args.results < args.export_rows + args.export_rows // 10:
        parser.error("--results must hold the export's rows and a tenth of them")
    if args.jobs < 20:
        parser.error("--jobs must be at least 20")

    server = LocalAWSProcess()
    gunicorn = None
    try:
        setup_django(server.endpoint_url, args.database_url, args.cache_url)
        from django.conf import settings
        from django.contrib.auth.models import Group, User
        from django.test import Client

        from bench import jobs_load
        from bench.jobs_data import history_create
        from imports.models import Datastore
        from imports.roles import VIEWER

        load_before = _load_average()
        print(
            f"localaws (child process) at {server.endpoint_url}; load average {load_before}"
        )
        started = time.perf_counter()
        filler = Datastore.objects.create(
            name="Bench history", region=REGION, datastore_id="f" * 32,
            role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
            input_s3_uri="s3://jobs-bench-in/old/", output_s3_uri="s3://jobs-bench-out/old/",
        )  # fmt: skip
        watched = jobs_load.running_jobs_create(
            endpoint_url=server.endpoint_url, region=REGION, count=WATCHED_JOBS
        )
        history = history_create(
            datastore=filler,
            jobs=args.jobs - WATCHED_JOBS,
            results=args.results,
            export_rows=args.export_rows,
        )
        setup_s = time.perf_counter() - started
        print(
            f"setup: {history.jobs:,} + {WATCHED_JOBS} jobs, {history.results:,} result rows in {setup_s:.0f} s"
        )
        history = type(history)(
            **{**vars(history), "jobs": history.jobs + WATCHED_JOBS}
        )

        viewer = User.objects.create_user("bench-viewer", password="bench-only-viewer")
        viewer.groups.add(Group.objects.get(name=VIEWER))
        client = Client()
        client.force_login(viewer)
        # Sessions in the database, and, when --cache-url names a shared cache, read through it.
        engines = ["db"] + (
            ["cached_db"] if "cached_db" in settings.SESSION_ENGINE else []
        )
        fragments = []
        for engine in engines:
            fragments.append(fragment_measure(viewer, watched, args.polls, engine))
            print(f"fragment, sessions {engine}: p95 {p95(fragments[-1].times_ms):.1f} ms, "
                  f"{len(fragments[-1].queries)} queries")  # fmt: skip

        ingests = []
        quarter = ingest_prepare(args.ndjson_lines // 4, "ingest-quarter")
        whole = ingest_prepare(args.ndjson_lines, "ingest-whole")
        ingests.append(ingest_run(whole, args.ndjson_lines, trace=False))
        print(f"ingest: {ingests[0].seconds:.2f} s for {args.ndjson_lines:,} lines")
        ingests.append(ingest_run(quarter, args.ndjson_lines // 4, trace=True))
        ingests.append(ingest_run(whole, args.ndjson_lines, trace=True))

        exports = []
        for fmt in ("csv", "jsonl"):
            exports.append(
                export_run(client, history.export_small, fmt, history.export_rows // 10)
            )
            exports.append(
                export_run(client, history.export_large, fmt, history.export_rows)
            )
        print(
            "export: "
            + ", ".join(f"{e.fmt} {e.rows:,} rows {_mib(e.peak)}" for e in exports)
        )

        loads = []
        health = None
        if not args.no_load:
            sessions = jobs_load.viewer_sessions(viewer, args.viewers)
            gunicorn = jobs_load.Gunicorn(BENCH_DIR)
            gunicorn.warm_up(sessions[0], watched[0])
            generators = _generators(args.generator, jobs_load.wrk_available())
            for generator in generators:
                for viewers in (1, args.viewers):
                    if generator == "wrk":
                        run = jobs_load.wrk_load_run(
                            gunicorn=gunicorn, endpoint_url=server.endpoint_url, sessions=sessions,
                            job_ids=watched, viewers=viewers, seconds=args.window,
                        )  # fmt: skip
                    else:
                        run = jobs_load.load_run(
                            gunicorn=gunicorn, endpoint_url=server.endpoint_url, sessions=sessions,
                            job_ids=watched, viewers=viewers, seconds=args.window, log_dir=BENCH_DIR,
                        )  # fmt: skip
                    print(f"load ({generator}): {viewers} viewers, p95 {run.client_p95_ms:.0f} ms, "
                          f"{run.failures} errors, {run.localaws_calls} GetDICOMImportJob, "
                          f"generator CPU {run.generator_cpu_s:.1f} s")  # fmt: skip
                    loads.append(run)
            if "wrk" in generators:
                health = jobs_load.wrk_health_run(
                    gunicorn=gunicorn, connections=HEALTH_PROBES, pace_ms=HEALTH_PACE_MS,
                    seconds=min(args.window, 20),
                )  # fmt: skip
                print(f"healthz: p95 {health.p95_ms:.1f} ms, {health.failures} errors")
            gunicorn.stop()
            gunicorn = None
        conditions = {
            "load_before": load_before,
            "load_after": _load_average(),
            "setup_s": setup_s,
        }
        report(args, conditions, fragments, history, loads, health, ingests, exports)
    finally:
        if gunicorn is not None:
            gunicorn.stop()
        server.stop()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
