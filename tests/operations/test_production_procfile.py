"""The production Procfile: its processes serve every queue, one beat, and started together they are healthy.

The live test starts the Procfile with honcho, as an operator would, on this run's database and a broker of its
own (a folder, or another Redis database), and waits for /healthz to say the database, the broker and beat are ok:
beat's heartbeat reaches the database only through a worker that consumes the `default` queue.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import ROOT, _database_url_for_worker

PROCFILE = ROOT / "Procfile"


def _processes(text: str) -> dict[str, str]:
    return dict(
        line.split(":", 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


def _queues_served(command: str) -> set[str]:
    words = shlex.split(command)
    if "worker" not in words:
        return set()
    if "-Q" not in words:
        # A worker without -Q consumes every queue.
        return {queue.name for queue in settings.CELERY_TASK_QUEUES}
    return set(words[words.index("-Q") + 1].split(","))


def layout_problems(text: str) -> list[str]:
    processes = _processes(text)
    problems = []
    if next(iter(processes), None) != "web":
        problems.append("web must come first: it gets the base port")
    beats = [name for name, command in processes.items() if " beat" in command]
    if len(beats) != 1:
        problems.append(f"exactly one beat is needed, found {len(beats)}")
    if any(re.search(r"\s-B(\s|$)", command) for command in processes.values()):
        problems.append("a worker runs beat inside it (-B)")
    served = set().union(*(_queues_served(c) for c in processes.values()))
    missing = {queue.name for queue in settings.CELERY_TASK_QUEUES} - served
    if missing:
        problems.append(f"no worker consumes {', '.join(sorted(missing))}")
    return problems


def test_every_queue_is_served_by_a_worker_and_beat_runs_once() -> None:
    assert layout_problems(PROCFILE.read_text()) == []


def test_the_layout_check_names_what_is_wrong() -> None:
    text = PROCFILE.read_text()
    without_poll = "\n".join(
        line for line in text.splitlines() if not line.startswith("worker_poll:")
    )
    assert layout_problems(without_poll) == ["no worker consumes poll"]
    two_beats = text + "\nbeat2: celery -A config beat\n"
    assert layout_problems(two_beats) == ["exactly one beat is needed, found 2"]
    with_b = text.replace("-Q scan", "-Q scan -B")
    assert layout_problems(with_b) == ["a worker runs beat inside it (-B)"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _own_broker(tmp_path: Path) -> dict[str, str]:
    """A broker nothing else in this run consumes: the session's worker must not take these messages."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    if url.startswith("redis://"):
        return {"CELERY_BROKER_URL": re.sub(r"/\d+$", "", url) + "/13"}
    return {"CELERY_FILESYSTEM_DIR": str(tmp_path / "celery")}


def _healthz(port: int) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/healthz", timeout=5
        ) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_procfile_starts_a_healthy_deployment(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        **_own_broker(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url_for_worker(),
        "PYTHONUNBUFFERED": "1",
        "HEALTH_BEAT_EVERY_S": "1",
        "WEB_CONCURRENCY": "1",
        "SUBMIT_CONCURRENCY": "1",
        "POLL_CONCURRENCY": "1",
        "SCAN_CONCURRENCY": "1",
        "CELERY_BEAT_SCHEDULE_FILE": str(tmp_path / "celerybeat-schedule"),
    }
    log = tmp_path / "honcho.log"
    with log.open("wb") as out:
        honcho = subprocess.Popen(
            [sys.executable, "-m", "config.demo", "--procfile", str(PROCFILE), "start", "-p", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    seen: tuple[int, dict[str, str]] = (0, {})
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and honcho.poll() is None:
            try:
                seen = _healthz(port)
            except (OSError, ValueError):
                seen = (0, {})
            if seen[0] == 200 and seen[1].get("beat") == "ok":
                break
            time.sleep(0.5)
        output = log.read_text(errors="replace")
        assert seen[0] == 200, f"/healthz answered {seen}:\n{output[-4000:]}"
        assert seen[1]["database"] == "ok"
        assert seen[1]["broker"] == "ok"
        assert seen[1]["beat"] == "ok", f"{seen}:\n{output[-4000:]}"
        # Each worker said which queues it consumes; together they are all of them.
        for queue in ("submit", "default", "poll", "scan"):
            assert re.search(rf"\.> {queue}\s+exchange=", output), queue
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
