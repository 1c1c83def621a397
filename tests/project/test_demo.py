"""`make demo`: Ctrl-C stops the Celery worker cleanly within honcho's grace, even mid-task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, missing_service, wait_for

pytestmark = pytest.mark.worker


def demo_worker_command() -> str:
    """Procfile.demo's worker line, with this interpreter's tools and the tests' tasks."""
    line = next(
        line
        for line in (ROOT / "Procfile.demo").read_text().splitlines()
        if line.startswith("worker:")
    )
    bin_dir = Path(sys.executable).parent
    return (
        line.split(":", 1)[1].replace(".venv/bin/", f"{bin_dir}/")
        + " -I tests.worker_tasks"
    )


def test_ctrl_c_stops_the_demo_worker_cleanly_while_a_long_task_runs(
    tmp_path: Path,
) -> None:
    procfile = tmp_path / "Procfile"
    # A stand-in for runserver, which stops at once and so starts honcho's countdown to SIGKILL.
    procfile.write_text(
        f"worker:{demo_worker_command()}\n"
        f"web: exec {sys.executable} -c 'import time; time.sleep(600)'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    # The demo's own broker: the file-system transport, in a folder of this test's.
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="true",
        CELERY_FILESYSTEM_DIR=str(tmp_path / "celery"),
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "honcho.log"
    with log.open("wb") as out:
        honcho = subprocess.Popen(
            [sys.executable, "-m", "config.demo", "--procfile", str(procfile)]
            + ["-d", str(ROOT), "start"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: "ready." in log.read_text(),
            timeout=60,
            what=f"the worker to start:\n{log.read_text()}",
        )
        if honcho.poll() is not None:
            missing_service(f"honcho did not start:\n{log.read_text()}")
        marker = tmp_path / "started"
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from config.celery import app; "
                "app.send_task('tests.sleep_long', args=[sys.argv[1]])",
                str(marker),
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        wait_for(marker.exists, timeout=60, what="the long task to start")
        honcho.send_signal(signal.SIGINT)  # what Ctrl-C sends honcho
        honcho.wait(timeout=120)
    finally:
        if honcho.poll() is None:
            honcho.kill()
    output = log.read_text()
    assert "sending SIGKILL" not in output, output
    assert "worker.1 stopped (rc=0)" in output, output
    # The task was not lost: it goes back on the queue for the next start.
    assert "Restoring 1 unacknowledged message(s)" in output, output
