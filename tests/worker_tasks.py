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
