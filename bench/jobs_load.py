"""The load part of bench.jobs_bench: gunicorn, locust in headless mode, and the AWS poller beside them.

Import after django.setup(). Viewers are locust users polling the status fragment through gunicorn; the
poller is `jobtracking.jobs_poll`, called every 2 s as Celery beat does (`poll-import-jobs`), in a thread
of the benchmark. GetDICOMImportJob calls are counted at localaws, so a call made by anything other
than the poller (a view, say) would show as a difference between the two counts.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import Client
from django.utils import timezone

from imports.aws import client as aws
from imports.jobs.tracking import jobs_poll
from imports.models import Datastore, ImportJob

ROOT = Path(__file__).resolve().parent.parent
POLL_EVERY_S = 2.0  # beat's schedule for imports.jobs_poll
GUNICORN_WORKERS = 4


# --- localaws ---------------------------------------------------------------------------------------------------


def localaws(endpoint_url: str, method: str, path: str, body: Any = None) -> Any:
    """localaws's control API (/_localaws/...), over HTTP as an operator would use it."""
    request = urllib.request.Request(
        f"{endpoint_url}/_localaws/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def running_jobs_create(*, endpoint_url: str, region: str, count: int) -> list[int]:
    """`count` jobs IN_PROGRESS at localaws (and kept there for an hour), each with its ImportJob row."""
    localaws(
        endpoint_url,
        "POST",
        "config",
        {"job_submitted_delay_s": 0, "job_in_progress_delay_s": 3600},
    )
    client = aws.healthimaging_client(region)
    datastore_id = client.create_datastore(
        datastoreName="jobs-bench", clientToken=str(uuid.uuid4())
    )["datastoreId"]
    for _ in range(100):
        if (
            client.get_datastore(datastoreId=datastore_id)["datastoreProperties"][
                "datastoreStatus"
            ]
            == "ACTIVE"
        ):
            break
        time.sleep(0.1)
    aws.s3_client(region).create_bucket(Bucket="jobs-bench-in")
    aws.s3_client(region).create_bucket(Bucket="jobs-bench-out")
    datastore = Datastore.objects.create(
        name="Bench (localaws)",
        region=region,
        datastore_id=datastore_id,
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri="s3://jobs-bench-in/incoming/",
        output_s3_uri="s3://jobs-bench-out/results/",
    )
    mappings = [
        {
            "studyInstanceUID": f"2.25.{1000 + n}",
            "metadataFilePath": f"metadata/{n}.json",
        }
        for n in range(1000)
    ]
    pks = []
    for number in range(count):
        request = {
            "datastoreId": datastore_id,
            "dataAccessRoleArn": datastore.role_arn,
            "inputS3Uri": datastore.input_s3_uri,
            "outputS3Uri": datastore.output_s3_uri,
            "jobName": f"watched-{number}",
        }
        token = str(uuid.uuid4())
        started = aws.import_job_start(
            region=region, request=request, client_token=token
        )
        job = ImportJob.objects.create(
            datastore=datastore,
            # Stored as a composed job's request is: with its 1,000 mappings (left out of the call to
            # localaws, which would otherwise check 1,000 metadata files that are not there).
            request={
                **request,
                "importConfiguration": {"dicomMetadataMappings": mappings},
            },
            mapping_count=len(mappings),
            client_token=token,
            job_name=request["jobName"],
            input_s3_uri=datastore.input_s3_uri,
            status=ImportJob.Status.IN_PROGRESS,
            aws_job_id=started.job_id,
            submitted_at=timezone.now(),
            started_at=timezone.now(),
        )
        pks.append(job.pk)
    return pks


def get_import_job_calls(endpoint_url: str) -> int:
    return sum(
        1
        for call in localaws(endpoint_url, "GET", "calls")
        if call.get("operation") == "GetDICOMImportJob"
    )


# --- The poller -------------------------------------------------------------------------------------------------


class Poller(threading.Thread):
    """jobs_poll() every POLL_EVERY_S on a fixed clock, as beat runs it; counts the calls it says it made."""

    def __init__(self) -> None:
        super().__init__(name="jobs-bench-poller", daemon=True)
        self.stopping = threading.Event()
        self.calls = 0
        self.runs = 0
        self.started_at = 0.0
        self.stopped_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        tick = self.started_at
        while not self.stopping.is_set():
            self.calls += jobs_poll()
            self.runs += 1
            tick += POLL_EVERY_S
            self.stopping.wait(max(0.0, tick - time.monotonic()))
        self.stopped_at = time.monotonic()
        from django.db import connection

        connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)

    @property
    def minutes(self) -> float:
        return (self.stopped_at - self.started_at) / 60


# --- gunicorn and locust ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Gunicorn:
    """The dashboard under gunicorn (sync workers, as in the README's Production section), with an access log
    that records each request's server time, so the server's own p95 can be read beside locust's."""

    def __init__(self, log_dir: Path, workers: int = GUNICORN_WORKERS) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = log_dir / "gunicorn-access.log"
        self.access_log.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "config.wsgi",
                "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
                "--access-logfile", str(self.access_log),
                # status, microseconds, path
                "--access-logformat", "%(s)s %(D)s %(U)s",
                "--log-level", "warning",
            ],
            cwd=ROOT,
            env=os.environ.copy(),
            start_new_session=True,
        )  # fmt: skip
        self.workers = workers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                # Any answer will do (a redirect to the sign-in page): the workers are up.
                probe = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                probe.request("GET", "/jobs/")
                probe.getresponse().read()
                probe.close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("gunicorn did not answer within 60 s")

    def warm_up(self, session: str, job_id: int) -> None:
        """Load every worker's templates, URL resolver and database connection before anything is timed."""
        request = urllib.request.Request(
            f"{self.url}/jobs/{job_id}/status/",
            headers={"HX-Request": "true", "Cookie": f"sessionid={session}"},
        )

        def get(_: int) -> None:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()

        with ThreadPoolExecutor(2 * self.workers) as pool:
            list(pool.map(get, range(20 * self.workers)))

    def log_mark(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def server_times_ms(self, since: int, path_part: str) -> list[float]:
        with self.access_log.open("rb") as log:
            log.seek(since)
            lines = log.read().decode().splitlines()
        return [
            int(fields[1]) / 1000
            for fields in (line.split() for line in lines)
            if len(fields) == 3 and path_part in fields[2]
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def viewer_sessions(user: Any, count: int) -> list[str]:
    """One signed-in session per viewer, made as a sign-in makes them."""
    cookies = []
    for _ in range(count):
        client = Client()
        client.force_login(user)
        cookies.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
    return cookies


@dataclass
class LoadRun:
    generator: str  # "locust" or "wrk"
    generator_cpu_s: float  # the load generator's own CPU (user + system) over its run
    viewers: int
    seconds: float
    requests: int
    failures: int
    client_p50_ms: float
    client_p95_ms: float
    server_p50_ms: float
    server_p95_ms: float
    server_requests: int
    poller_calls: int
    poller_runs: int
    localaws_calls: int
    minutes: float
    failure_samples: list[str]

    @property
    def calls_per_minute(self) -> float:
        return self.localaws_calls / self.minutes if self.minutes else 0.0


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        if ordered
        else 0.0
    )


def load_run(
    *,
    gunicorn: Gunicorn,
    endpoint_url: str,
    sessions: list[str],
    job_ids: list[int],
    viewers: int,
    seconds: int,
    log_dir: Path,
) -> LoadRun:
    """`viewers` locust users for `seconds`, with the poller running over the same time."""
    # Every window starts young (the poller's 2 s band) and due now, so both windows are polled alike.
    ImportJob.objects.filter(pk__in=job_ids).update(
        submitted_at=timezone.now(), next_poll_at=None
    )
    localaws(endpoint_url, "DELETE", "calls")
    mark = gunicorn.log_mark()
    prefix = log_dir / f"locust-{viewers}"
    env = {
        **os.environ,
        "JOBS_BENCH_SESSIONS": ",".join(sessions[:viewers]),
        "JOBS_BENCH_JOBS": ",".join(str(pk) for pk in job_ids),
    }
    poller = Poller()
    poller.start()
    started = time.monotonic()
    cpu_before = _children_cpu_s()
    subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "jobs_locust.py"),
            "--headless", "--users", str(viewers), "--spawn-rate", str(max(1, viewers // 4)),
            "--run-time", f"{seconds}s", "--host", gunicorn.url, "--csv", str(prefix),
            "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5",
        ],
        cwd=ROOT, env=env, check=False, timeout=seconds + 60,
        stdout=subprocess.DEVNULL, stderr=(log_dir / f"locust-{viewers}.log").open("w"),
    )  # fmt: skip
    elapsed = time.monotonic() - started
    generator_cpu_s = _children_cpu_s() - cpu_before
    poller.stop()
    calls = get_import_job_calls(endpoint_url)
    server = gunicorn.server_times_ms(mark, "/status/")
    row = _aggregated(Path(f"{prefix}_stats.csv"))
    samples = []
    failures_csv = Path(f"{prefix}_failures.csv")
    if failures_csv.exists():
        with failures_csv.open() as handle:
            samples = [
                f"{r['Occurrences']} × {r['Error']}" for r in csv.DictReader(handle)
            ][:3]
    return LoadRun(
        generator="locust",
        generator_cpu_s=generator_cpu_s,
        viewers=viewers,
        seconds=elapsed,
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        client_p50_ms=float(row["50%"]),
        client_p95_ms=float(row["95%"]),
        server_p50_ms=statistics.median(server) if server else 0.0,
        server_p95_ms=_p95(server),
        server_requests=len(server),
        poller_calls=poller.calls,
        poller_runs=poller.runs,
        localaws_calls=calls,
        minutes=poller.minutes,
        failure_samples=samples,
    )


def _aggregated(stats_csv: Path) -> dict[str, str]:
    with stats_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    return next(r for r in rows if r["Name"] == "Aggregated")


def wrk_available() -> bool:
    """wrk comes from Debian's package (`apt-get install wrk`); without it the bench runs locust alone."""
    return shutil.which("wrk") is not None


def _children_cpu_s() -> float:
    """CPU of the children this process has waited for: a generator run with subprocess.run is counted once
    it ends (gunicorn, still running, is not)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk(
    *, url: str, connections: int, seconds: int, env: dict[str, str]
) -> tuple[dict[str, Any], float]:
    """One wrk run with bench/jobs_wrk.lua; its JSON line and its own CPU-seconds."""
    cpu_before = _children_cpu_s()
    finished = subprocess.run(
        [
            "wrk", "--threads", str(min(2, connections)), "--connections", str(connections), "--duration", f"{seconds}s",
            "--timeout", "10s", "--script", str(ROOT / "bench" / "jobs_wrk.lua"), url,
        ],
        cwd=ROOT, env={**os.environ, **env}, check=True, timeout=seconds + 60,
        capture_output=True, text=True,
    )  # fmt: skip
    cpu = _children_cpu_s() - cpu_before
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    return summary, cpu


def wrk_load_run(
    *,
    gunicorn: Gunicorn,
    endpoint_url: str,
    sessions: list[str],
    job_ids: list[int],
    viewers: int,
    seconds: int,
) -> LoadRun:
    """`viewers` wrk connections polling every 2 s for `seconds`, with the poller running, as load_run does
    with locust. wrk is C with one event loop per thread, so on 2 cores it takes little of the CPU gunicorn
    needs; its CPU is reported beside locust's."""
    ImportJob.objects.filter(pk__in=job_ids).update(
        submitted_at=timezone.now(), next_poll_at=None
    )
    localaws(endpoint_url, "DELETE", "calls")
    mark = gunicorn.log_mark()
    poller = Poller()
    poller.start()
    started = time.monotonic()
    summary, cpu = _wrk(
        url=gunicorn.url,
        connections=viewers,
        seconds=seconds,
        env={
            "JOBS_BENCH_SESSIONS": ",".join(sessions[:viewers]),
            "JOBS_BENCH_JOBS": ",".join(str(pk) for pk in job_ids),
            "JOBS_BENCH_PACE_MS": str(int(POLL_EVERY_S * 1000)),
        },
    )
    elapsed = time.monotonic() - started
    poller.stop()
    calls = get_import_job_calls(endpoint_url)
    server = gunicorn.server_times_ms(mark, "/status/")
    errors = sum(summary[k] for k in ("connect", "read", "write", "timeout"))
    return LoadRun(
        generator="wrk",
        generator_cpu_s=cpu,
        viewers=viewers,
        seconds=elapsed,
        requests=int(summary["requests"]),
        # Status errors are also body failures in the script's count; socket errors are not.
        failures=int(summary["failures"]) + errors,
        client_p50_ms=float(summary["p50_ms"]),
        client_p95_ms=float(summary["p95_ms"]),
        server_p50_ms=statistics.median(server) if server else 0.0,
        server_p95_ms=_p95(server),
        server_requests=len(server),
        poller_calls=poller.calls,
        poller_runs=poller.runs,
        localaws_calls=calls,
        minutes=poller.minutes,
        failure_samples=[f"{errors} socket errors"] if errors else [],
    )


@dataclass
class HealthRun:
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    seconds: float
    generator_cpu_s: float


def wrk_health_run(
    *, gunicorn: Gunicorn, connections: int, pace_ms: int, seconds: int
) -> HealthRun:
    """/healthz asked by `connections` probes every `pace_ms`: the database, broker and beat probes each time."""
    summary, cpu = _wrk(
        url=gunicorn.url,
        connections=connections,
        seconds=seconds,
        env={"JOBS_BENCH_PATH": "/healthz", "JOBS_BENCH_PACE_MS": str(pace_ms)},
    )
    errors = sum(summary[k] for k in ("connect", "read", "write", "timeout"))
    return HealthRun(
        requests=int(summary["requests"]),
        failures=int(summary["failures"]) + errors,
        p50_ms=float(summary["p50_ms"]),
        p95_ms=float(summary["p95_ms"]),
        seconds=float(summary["duration_s"]),
        generator_cpu_s=cpu,
    )
