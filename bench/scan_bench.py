"""Benchmark of the prefix scanner (issue 4, "Performance") against localaws with injected S3 latency.

    python -m bench.scan_bench [--objects 10000] [--size-kb 512] [--latency-ms 20] [--threads 16]

Runs LocalAWS in this process on a free port and a throwaway SQLite database under var/bench/, so it never
touches the dev database. It uploads realistic CT/MR objects without latency, then injects `latency_ms` for S3
and measures, in the same run: two "download whole object, then dcmread" baselines, the dashboard's scanner
over every object, a rescan, and the scanner's memory at N/4 and N objects. GETs and bytes are counted at the
server. It prints a Markdown table and the raw numbers, and exits 0 whether or not a target is met.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from bench.scan_data import Planned, build_object, transfer_syntax_name
from localaws.faults import CallLog
from localaws.server import LocalAWS

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
BUCKET = "bench-input"
PREFIX = "scan-bench/"
REGION = "us-east-1"
KiB = 1024
MEMORY_FLAT_RATIO = 1.25
MEMORY_MIN_QUARTER = 1000
COUNTERS_PATH = "/_bench/counters"


# --- Counting at the server -----------------------------------------------------------------------------------


class CountingCallLog(CallLog):
    """localaws's call log, plus unbounded counters: the log itself keeps only the last 10,000 calls."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[tuple[str, str]] = Counter()
        self._count_lock = threading.Lock()

    def record(self, service: str, operation: str, status: int, **extra: Any) -> None:
        with self._count_lock:
            self.counts[(service, operation)] += 1
        super().record(service, operation, status, **extra)

    def count(self, service: str, operation: str) -> int:
        with self._count_lock:
            return self.counts[(service, operation)]


@dataclass(frozen=True)
class Counters:
    """Totals at the server since it started; the benchmark subtracts two of them."""

    gets: int  # GetObject calls in localaws's call log
    metered_gets: (
        int  # object GETs seen by the byte meter (a cross-check of the line above)
    )
    get_bytes: int  # body bytes answered to those GETs
    lists: int  # ListObjectsV2 calls

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.gets - other.gets,
            self.metered_gets - other.metered_gets,
            self.get_bytes - other.get_bytes,
            self.lists - other.lists,
        )


class ByteMeter:
    """WSGI middleware in front of localaws: counts object GETs and the body bytes they answer with.

    It also answers GET /_bench/counters, so a benchmark can read the counters of a server in another process.
    """

    def __init__(
        self, app: Callable[..., Iterable[bytes]], calls: CountingCallLog
    ) -> None:
        self.app = app
        self.calls = calls
        self.lock = threading.Lock()
        self.gets = 0
        self.get_bytes = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == COUNTERS_PATH:
            body = json.dumps(asdict(self.counters())).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        bucket, _, key = path.lstrip("/").partition("/")
        if environ["REQUEST_METHOD"] != "GET" or not key or bucket.startswith("_"):
            return self.app(environ, start_response)
        with self.lock:
            self.gets += 1
        return self._counted(self.app(environ, start_response))

    def _counted(self, body: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for chunk in body:
                with self.lock:
                    self.get_bytes += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def counters(self) -> Counters:
        with self.lock:
            gets, get_bytes = self.gets, self.get_bytes
        return Counters(
            gets=self.calls.count("s3", "GetObject"),
            metered_gets=gets,
            get_bytes=get_bytes,
            lists=self.calls.count("s3", "ListObjectsV2"),
        )


def serve() -> tuple[LocalAWS, ByteMeter]:
    """LocalAWS on a free port, with the counting call log and the byte meter in front of its router."""
    server = LocalAWS()
    calls = CountingCallLog()
    server.calls = calls
    meter = ByteMeter(server.router, calls)
    # LocalAWS.start() serves whatever self.router is; the meter wraps the real router.
    server.router = meter  # type: ignore[assignment]
    server.start()
    return server, meter


class Server:
    """The benchmark's view of localaws, wherever it runs: its address, its counters and the fault API."""

    endpoint_url: str

    def counters(self) -> Counters:
        raise NotImplementedError

    def add_fault(self, fault: dict[str, Any]) -> None:
        """Through localaws's HTTP fault API, as an operator or a test would."""
        request = urllib.request.Request(
            f"{self.endpoint_url}/_localaws/faults",
            data=json.dumps(fault).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        raise NotImplementedError


class ThreadServer(Server):
    """localaws in this process: simple, but its CPU and GIL are shared with the code being measured."""

    def __init__(self) -> None:
        self.localaws, self.meter = serve()
        self.endpoint_url = self.localaws.endpoint_url

    def counters(self) -> Counters:
        return self.meter.counters()

    def stop(self) -> None:
        self.localaws.stop()


class ProcessServer(Server):
    """localaws in a child process (this module with --serve), as S3 is another machine's CPU in production."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.scan_bench", "--serve"],
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

    def counters(self) -> Counters:
        with urllib.request.urlopen(
            f"{self.endpoint_url}{COUNTERS_PATH}", timeout=10
        ) as response:
            return Counters(**json.loads(response.read()))

    def stop(self) -> None:
        # Closing its stdin is the child's signal to stop; it is ours, so it may be ended by handle if it hangs.
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=5)


def serve_until_stdin_closes() -> int:
    server, _meter = serve()
    print(server.endpoint_url, flush=True)
    sys.stdin.read()
    server.stop()
    return 0


# --- Environment ----------------------------------------------------------------------------------------------


def prepare_environment(
    endpoint_url: str, first_read_kb: int | None, database_url: str | None = None
) -> Path | str:
    """Point boto3 at localaws and Django at a fresh SQLite file (or `database_url`, flushed first), then migrate
    it. Must run before Django loads."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    db = BENCH_DIR / "bench.sqlite3"
    for stale in BENCH_DIR.glob("bench.sqlite3*"):
        stale.unlink()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "localaws",
            "AWS_SECRET_ACCESS_KEY": "localaws",
            "AWS_DEFAULT_REGION": REGION,
            # Assigned, not defaulted: an exported DATABASE_URL must never send the benchmark to a real database.
            "DATABASE_URL": database_url or f"sqlite:///{db}",
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "CELERY_FILESYSTEM_DIR": str(BENCH_DIR / "celery"),
        }
    )
    if first_read_kb is not None:
        os.environ["SCAN_FIRST_READ_BYTES"] = str(first_read_kb * KiB)
    os.environ.pop("AWS_PROFILE", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    if database_url:
        call_command("flush", interactive=False, verbosity=0)
        return database_url.split("@")[-1]
    return db


def upload(n: int, size: int, threads: int) -> list[Planned]:
    from imports.aws import client as aws

    aws.s3_client(REGION).create_bucket(Bucket=BUCKET)
    # One random buffer for every object's pixel data: the bytes are never looked at, only moved.
    pixels = os.urandom(size)

    def put(i: int) -> Planned:
        data, planned = build_object(PREFIX, i, n, size, pixels)
        aws.s3_put_object(
            region=REGION,
            bucket=BUCKET,
            key=planned.key,
            body=data,
            content_type="application/dicom",
        )
        return planned

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(put, range(n)))


# --- Measurements ---------------------------------------------------------------------------------------------


@dataclass
class Baseline:
    objects: int
    threads: int
    seconds: float
    gets: int
    get_bytes: int
    # Client CPU (this process: every thread) spent on the phase; localaws runs elsewhere by default.
    cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.objects / self.seconds

    @property
    def cpu_ms_per_object(self) -> float:
        return self.cpu_s * 1000 / max(1, self.objects)


def whole_object_baseline(server: Server, keys: list[str], threads: int) -> Baseline:
    """What a script without the dashboard does: GetObject of the whole file, then pydicom.dcmread."""
    from imports.aws import client as aws

    client = aws.s3_client(REGION)

    def read(key: str) -> tuple[str, str, str]:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        ds = pydicom.dcmread(io.BytesIO(body))
        return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID

    before = server.counters()
    started = time.perf_counter()
    cpu_started = time.process_time()
    if threads == 1:
        for key in keys:
            read(key)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(read, keys))
    cpu_s = time.process_time() - cpu_started
    seconds = time.perf_counter() - started
    used = server.counters() - before
    return Baseline(len(keys), threads, seconds, used.gets, used.get_bytes, cpu_s)


@dataclass
class ScanRun:
    prefix: str
    seconds: float
    status: str
    listed: int
    done: int
    cached: int
    unreadable: int
    requests: int
    bytes_read: int
    server_gets: int
    server_get_bytes: int
    server_lists: int
    peak_bytes: int | None = None
    retained_bytes: int | None = None
    scan_id: int = 0
    error: str = ""
    cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_object(self) -> float:
        return self.cpu_s * 1000 / max(1, self.done)


def run_scan(server: Server, prefix: str, *, trace: bool = False) -> ScanRun:
    from imports.scanning.control import scan_start
    from imports.scanning.run import scan_run

    counted = server.counters()
    if trace:
        tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    cpu_started = time.process_time()
    scan, _created = scan_start(
        actor=None, bucket=BUCKET, prefix=prefix, region=REGION, enqueue=False
    )
    finished = scan_run(scan_id=scan.pk)
    cpu_s = time.process_time() - cpu_started
    seconds = time.perf_counter() - started
    peak = retained = None
    if trace:
        current, peak = tracemalloc.get_traced_memory()
        retained = current - traced_before
        peak -= traced_before
        tracemalloc.stop()
    assert finished is not None, "another process claimed the benchmark's scan"
    used = server.counters() - counted
    if used.metered_gets != used.gets:
        print(
            f"  note: the call log saw {used.gets} GetObject calls, the byte meter {used.metered_gets}"
        )
    return ScanRun(
        prefix=prefix,
        seconds=seconds,
        status=finished.status,
        listed=finished.objects_listed,
        done=finished.objects_done,
        cached=finished.objects_cached,
        unreadable=finished.objects_unreadable,
        requests=finished.requests,
        bytes_read=finished.bytes_read,
        server_gets=used.gets,
        server_get_bytes=used.get_bytes,
        server_lists=used.lists,
        peak_bytes=peak,
        retained_bytes=retained,
        scan_id=finished.pk,
        error=finished.error,
        cpu_s=cpu_s,
    )


def forget_scans() -> None:
    """Empty the scan cache, so the next scan reads every object again (the memory runs need real reads)."""
    from imports.models import ObjectHeader, Scan

    Scan.objects.all().delete()
    ObjectHeader.objects.all().delete()


def bytes_target(header_length: int) -> int:
    """The issue's target: 2 × header length, rounded up to a multiple of 8 KiB."""
    return math.ceil(2 * header_length / (8 * KiB)) * 8 * KiB


@dataclass
class PerObject:
    compared: int = 0
    within: int = 0
    target_total: int = 0
    header_total: int = 0
    requests: Counter[int] = field(default_factory=Counter)
    misses_by_kind: Counter[str] = field(default_factory=Counter)
    objects_by_kind: Counter[str] = field(default_factory=Counter)
    reader_lengths_known: int = 0
    reader_lengths_agree: int = 0
    not_ok: list[str] = field(default_factory=list)


def per_object(planned: list[Planned], prefix: str) -> PerObject:
    from imports.models import ObjectHeader

    expected = {p.key: p for p in planned if p.key.startswith(prefix)}
    result = PerObject()
    rows = ObjectHeader.objects.filter(
        bucket=BUCKET, key__startswith=prefix
    ).values_list("key", "status", "requests", "bytes_read", "header_length", "error")
    for key, status, requests, bytes_read, header_length, error in rows.iterator():
        plan = expected.get(key)
        if plan is None:
            continue
        if status != ObjectHeader.Status.OK:
            result.not_ok.append(f"{key}: {status} {error}")
        kind = f"{plan.modality} {transfer_syntax_name(plan.transfer_syntax)}" + (
            " + large private block" if plan.large_private else ""
        )
        result.objects_by_kind[kind] += 1
        result.requests[requests] += 1
        result.compared += 1
        target = bytes_target(plan.header_length)
        result.target_total += target
        result.header_total += plan.header_length
        if bytes_read <= target:
            result.within += 1
        else:
            result.misses_by_kind[kind] += 1
        if header_length is not None:
            result.reader_lengths_known += 1
            # The reader's header_length points at or just past the pixel data element's tag.
            if 0 <= header_length - plan.header_length <= 12:
                result.reader_lengths_agree += 1
    return result


# --- Report ---------------------------------------------------------------------------------------------------


def _fmt_bytes(value: float) -> str:
    if value >= 10 * 1024 * 1024:
        return f"{value / (1024 * 1024):,.1f} MiB"
    if value >= 10 * 1024:
        return f"{value / 1024:,.1f} KiB"
    return f"{value:,.0f} B"


@dataclass
class LinkRun:
    """The three strategies again, with every S3 response body paced through one modelled link."""

    mbps: float
    sequential: Baseline
    threaded: Baseline
    scan: ScanRun


def run_on_link(server: Server, args: argparse.Namespace, keys: list[str]) -> LinkRun:
    server.add_fault({"service": "s3", "bandwidth_mbps": args.bandwidth_mbps})
    sequential = whole_object_baseline(server, keys[: args.link_sequential_sample], 1)
    print(
        f"link {args.bandwidth_mbps:g} Mbit/s: baseline A {sequential.rate:,.1f} objects/s"
    )
    threaded = whole_object_baseline(server, keys[: args.threaded_sample], args.threads)
    print(
        f"link {args.bandwidth_mbps:g} Mbit/s: baseline B {threaded.rate:,.1f} objects/s"
    )
    forget_scans()
    scan = run_scan(server, PREFIX)
    print(f"link {args.bandwidth_mbps:g} Mbit/s: scan {scan.rate:,.1f} objects/s")
    return LinkRun(args.bandwidth_mbps, sequential, threaded, scan)


def _cpu_per_thousand(run: Baseline | ScanRun) -> str:
    return f"{run.cpu_ms_per_object:.2f} CPU-s"


def report(
    args: argparse.Namespace,
    planned: list[Planned],
    setup_s: float,
    sequential: Baseline,
    threaded: Baseline,
    scan: ScanRun,
    rescan: ScanRun,
    quarter: ScanRun,
    full: ScanRun,
    objects: PerObject,
    link: LinkRun | None,
) -> None:
    from django.conf import settings

    n = len(planned)
    rows: list[tuple[str, str, str, bool | None]] = []
    rows.append(
        (
            "Scanner client CPU per object",
            "≤ 1.0 ms",
            f"{scan.cpu_ms_per_object:.2f} ms; per 1,000 objects: scanner {_cpu_per_thousand(scan)}, "
            f"{threaded.threads}-thread baseline {_cpu_per_thousand(threaded)}, "
            f"sequential baseline {_cpu_per_thousand(sequential)} (process CPU time of each phase)",
            scan.cpu_ms_per_object <= 1.0,
        )
    )
    gets_per_object = scan.server_gets / max(1, scan.done)
    rows.append(
        (
            "GET requests per object",
            "≤ 1.05",
            f"{gets_per_object:.3f} ({scan.server_gets:,} GetObject at the server for {scan.done:,} objects)",
            gets_per_object <= 1.05,
        )
    )
    bytes_per_object = scan.server_get_bytes / max(1, scan.done)
    share = objects.within / max(1, objects.compared)
    rows.append(
        (
            "Bytes read per object",
            "≤ 2 × header length, rounded up to 8 KiB",
            f"{_fmt_bytes(bytes_per_object)} mean (server); mean header {_fmt_bytes(objects.header_total / max(1, objects.compared))}, "
            f"mean target {_fmt_bytes(objects.target_total / max(1, objects.compared))}; "
            f"{share:.1%} of objects within their own target",
            objects.compared > 0 and objects.within == objects.compared,
        )
    )
    speedup_sequential = scan.rate / sequential.rate
    rows.append(
        (
            "Throughput vs sequential whole-object + dcmread, loopback",
            "≥ 10 ×",
            f"{scan.rate:,.0f} vs {sequential.rate:,.1f} objects/s = {speedup_sequential:.1f} × "
            f"(baseline timed on {sequential.objects:,} objects, rate extrapolated)",
            speedup_sequential >= 10,
        )
    )
    speedup_threaded = scan.rate / threaded.rate
    rows.append(
        (
            f"Throughput vs {threaded.threads}-thread whole-object + dcmread, loopback",
            "≥ 1.5 ×",
            f"{scan.rate:,.0f} vs {threaded.rate:,.0f} objects/s = {speedup_threaded:.2f} × "
            f"(baseline timed on {threaded.objects:,} objects)",
            speedup_threaded >= 1.5,
        )
    )
    if link is not None:
        on_link = link.scan.rate / link.threaded.rate
        rows.append(
            (
                f"Throughput vs {link.threaded.threads}-thread whole-object + dcmread, "
                f"{link.mbps:g} Mbit/s modelled link",
                "≥ 2 ×",
                f"{link.scan.rate:,.0f} vs {link.threaded.rate:,.0f} objects/s = {on_link:.2f} × "
                f"(sequential: {link.sequential.rate:,.1f} objects/s on {link.sequential.objects:,} objects, "
                f"{link.scan.rate / link.sequential.rate:.0f} ×)",
                on_link >= 2,
            )
        )
    rows.append(
        (
            "Rescan of an unchanged prefix",
            "0 GET",
            f"{rescan.server_gets} GET, {rescan.server_lists} ListObjectsV2, {rescan.seconds:.1f} s "
            f"({rescan.cached:,} of {rescan.listed:,} objects from the cache)",
            rescan.server_gets == 0,
        )
    )
    ratio = (full.peak_bytes or 0) / max(1, quarter.peak_bytes or 0)
    # Below about 1,000 objects the write batch and the listing page are not full yet, so the two peaks
    # measure different things: the figure is shown, not judged.
    comparable = quarter.done >= MEMORY_MIN_QUARTER
    rows.append(
        (
            "Memory",
            f"flat (peak at N within {MEMORY_FLAT_RATIO} × peak at N/4)",
            f"traced peak {_fmt_bytes(quarter.peak_bytes or 0)} at {quarter.done:,} objects, "
            f"{_fmt_bytes(full.peak_bytes or 0)} at {full.done:,} objects ({ratio:.2f} ×)"
            + (
                ""
                if comparable
                else f"; not judged: N/4 is under {MEMORY_MIN_QUARTER:,} objects"
            ),
            ratio <= MEMORY_FLAT_RATIO if comparable else None,
        )
    )

    print()
    print(
        f"## Scan benchmark: {n:,} objects × {args.size_kb} KiB, {args.latency_ms} ms injected S3 latency, "
        f"SCAN_THREADS={settings.SCAN_THREADS}, SCAN_FIRST_READ_BYTES={settings.SCAN_FIRST_READ_BYTES:,}"
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.machine()}; "
        + (
            "localaws runs in a child process."
            if args.server == "process"
            else "localaws runs in the same process."
        )
    )
    print()
    print("| Figure | Target | Measured | Met? |")
    print("|---|---|---|---|")
    for figure, target, measured, met in rows:
        verdict = "n/a" if met is None else "yes" if met else "**no**"
        print(f"| {figure} | {target} | {measured} | {verdict} |")
    print()
    missed = [figure for figure, _t, _m, met in rows if met is False]
    if missed:
        print("TARGETS NOT MET: " + "; ".join(missed))
    else:
        print("All targets met.")

    print()
    print("Raw numbers")
    print(f"  setup (upload without latency): {setup_s:.1f} s for {n:,} objects")
    mean_size = sum(p.size for p in planned) / max(1, n)
    print(f"  mean object size: {_fmt_bytes(mean_size)}")
    baselines = [("sequential", sequential), ("threaded", threaded)]
    runs = [
        ("scan", scan),
        ("rescan", rescan),
        ("memory N/4", quarter),
        ("memory N", full),
    ]
    if link is not None:
        baselines += [
            (f"sequential on {link.mbps:g} Mbit/s", link.sequential),
            (f"threaded on {link.mbps:g} Mbit/s", link.threaded),
        ]
        runs.append((f"scan on {link.mbps:g} Mbit/s", link.scan))
    for name, base in baselines:
        print(
            f"  baseline {name}: {base.objects:,} objects, {base.threads} thread(s), {base.seconds:.2f} s, "
            f"{base.rate:,.1f} objects/s, {base.gets:,} GET, {_fmt_bytes(base.get_bytes)} read, "
            f"client CPU {base.cpu_s:.2f} s ({base.cpu_ms_per_object:.2f} ms per object)"
        )
    for name, run in runs:
        extra = ""
        if run.peak_bytes is not None:
            extra = f", traced peak {_fmt_bytes(run.peak_bytes)}, retained {_fmt_bytes(run.retained_bytes or 0)}"
        print(
            f"  {name} ({run.prefix}): status {run.status}{' ' + run.error if run.error else ''}, "
            f"{run.seconds:.2f} s, {run.rate:,.1f} objects/s, listed {run.listed:,}, read {run.done - run.cached:,}, "
            f"cached {run.cached:,}, unreadable {run.unreadable:,}; server: {run.server_gets:,} GET, "
            f"{_fmt_bytes(run.server_get_bytes)}, {run.server_lists} ListObjectsV2; "
            f"scan counters: {run.requests:,} requests, {_fmt_bytes(run.bytes_read)}{extra}; "
            f"client CPU {run.cpu_s:.2f} s ({run.cpu_ms_per_object:.2f} ms per object read or cached)"
        )
    print(
        "  GET requests per object (scan counters): "
        + ", ".join(
            f"{count:,} objects × {k}" for k, count in sorted(objects.requests.items())
        )
    )
    print(
        f"  reader's header_length known for {objects.reader_lengths_known:,} objects, "
        f"agrees with the written one for {objects.reader_lengths_agree:,}"
    )
    print("  objects by kind (objects over their bytes target):")
    for kind, count in sorted(objects.objects_by_kind.items()):
        print(f"    {kind}: {count:,} ({objects.misses_by_kind[kind]:,} over)")
    if objects.not_ok:
        print(f"  {len(objects.not_ok)} objects not read OK, first ones:")
        for line in objects.not_ok[:5]:
            print(f"    {line}")


# --- Main -----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scan_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--size-kb", type=int, default=512)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument(
        "--threads",
        type=int,
        default=16,
        help="threads of the whole-object baseline and the upload",
    )
    parser.add_argument(
        "--scan-threads",
        type=int,
        default=None,
        help="the scanner's SCAN_THREADS (default: the setting's own default)",
    )
    parser.add_argument("--sequential-sample", type=int, default=300)
    parser.add_argument(
        "--bandwidth-mbps",
        type=float,
        default=1000,
        help="re-run the three strategies with S3 bodies paced through a link this fast (0: skip)",
    )
    parser.add_argument("--link-sequential-sample", type=int, default=100)
    parser.add_argument("--threaded-sample", type=int, default=2_000)
    parser.add_argument(
        "--first-read-kb",
        type=int,
        default=None,
        help="override SCAN_FIRST_READ_BYTES (default: the setting's own default)",
    )
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="run localaws in a child process (default: S3's CPU is not the client's) or in a thread of this one",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.objects < 4:
        parser.error("--objects must be at least 4")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve_until_stdin_closes()
    if args.scan_threads is not None:
        os.environ["SCAN_THREADS"] = str(args.scan_threads)
    server: Server = ProcessServer() if args.server == "process" else ThreadServer()
    try:
        db = prepare_environment(server.endpoint_url, args.first_read_kb)
        print(
            f"localaws ({args.server}) at {server.endpoint_url}; throwaway database {db}"
        )

        started = time.perf_counter()
        planned = upload(args.objects, args.size_kb * KiB, args.threads)
        setup_s = time.perf_counter() - started
        print(
            f"setup: uploaded {len(planned):,} objects in {setup_s:.1f} s (no latency)"
        )

        server.add_fault({"service": "s3", "latency_ms": args.latency_ms})
        keys = [p.key for p in planned]
        sequential = whole_object_baseline(server, keys[: args.sequential_sample], 1)
        print(f"baseline A (sequential): {sequential.rate:,.1f} objects/s")
        threaded = whole_object_baseline(
            server, keys[: args.threaded_sample], args.threads
        )
        print(f"baseline B ({args.threads} threads): {threaded.rate:,.1f} objects/s")
        scan = run_scan(server, PREFIX)
        print(f"scan: {scan.rate:,.1f} objects/s ({scan.seconds:.1f} s)")
        objects = per_object(planned, PREFIX)
        rescan = run_scan(server, PREFIX)
        print(f"rescan: {rescan.server_gets} GET in {rescan.seconds:.1f} s")

        forget_scans()
        quarter = run_scan(server, f"{PREFIX}q0/", trace=True)
        print(f"memory: N/4 scan, traced peak {_fmt_bytes(quarter.peak_bytes or 0)}")
        forget_scans()
        full = run_scan(server, PREFIX, trace=True)
        print(f"memory: N scan, traced peak {_fmt_bytes(full.peak_bytes or 0)}")
        link = run_on_link(server, args, keys) if args.bandwidth_mbps > 0 else None

        report(
            args,
            planned,
            setup_s,
            sequential,
            threaded,
            scan,
            rescan,
            quarter,
            full,
            objects,
            link,
        )
    finally:
        server.stop()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
