"""A task sent by the app reaches a real `celery worker` process through the configured broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import WorkerProcess, wait_for
from tests.worker_tasks import write_marker

pytestmark = pytest.mark.worker


def test_a_task_travels_through_the_broker_to_a_worker_process(
    celery_worker_process: WorkerProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.txt"
    token = uuid.uuid4().hex
    write_marker.apply_async(
        args=(str(marker), token), queue=celery_worker_process.queue
    )
    wait_for(
        marker.exists,
        timeout=30,
        what=f"the worker to run the task; its log:\n{celery_worker_process.output()}",
    )
    assert marker.read_text() == token
    # The embedded default names its transport class (config/broker_files.py), a broker its scheme.
    transport = (
        getattr(settings, "CELERY_BROKER_TRANSPORT", None)
        or settings.CELERY_BROKER_URL.split("://", 1)[0]
    )
    assert f".> transport:   {transport}://" in celery_worker_process.output()


def test_every_beat_schedule_entry_names_a_registered_task() -> None:
    from config.celery import app

    app.loader.import_default_modules()
    assert settings.CELERY_BEAT_SCHEDULE
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks
