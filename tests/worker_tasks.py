"""A task that only the tests' Celery worker loads (celery worker -I tests.worker_tasks)."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task


@shared_task(name="tests.write_marker")
def write_marker(path: str, text: str) -> None:
    Path(path).write_text(text)


@shared_task(name="tests.sleep_long")
def sleep_long(path: str) -> None:
    """A task far longer than any shutdown grace, announcing that it started."""
    import time

    Path(path).write_text("started")
    time.sleep(600)


@shared_task(name="tests.log_patient_data")
def log_patient_data(marker: str, done: str) -> None:
    """Writes patient data into the worker's log the ways careless code might; the PHI filter must catch it."""
    import logging

    from celery.utils.log import get_task_logger

    get_task_logger(__name__).warning(
        "%s task logger: Doe^Jane s3://in/incoming/DEMO0001/1.dcm", marker
    )
    logging.getLogger("imports.scanning").warning(
        "%s app logger: PatientID=DEMO0001 study 1.2.826.0.1.3680043.8.498.10", marker
    )
    Path(done).write_text(marker)
