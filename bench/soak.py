"""Soak of the embedded default (issue 23, item 21): beat's real schedule, a worker, scans and jobs, for 30 minutes.

    python -m bench.soak [--minutes 30] [--scan-every 60] [--job-every 90]

What a newcomer's `make demo` runs, minus the web server: SQLite and the file-system broker (under var/soak/,
recreated each run), localaws in a child process with the demo corpus (`seed_demo`), one `celery worker
--concurrency 2` started as Procfile.demo starts it, and one `celery beat` with the project's whole schedule (the
poller every 2 s, the heartbeat, the stalled-scan recovery, the audit checkpoint). Every `--scan-every` seconds a
scan of the demo prefix is enqueued for the worker (`scanning.control.scan_start`); every `--job-every` seconds an
import is submitted with `manage.py import_job submit`, as a script would. At the end it waits for the work to end
and prints a table: whether the worker and beat lived through it (same pids, no "Unrecoverable error" or CRITICAL
line in their logs), scans and jobs started, ended and left behind, beat's heartbeat age, and the worker's memory at
the start and the end. A measurement, not a test: it exits 0 and names what was missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOAK_DIR = ROOT / "var" / "soak"
REGION = "us-east-1"
DEMO_DATASTORE = "Demo datastore"
# What made the worker die before the broker's writes became atomic (config/broker_files.py).
FATAL_MARKS = ("Unrecoverable error", "CRITICAL")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(localaws_port: int) -> dict[str, str]:
    """The demo's variables (Makefile, `demo:`), with the database and broker under var/soak/."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "true",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_AUDIT_KEY": secrets.token_hex(32),
        "DATABASE_URL": f"sqlite:///{SOAK_DIR / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_FILESYSTEM_DIR": str(SOAK_DIR / "celery"),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{localaws_port}",
        "AWS_ACCESS_KEY_ID": "localaws",
        "AWS_SECRET_ACCESS_KEY": "localaws",
        "AWS_DEFAULT_REGION": REGION,
        "DJANGO_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


def _start(
    name: str, command: list[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    log = (SOAK_DIR / f"{name}.log").open("wb")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _rss_mib(pid: int) -> float:
    """The resident memory of a process and its children (the worker's pool), in MiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        status = Path(f"/proc/{each}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _fatal_lines(name: str) -> list[str]:
    text = (SOAK_DIR / f"{name}.log").read_text(errors="replace")
    return [line for line in text.splitlines() if any(m in line for m in FATAL_MARKS)]


@dataclass
class Tally:
    scans_started: int = 0
    jobs_submitted: int = 0
    submit_failures: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--scan-every", type=float, default=60.0)
    parser.add_argument("--job-every", type=float, default=90.0)
    args = parser.parse_args(argv)

    shutil.rmtree(SOAK_DIR, ignore_errors=True)
    (SOAK_DIR / "celery").mkdir(parents=True)
    port = _free_port()
    env = {**os.environ, **_environment(port)}
    env.pop("CACHE_URL", None)
    os.environ.clear()
    os.environ.update(env)
    manage = [sys.executable, "manage.py"]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["localaws"] = _start(
            "localaws",
            [
                *manage,
                "localaws",
                "--port",
                str(port),
                "--state",
                str(SOAK_DIR / "localaws"),
            ],
            env,
        )
        subprocess.run(
            [*manage, "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        subprocess.run(
            [*manage, "seed_demo", "--wait-for-localaws"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # As Procfile.demo starts them.
        processes["worker"] = _start(
            "worker",
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env,
        )  # fmt: skip
        processes["beat"] = _start(
            "beat",
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
             "--schedule", str(SOAK_DIR / "celerybeat-schedule")],
            env,
        )  # fmt: skip
        pids = {name: p.pid for name, p in processes.items()}
        import django

        django.setup()
        from imports.models import Datastore, ImportJob, Scan
        from imports.operations.health import health
        from imports.scanning import control
        from localaws import democorpus

        datastore = Datastore.objects.get(name=DEMO_DATASTORE)
        rss_start = 0.0  # measured once a quarter of the soak has passed: the first tasks load what they import
        load_start = " ".join(f"{v:.1f}" for v in os.getloadavg())
        tally = Tally()
        started = time.monotonic()
        next_scan = next_job = started
        end = started + args.minutes * 60
        print(
            f"soak: {args.minutes:g} min, a scan every {args.scan_every:g} s, a job every {args.job_every:g} s"
        )
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_scan:
                scan, created = control.scan_start(
                    actor=None, bucket=democorpus.INPUT_BUCKET, prefix=democorpus.INPUT_PREFIX,
                    region=datastore.region, datastore=datastore,
                )  # fmt: skip
                tally.scans_started += int(created)
                next_scan += args.scan_every
            if now >= next_job:
                number = tally.jobs_submitted + len(tally.submit_failures) + 1
                submitted = subprocess.run(
                    [*manage, "import_job", "submit", "--datastore", DEMO_DATASTORE, "--name", f"soak-{number}",
                     "--accept-warnings", "--allow-duplicate", "--user", "operator"],
                    cwd=ROOT, env=env, capture_output=True, text=True,
                )  # fmt: skip
                if submitted.returncode == 0:
                    tally.jobs_submitted += 1
                else:
                    tally.submit_failures.append(
                        submitted.stderr.strip().splitlines()[-1:][0]
                        if submitted.stderr
                        else "?"
                    )
                next_job += args.job_every
            time.sleep(1)
            if not rss_start and time.monotonic() - started >= args.minutes * 15:
                rss_start = _rss_mib(processes["worker"].pid)
            for name, process in processes.items():
                if process.poll() is not None:
                    print(
                        f"soak: {name} exited with {process.returncode} after {time.monotonic() - started:.0f} s"
                    )
                    end = 0
        soak_s = time.monotonic() - started
        rss_end = (
            _rss_mib(processes["worker"].pid)
            if processes["worker"].poll() is None
            else 0.0
        )
        # Let the last scan and jobs end.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (
            Scan.objects.filter(status__in=Scan.ACTIVE).exists()
            or ImportJob.objects.exclude(status__in=ImportJob.ENDED).exists()
        ):
            time.sleep(2)
        checks = health().checks
        alive = {
            name: processes[name].poll() is None and processes[name].pid == pids[name]
            for name in ("worker", "beat")
        }
        fatal = {name: _fatal_lines(name) for name in ("worker", "beat")}
        scans: dict[str, int] = {
            s: Scan.objects.filter(status=s).count() for s in Scan.Status
        }
        jobs = {s: ImportJob.objects.filter(status=s).count() for s in ImportJob.Status}
        left_scans = sum(scans[s] for s in Scan.ACTIVE)
        left_jobs = sum(n for s, n in jobs.items() if s not in ImportJob.ENDED)
        load_end = " ".join(f"{v:.1f}" for v in os.getloadavg())
    finally:
        for process in reversed(list(processes.values())):
            _stop(process)

    rows = [
        ("Worker and beat alive, same processes", "yes", ", ".join(f"{n} {'yes' if a else 'NO'}" for n, a in alive.items()), all(alive.values())),
        ("Fatal lines in their logs", "0", ", ".join(f"{n} {len(lines)}" for n, lines in fatal.items()), not any(fatal.values())),
        ("Scans enqueued / completed / left queued or running", "none left", f"{tally.scans_started} / {scans['completed']} / {left_scans}", left_scans == 0 and scans["completed"] == tally.scans_started),
        ("Jobs submitted / ended / left", "none left", f"{tally.jobs_submitted} / {sum(jobs[s] for s in ImportJob.ENDED)} / {left_jobs} ({', '.join(f'{k} {v}' for k, v in jobs.items() if v)})", left_jobs == 0 and not tally.submit_failures),
        ("/healthz probes at the end", "all ok", ", ".join(f"{k} {v}" for k, v in checks.items()), all(v == "ok" for v in checks.values())),
        ("Worker resident memory (worker and pool), at a quarter → at the end", "flat (≤ 1.25 ×)", f"{rss_start:.0f} → {rss_end:.0f} MiB", 0 < rss_end <= 1.25 * rss_start),
    ]  # fmt: skip
    print()
    print(
        f"## Soak of the embedded default: {soak_s / 60:.1f} min of beat's schedule, scans and jobs"
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; load average {load_start} at the start, {load_end} at the end"
    )
    print()
    print("| Figure | Target | Measured | Met? |")
    print("|---|---|---|---|")
    for figure, target, measured, met in rows:
        print(f"| {figure} | {target} | {measured} | {'yes' if met else '**no**'} |")
    missed = [figure for figure, _t, _m, met in rows if not met]
    print()
    print("TARGETS NOT MET: " + "; ".join(missed) if missed else "All targets met.")
    for name, lines in fatal.items():
        for line in lines[:5]:
            print(f"  {name}: {line[:200]}")
    for failure in tally.submit_failures[:5]:
        print(f"  import_job submit: {failure[:200]}")
    print(f"Logs: {SOAK_DIR}/worker.log, beat.log, localaws.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
