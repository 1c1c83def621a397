"""Benchmark of one scan fanned out over Celery worker processes (issue 20, "Performance").

    python -m bench.fanout_bench [--objects 20000] [--size-kb 64] [--latency-ms 20] [--processes 1,2,4]
                                 [--database-url postgres://…]

localaws runs in a child process (bench.scan_bench's ProcessServer) with `latency_ms` on every S3 request; the
database is a throwaway SQLite file (or `--database-url`'s, flushed first) and the broker the embedded file-system one, both under var/bench/. For each
process count it empties the scan cache, starts `celery worker -P prefork --concurrency P -Q scan`, starts one
scan of the prefix from this process (the coordinator and its chunk tasks run on the worker), waits for it to
end and stops the worker. Objects/s is from the scan's start to its end; CPU is the worker's (the main process
and its children), and beside it localaws's own, which shares this machine's cores with the workers (S3 does not);
requests are counted at the server. It prints a Markdown table and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs; a dependency of locust (requirements-dev)

from bench.scan_bench import (
    BENCH_DIR,
    BUCKET,
    PREFIX,
    REGION,
    ROOT,
    KiB,
    ProcessServer,
    forget_scans,
    prepare_environment,
)
from bench.scan_data import UID_ROOT, build_object, key_for

# bench.scan_data's realistic objects take about 30 ms each to build: this many are built, one per series
# layout, and every object is one of them with a SOP Instance UID of its own (same length, so the bytes stay valid).
TEMPLATES = 40
FIRST = 100_000


@dataclass
class Run:
    processes: int
    objects: int
    seconds: float
    cpu_s: float
    gets: int
    lists: int
    chunks: int
    pids: int
    status: str
    peak_rss: int
    server_cpu_s: float

    @property
    def rate(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0


def _cpu(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _rss(process: psutil.Process) -> int:
    peak = 0
    for p in process.children(recursive=True):
        try:
            peak = max(peak, p.memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return peak


def start_worker(processes: int, log: Path) -> subprocess.Popen[bytes]:
    # Messages a previous run left behind would be read by this worker.
    celery_dir = BENCH_DIR / "celery"
    shutil.rmtree(celery_dir, ignore_errors=True)
    for folder in ("queue", "processed", "control"):
        (celery_dir / folder).mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork",
        "--concurrency", str(processes), "-Q", "scan", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-l", "WARNING", "-n", f"bench-{processes}@%h",
    ]  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(
            command, cwd=ROOT, env=os.environ, stdout=out, stderr=subprocess.STDOUT
        )
    # Ready when every pool process is up (a cold child would be billed to the scan).
    deadline = time.monotonic() + 60
    parent = psutil.Process(worker.pid)
    while len(parent.children()) < processes:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    time.sleep(1.0)  # the children import the app after they fork
    return worker


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=10)


def run_once(server: ProcessServer, processes: int) -> Run:
    from imports.models import Scan, ScanChunk
    from imports.scanning.control import scan_start

    forget_scans()
    worker = start_worker(processes, BENCH_DIR / f"worker-{processes}.log")
    try:
        parent = psutil.Process(worker.pid)
        emulator = psutil.Process(server.process.pid)
        cpu_before = _cpu(parent)
        emulator_before = _cpu(emulator)
        counted = server.counters()
        started = time.perf_counter()
        scan, _ = scan_start(actor=None, bucket=BUCKET, prefix=PREFIX, region=REGION)
        peak_rss = 0
        while True:
            scan.refresh_from_db()
            if not scan.is_active:
                break
            peak_rss = max(peak_rss, _rss(parent))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        cpu_s = _cpu(parent) - cpu_before
        server_cpu_s = _cpu(emulator) - emulator_before
        used = server.counters() - counted
        chunks = ScanChunk.objects.filter(scan=scan)
        pids = len(set(chunks.values_list("lease_pid", flat=True)))
        return Run(
            processes=processes,
            objects=scan.objects_done,
            seconds=seconds,
            cpu_s=cpu_s,
            gets=used.gets,
            lists=used.lists,
            chunks=chunks.count(),
            pids=pids,
            status=Scan.Status(scan.status).label,
            peak_rss=peak_rss,
            server_cpu_s=server_cpu_s,
        )
    finally:
        stop_worker(worker)


def report(args: argparse.Namespace, runs: list[Run]) -> None:
    base = runs[0].rate if runs else 0.0
    print()
    print(
        f"One scan of {args.objects:,} objects ({args.size_kb} KiB each), {args.latency_ms:g} ms per S3 "
        f"request, SCAN_THREADS={os.environ.get('SCAN_THREADS', 'default')}, "
        f"{os.cpu_count()} CPUs"
    )
    print()
    print(
        "| processes | status | objects | seconds | objects/s | ratio vs 1 | CPU ms/object "
        "| localaws CPU ms/object | requests/object (GET+LIST) | chunks (pids) | peak RSS/process |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        per_object = (run.gets + run.lists) / max(1, run.objects)
        print(
            f"| {run.processes} | {run.status} | {run.objects:,} | {run.seconds:.1f} | {run.rate:,.0f} "
            f"| {run.rate / base if base else 0:.2f}× | {run.cpu_s * 1000 / max(1, run.objects):.2f} "
            f"| {run.server_cpu_s * 1000 / max(1, run.objects):.2f} "
            f"| {per_object:.3f} ({run.gets:,}+{run.lists:,}) | {run.chunks} ({run.pids}) "
            f"| {run.peak_rss / 2**20:.0f} MiB |"
        )


def upload(n: int, size: int, threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from imports.aws import client as aws

    aws.s3_client(REGION).create_bucket(Bucket=BUCKET)
    pixels = os.urandom(size)
    templates = []
    for t in range(TEMPLATES):
        index = FIRST + t * 50
        data, _ = build_object(PREFIX, index, 2 * FIRST, size, pixels)
        templates.append((data, f"{UID_ROOT}12.{index + 1}".encode()))

    def put(j: int) -> None:
        data, sop = templates[j % TEMPLATES]
        own = f"{UID_ROOT}12.{FIRST + j + 1}".encode()
        assert len(own) == len(sop)
        aws.s3_put_object(
            region=REGION,
            bucket=BUCKET,
            key=key_for(PREFIX, j, n),
            body=data.replace(sop, own),
            content_type="application/dicom",
        )

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(put, range(n)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--size-kb", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument(
        "--database-url",
        help="a database of its own (flushed first), e.g. PostgreSQL; a throwaway SQLite file otherwise",
    )
    parser.add_argument("--threads", type=int, default=16, help="upload threads")
    args = parser.parse_args(argv)
    args.process_counts = [int(p) for p in args.processes.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = ProcessServer()
    try:
        db = prepare_environment(server.endpoint_url, None, args.database_url)
        print(f"localaws at {server.endpoint_url}; throwaway database {db}")
        started = time.perf_counter()
        upload(args.objects, args.size_kb * KiB, args.threads)
        print(
            f"setup: uploaded {args.objects:,} objects in {time.perf_counter() - started:.1f} s"
        )
        server.add_fault({"service": "s3", "latency_ms": args.latency_ms})
        runs = []
        for processes in args.process_counts:
            run = run_once(server, processes)
            print(
                f"{processes} process(es): {run.rate:,.0f} objects/s ({run.seconds:.1f} s, {run.status})"
            )
            runs.append(run)
        report(args, runs)
    finally:
        server.stop()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
